"""The demo model: a reduced SAM 2 small and fast enough to train on a laptop CPU.

Same components as the official models (Hiera trunk, FPN neck, prompt encoder, two-way
mask decoder, memory encoder, memory attention), with a shallower and narrower trunk,
narrower heads and a 256-pixel input. It is trained on the synthetic generators of
:mod:`napari_sam2.sample_data` and bundled with the package as the model ``demo``.
"""

from __future__ import annotations

from dataclasses import replace

from napari_sam2.model.config import (
    MODEL_CONFIGS,
    HieraConfig,
    MemoryAttentionConfig,
    MemoryEncoderConfig,
    NeckConfig,
    Sam2Config,
)

__all__ = ["DEMO_IMAGE_SIZE", "demo_config"]

DEMO_IMAGE_SIZE = 256


def demo_config(image_size: int = DEMO_IMAGE_SIZE) -> Sam2Config:
    """The demo architecture (SAM 2.1 behaviour flags, reduced widths and depth).

    Hiera: 4 stages of 32/64/128/256 channels and 1/2/4/1 blocks (tiny: 96..768, 1/2/7/2),
    one global-attention block in stage 3; windows sized for a 64x64 first-stage grid.
    Heads and memory: 128 channels (tiny: 256), 2 memory-attention layers (tiny: 4),
    32-channel memories (tiny: 64); the object pointer still splits into 128/32 = 4 tokens.
    """
    hiera = HieraConfig(
        embed_dim=32,
        num_heads=1,
        stages=(1, 2, 4, 1),
        global_att_blocks=(5,),
        window_spec=(8, 4, 8, 4),
        window_pos_embed_bkg_spatial_size=(4, 4),
    )
    hidden, mem = 128, 32
    return replace(
        MODEL_CONFIGS["sam2.1_hiera_tiny"],
        name="demo",
        hiera=hiera,
        neck=NeckConfig(d_model=hidden, backbone_channel_list=tuple(reversed(hiera.stage_dims))),
        memory_attention=MemoryAttentionConfig(d_model=hidden, num_layers=2, dim_feedforward=512, kv_in_dim=mem),
        memory_encoder=MemoryEncoderConfig(in_dim=hidden, out_dim=mem, fuser_num_layers=2),
        image_size=image_size,
        decoder_num_heads=4,
        decoder_mlp_dim=512,
        iou_head_hidden_dim=128,
        mask_in_chans=16,
    )
