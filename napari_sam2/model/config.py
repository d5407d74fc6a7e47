"""Typed configurations of the official SAM 2 and SAM 2.1 variants.

Each official checkpoint has exactly one :class:`Sam2Config`. The values mirror the
published model definitions so that a checkpoint's state dict fits our modules key for
key. Everything here is plain data: no YAML, no class paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

__all__ = [
    "HieraConfig",
    "NeckConfig",
    "MemoryAttentionConfig",
    "MemoryEncoderConfig",
    "Sam2Config",
    "MODEL_CONFIGS",
    "MODEL_NAMES",
    "get_config",
]


@dataclass(frozen=True)
class HieraConfig:
    """Hiera trunk: a hierarchical ViT with windowed and a few global attention blocks."""

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (2, 3, 16, 3)
    global_att_blocks: tuple[int, ...] = (12, 16, 20)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (14, 14)
    q_pool: int = 3  # number of stage transitions that pool the queries
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    mlp_ratio: float = 4.0
    patch_kernel: tuple[int, int] = (7, 7)
    patch_stride: tuple[int, int] = (4, 4)
    patch_padding: tuple[int, int] = (3, 3)

    @property
    def stage_dims(self) -> tuple[int, ...]:
        """Channel width of each stage's output."""
        return tuple(int(self.embed_dim * self.dim_mul**i) for i in range(len(self.stages)))


@dataclass(frozen=True)
class NeckConfig:
    """Feature pyramid neck that maps every Hiera stage to ``d_model`` channels."""

    d_model: int = 256
    backbone_channel_list: tuple[int, ...] = (768, 384, 192, 96)  # lowest resolution first
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    fpn_interp_model: str = "nearest"
    scalp: int = 1  # number of lowest-resolution levels dropped from the output
    pos_temperature: float = 10000.0


@dataclass(frozen=True)
class MemoryAttentionConfig:
    """Stack of self-attention + cross-attention (to the memory bank) layers with RoPE."""

    d_model: int = 256
    num_layers: int = 4
    num_heads: int = 1
    dim_feedforward: int = 2048
    kv_in_dim: int = 64
    rope_theta: float = 10000.0
    pos_enc_at_input: bool = True
    pos_enc_at_attn: bool = False
    pos_enc_at_cross_attn_keys: bool = True
    pos_enc_at_cross_attn_queries: bool = False


@dataclass(frozen=True)
class MemoryEncoderConfig:
    """Mask downsampler + fuser that turn a frame's mask and features into a memory."""

    in_dim: int = 256
    out_dim: int = 64
    mask_kernel_size: int = 3
    mask_stride: int = 2
    mask_padding: int = 1
    mask_total_stride: int = 16
    fuser_num_layers: int = 2
    fuser_kernel_size: int = 7
    fuser_padding: int = 3
    pos_temperature: float = 10000.0


@dataclass(frozen=True)
class Sam2Config:
    """Everything that defines one SAM 2 variant, including its tracking behaviour."""

    name: str
    hiera: HieraConfig
    neck: NeckConfig
    memory_attention: MemoryAttentionConfig = field(default_factory=MemoryAttentionConfig)
    memory_encoder: MemoryEncoderConfig = field(default_factory=MemoryEncoderConfig)
    image_size: int = 1024
    backbone_stride: int = 16
    num_maskmem: int = 7
    max_obj_ptrs_in_encoder: int = 16
    max_cond_frames_in_attn: int = -1
    memory_temporal_stride_for_eval: int = 1
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    use_mask_input_as_output_without_sam: bool = True
    directly_add_no_mem_embed: bool = True
    use_high_res_features_in_sam: bool = True
    multimask_output_in_sam: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    multimask_output_for_tracking: bool = True
    use_multimask_token_for_obj_ptr: bool = True
    iou_prediction_use_sigmoid: bool = True
    use_obj_ptrs_in_encoder: bool = True
    add_tpos_enc_to_obj_ptrs: bool = True
    proj_tpos_enc_in_obj_ptrs: bool = True
    use_signed_tpos_enc_to_obj_ptrs: bool = True
    only_obj_ptrs_in_the_past_for_eval: bool = True
    pred_obj_scores: bool = True
    pred_obj_scores_mlp: bool = True
    fixed_no_obj_ptr: bool = True
    soft_no_obj_ptr: bool = False
    use_mlp_for_obj_ptr_proj: bool = True
    no_obj_embed_spatial: bool = True
    # SAM heads
    num_multimask_outputs: int = 3
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    # dynamic multimask fallback (the video predictor's post-processing defaults)
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    binarize_mask_from_pts_for_mem_enc: bool = True

    @property
    def hidden_dim(self) -> int:
        return self.neck.d_model

    @property
    def mem_dim(self) -> int:
        return self.memory_encoder.out_dim

    @property
    def embedding_size(self) -> int:
        """Side of the lowest-resolution feature map (64 at image_size 1024)."""
        return self.image_size // self.backbone_stride

    def with_image_size(self, image_size: int) -> "Sam2Config":
        """The same variant run at another input size (same weights)."""
        if image_size <= 0 or image_size % 32 != 0:
            raise ValueError(f"image_size must be a positive multiple of 32, got {image_size}")
        return replace(self, image_size=image_size)


def _hiera(size: str) -> HieraConfig:
    if size == "tiny":
        return HieraConfig(96, 1, (1, 2, 7, 2), (5, 7, 9), window_pos_embed_bkg_spatial_size=(7, 7))
    if size == "small":
        return HieraConfig(96, 1, (1, 2, 11, 2), (7, 10, 13), window_pos_embed_bkg_spatial_size=(7, 7))
    if size == "base_plus":
        return HieraConfig(112, 2, (2, 3, 16, 3), (12, 16, 20), window_pos_embed_bkg_spatial_size=(14, 14))
    if size == "large":
        return HieraConfig(
            144, 2, (2, 6, 36, 4), (23, 33, 43), window_spec=(8, 4, 16, 8),
            window_pos_embed_bkg_spatial_size=(7, 7),
        )
    raise ValueError(size)


def _make(version: str, size: str) -> Sam2Config:
    hiera = _hiera(size)
    neck = NeckConfig(backbone_channel_list=tuple(reversed(hiera.stage_dims)))
    is_v21 = version == "sam2.1"
    return Sam2Config(
        name=f"{version}_hiera_{size}",
        hiera=hiera,
        neck=neck,
        no_obj_embed_spatial=is_v21,
        add_tpos_enc_to_obj_ptrs=is_v21,
        proj_tpos_enc_in_obj_ptrs=is_v21,
        use_signed_tpos_enc_to_obj_ptrs=is_v21,
    )


MODEL_CONFIGS: dict[str, Sam2Config] = {
    cfg.name: cfg
    for cfg in (
        _make(version, size)
        for version in ("sam2.1", "sam2")
        for size in ("tiny", "small", "base_plus", "large")
    )
}
MODEL_NAMES: tuple[str, ...] = tuple(MODEL_CONFIGS)


def get_config(name: str, image_size: int | None = None) -> Sam2Config:
    """The config of an official variant, optionally at another input size."""
    try:
        cfg = MODEL_CONFIGS[name]
    except KeyError:
        known = ", ".join(MODEL_NAMES)
        raise ValueError(f"unknown SAM 2 model {name!r}; known models: {known}") from None
    return cfg if image_size is None else cfg.with_image_size(image_size)
