"""The memory attention of the video model: conditions the current frame's features on
the memory bank with a stack of layers: self-attention (2D rotary encoding),
cross-attention to the memories of earlier frames (rotary encoding on the spatial memory
tokens, not on the trailing object-pointer tokens) and a feed-forward block.

Parameter names equal the official checkpoint keys below ``memory_attention.``;
inference only (no dropout).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import MemoryAttentionConfig
from .position import axial_rope, stale_cached

__all__ = ["RoPEAttention", "MemoryAttentionLayer", "MemoryAttention", "score_buffer"]


def _rotate_(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotary encoding of ``x`` (B, T, C), in place; returns ``x``.

    ``table`` (P, heads, D/2) is complex (unit numbers, one per token and channel pair).
    ``T`` must be a multiple of ``P``: the token axis is a sequence of whole grids (one
    per memory frame), each rotated by the same table. Only the last axis of ``x`` must
    be contiguous (slices of a wider projection are fine).
    """
    b, t, c = x.shape
    if t == 0:
        return x
    p, _, pairs = table.shape
    grids = x.view(b, t // p, p, c // (2 * pairs), pairs, 2)
    if x.dtype == torch.float32:
        torch.view_as_complex(grids).mul_(table)
    else:  # half precision: rotate in float32 and write back
        rotated = torch.view_as_complex(grids.float().contiguous()) * table
        grids.copy_(torch.view_as_real(rotated))
    return x


# Attention scores are computed in blocks of query rows of about this many elements
# (64 MiB in float32); smaller blocks make the score matrix products less efficient.
_SCORE_BLOCK_ELEMENTS = 1 << 24


def score_buffer(num_queries: int, num_keys: int, like: torch.Tensor) -> torch.Tensor:
    """Scratch space for attention scores of a block of query rows (flat)."""
    rows = max(1, min(num_queries, _SCORE_BLOCK_ELEMENTS // max(num_keys, 1)))
    return like.new_empty(rows * max(num_keys, 1))


class RoPEAttention(nn.Module):
    """Multi-head attention whose queries and keys get a 2D rotary encoding.

    Keys ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``. The projections and the
    attention are separate steps so that a caller can share work between calls.
    """

    def __init__(self, embedding_dim: int, num_heads: int, kv_in_dim: int | None = None) -> None:
        super().__init__()
        if embedding_dim % num_heads:
            raise ValueError("num_heads must divide embedding_dim")
        kv_in_dim = embedding_dim if kv_in_dim is None else kv_in_dim
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.head_dim = embedding_dim // num_heads
        self.q_proj = nn.Linear(embedding_dim, embedding_dim)
        self.k_proj = nn.Linear(kv_in_dim, embedding_dim)
        self.v_proj = nn.Linear(kv_in_dim, embedding_dim)
        self.out_proj = nn.Linear(embedding_dim, embedding_dim)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention of projected (and rotated) ``q`` (Bq, N, C) over ``k``, ``v`` (B, M, C).

        ``Bq`` may be 1 while ``B > 1``: the same queries then attend to each batch entry.
        Returns ``out_proj`` of the result, ``(max(Bq, B), N, C)``.
        """
        heads, dh = self.num_heads, self.head_dim
        q = q.unflatten(-1, (heads, dh)).transpose(1, 2)
        k = k.unflatten(-1, (heads, dh)).transpose(1, 2)
        v = v.unflatten(-1, (heads, dh)).transpose(1, 2)
        if q.shape[0] != k.shape[0]:
            q = q.expand(k.shape[0], -1, -1, -1)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).flatten(2))

    def attend_inputs(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        values_in: torch.Tensor,
        scores: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Same as ``attend(q, k, v_proj(values_in))``, with fewer operations when the
        value inputs are narrower than a head (memory tokens: 64 channels, heads: 256).

        Attention weights sum to one over the keys, so ``P @ v_proj(X)`` equals
        ``v_proj(P @ X)``: the weighted sum runs over the raw ``X`` (B, M, Cm) and the
        projection is applied once per query instead of once per key. Scores are
        computed for blocks of query rows in ``scores`` (a scratch buffer, see
        :func:`score_buffer`; allocated here when not given).
        """
        heads, dh = self.num_heads, self.head_dim
        bq, n, _ = q.shape
        b, m, cm = values_in.shape
        scale = dh**-0.5
        qh = q.unflatten(-1, (heads, dh))
        kh = k.unflatten(-1, (heads, dh))
        if scores is None:
            scores = score_buffer(n, m, q)
        chunk = scores.numel() // m if m else n
        scores = scores[: chunk * m].view(chunk, m)
        pooled = q.new_empty(b, heads, n, cm)
        for i in range(b):
            x = values_in[i]
            for h in range(heads):
                qs = qh[0 if bq == 1 else i, :, h] * scale  # scale by 1/16 is exact at dh 256
                kt = kh[i, :, h].t()
                for start in range(0, n, chunk):
                    stop = min(start + chunk, n)
                    block = scores[: stop - start]
                    torch.mm(qs[start:stop], kt, out=block)
                    torch.ops.aten._softmax.out(block, -1, False, out=block)
                    torch.mm(block, x, out=pooled[i, h, start:stop])
        w = self.v_proj.weight.view(heads, dh, cm)
        values = torch.matmul(pooled, w.transpose(1, 2))  # (B, heads, N, dh)
        values = values.transpose(1, 2).flatten(2) + self.v_proj.bias
        return self.out_proj(values)


class MemoryAttentionLayer(nn.Module):
    """Pre-norm layer: self-attention, cross-attention to the memory, feed-forward."""

    def __init__(self, cfg: MemoryAttentionConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.self_attn = RoPEAttention(d, cfg.num_heads)
        self.cross_attn_image = RoPEAttention(d, cfg.num_heads, kv_in_dim=cfg.kv_in_dim)
        self.linear1 = nn.Linear(d, cfg.dim_feedforward)
        self.linear2 = nn.Linear(cfg.dim_feedforward, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.norm3 = nn.LayerNorm(d)
        self.pos_enc_at_attn = cfg.pos_enc_at_attn
        self.pos_enc_at_cross_attn_queries = cfg.pos_enc_at_cross_attn_queries

    def self_attention(self, x: torch.Tensor, pos: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        """``x + SelfAttn(norm1(x))`` with rotary queries and keys."""
        attn = self.self_attn
        y = self.norm1(x)
        qk_in = y + pos if self.pos_enc_at_attn else y
        q = _rotate_(attn.q_proj(qk_in), rope)
        k = _rotate_(attn.k_proj(qk_in), rope)
        v = attn.v_proj(y)
        return x + attn.attend(q, k, v)

    def cross_queries(self, x: torch.Tensor, pos: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        """Rotated cross-attention queries of ``norm2(x)``."""
        y = self.norm2(x)
        if self.pos_enc_at_cross_attn_queries:
            y = y + pos
        return _rotate_(self.cross_attn_image.q_proj(y), rope)

    def cross_attention(
        self,
        x: torch.Tensor,
        q: torch.Tensor,
        memory: torch.Tensor,
        memory_keys: torch.Tensor,
        num_spatial: int,
        rope: torch.Tensor,
        scores: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x + CrossAttn(q, memory)``; the first ``num_spatial`` keys are rotated.

        With a ``scores`` buffer the attention pools the raw memory values
        (:meth:`RoPEAttention.attend_inputs`), otherwise it uses the fused kernel.
        """
        attn = self.cross_attn_image
        k = attn.k_proj(memory_keys)
        _rotate_(k[:, :num_spatial], rope)
        if scores is not None:
            return x + attn.attend_inputs(q, k, memory, scores)
        return x + attn.attend(q, k, attn.v_proj(memory))

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear1(self.norm3(x))
        return x + self.linear2(F.relu(y, inplace=True))


class MemoryAttention(nn.Module):
    """Condition the current frame's features on the memory bank (batch first).

    ``forward(curr, curr_pos, memory, memory_pos, num_obj_ptr_tokens, feat_size)``:

    - ``curr``, ``curr_pos``: ``(Bc, HW, C)`` features of the current frame (row-major
      ``feat_size = (h, w)`` grid) and their position encoding;
    - ``memory``, ``memory_pos``: ``(B, M, Cm)``; the first ``M - num_obj_ptr_tokens``
      tokens are whole ``h x w`` grids of spatial memory (one per memory frame), the
      last ``num_obj_ptr_tokens`` are object-pointer tokens (no rotary encoding);
    - ``Bc`` is ``B`` or 1. With ``Bc == 1`` the objects share the current frame's
      features: the work that depends only on ``curr`` is done once and broadcast.

    Returns ``(B, HW, C)``. Rotary tables are built once per grid size and cached.
    """

    def __init__(self, cfg: MemoryAttentionConfig) -> None:
        super().__init__()
        self.d_model = cfg.d_model
        self.num_heads = cfg.num_heads
        self.rope_theta = cfg.rope_theta
        self.pos_enc_at_input = cfg.pos_enc_at_input
        self.pos_enc_at_cross_attn_keys = cfg.pos_enc_at_cross_attn_keys
        self.layers = nn.ModuleList(MemoryAttentionLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self._rope_cache: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def rope_table(self, feat_size: tuple[int, int], device: torch.device | str) -> torch.Tensor:
        """Complex rotary table ``(h * w, 1, head_dim / 2)`` of a grid; cached per size."""
        h, w = int(feat_size[0]), int(feat_size[1])
        device = torch.device(device)
        key = (h, w, device)
        table = self._rope_cache.get(key)
        if table is None or stale_cached(table):
            cos, sin = axial_rope(self.d_model // self.num_heads, w, h, self.rope_theta)
            table = torch.complex(cos, sin).unsqueeze(1).to(device)
            self._rope_cache[key] = table
        return table

    def forward(
        self,
        curr: torch.Tensor,
        curr_pos: torch.Tensor | None,
        memory: torch.Tensor,
        memory_pos: torch.Tensor | None,
        num_obj_ptr_tokens: int = 0,
        feat_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        bc, n, c = curr.shape
        b, m, _ = memory.shape
        if bc not in (1, b):
            raise ValueError(f"curr batch {bc} must be 1 or the memory batch {b}")
        if feat_size is None:
            side = math.isqrt(n)
            if side * side != n:
                raise ValueError(f"feat_size is needed for a non-square grid of {n} tokens")
            feat_size = (side, side)
        if feat_size[0] * feat_size[1] != n:
            raise ValueError(f"feat_size {tuple(feat_size)} does not match {n} tokens")
        if m == 0:
            raise ValueError("the memory is empty")
        num_spatial = m - num_obj_ptr_tokens
        if num_obj_ptr_tokens < 0 or num_spatial < 0 or num_spatial % n:
            raise ValueError(
                f"{m} memory tokens minus {num_obj_ptr_tokens} pointer tokens is not a "
                f"whole number of {feat_size[0]}x{feat_size[1]} grids"
            )
        if curr_pos is None:
            curr_pos = torch.zeros_like(curr)
        rope = self.rope_table(feat_size, curr.device)

        scores = None
        if (
            memory.shape[-1] < self.d_model // self.num_heads
            and memory.device.type == "cpu"
            and memory.dtype == torch.float32
            and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")  # bfloat16 queries cannot fill a float32 buffer
        ):
            # On CPU, pooling the raw 64-channel memory (a quarter of the multiply-adds of
            # the value side) beats the fused attention kernel over 256-channel values;
            # on accelerators the fused kernel is the better one. One scratch buffer
            # serves all layers (fresh large buffers cost page faults).
            scores = score_buffer(n, m, curr)
        x = curr + 0.1 * curr_pos if self.pos_enc_at_input else curr
        memory_keys = memory
        if self.pos_enc_at_cross_attn_keys and memory_pos is not None:
            memory_keys = memory + memory_pos
        for layer in self.layers:
            # with shared features (bc == 1 < b), x stays a single copy until the first
            # cross-attention, which broadcasts it to one row per object
            x = layer.self_attention(x, curr_pos, rope)
            q = layer.cross_queries(x, curr_pos, rope)
            x = layer.cross_attention(x, q, memory, memory_keys, num_spatial, rope, scores)
            x = layer.feed_forward(x)
        return self.norm(x)
