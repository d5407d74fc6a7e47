"""Memory of the video model: :mod:`.memory_encoder` and :mod:`.memory_attention`.

Kept so that earlier imports (``from napari_sam2.model.memory import MemoryEncoder``)
keep working; each component lives in its own module.
"""

from __future__ import annotations

from .memory_attention import MemoryAttention, MemoryAttentionLayer, RoPEAttention, score_buffer
from .memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder

__all__ = [
    "MaskDownSampler",
    "CXBlock",
    "Fuser",
    "MemoryEncoder",
    "RoPEAttention",
    "MemoryAttentionLayer",
    "MemoryAttention",
    "score_buffer",
]
