"""The SAM 2 model: image encoder, SAM heads, memory encoder and memory attention.

:class:`Sam2` owns the parameters under their official state-dict names and offers the
per-frame operations a tracker needs (encode an image, decode masks from prompts,
condition features on a memory bank, encode a new memory). Which memories a frame sees,
and when, is the business of :mod:`.video`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .bundled import automatic_thresholds, bundled_path, is_bundled
from .checkpoint import CheckpointError, default_device, download_checkpoint, read_state_dict
from .config import MODEL_CONFIGS, Sam2Config, get_config
from .hiera import ImageEncoder
from .layers import MLP
from .mask_decoder import MaskDecoder
from .memory import MemoryAttention, MemoryEncoder
from .position import sine_encoding_1d, stale_cached
from .prompt_encoder import PromptEncoder

__all__ = ["NO_OBJECT_SCORE", "ImageFeatures", "HeadOutput", "MemoryTokens", "Sam2", "build_sam2"]

NO_OBJECT_SCORE = -1024.0  # mask logit that marks "object absent"


@dataclass
class ImageFeatures:
    """Backbone features of one frame, shared by every object tracked on it.

    ``vision``: (1, C, h, w) lowest-resolution features; ``high_res``: the two finer FPN
    levels already projected for the mask decoder, (1, C/8, 4h, 4w) and (1, C/4, 2h, 2w).
    """

    vision: torch.Tensor
    high_res: list[torch.Tensor] | None

    @property
    def size(self) -> tuple[int, int]:
        return int(self.vision.shape[-2]), int(self.vision.shape[-1])

    def nbytes(self) -> int:
        tensors = [self.vision] + list(self.high_res or [])
        return sum(t.numel() * t.element_size() for t in tensors)

    def expanded_high_res(self, batch: int) -> list[torch.Tensor] | None:
        if self.high_res is None:
            return None
        return [h.expand(batch, -1, -1, -1) for h in self.high_res]


@dataclass
class HeadOutput:
    """What the SAM heads return for a batch of B objects on one frame.

    ``low_res_masks`` (B, 1, S/4, S/4) logits of the chosen mask; ``low_res_multimasks``
    (B, M, S/4, S/4) all candidates; ``ious`` (B, M); ``obj_ptr`` (B, C);
    ``object_score_logits`` (B, 1). The full-resolution mask is derived on demand.
    """

    low_res_multimasks: torch.Tensor
    ious: torch.Tensor
    low_res_masks: torch.Tensor
    obj_ptr: torch.Tensor
    object_score_logits: torch.Tensor
    image_size: int
    high_res_override: torch.Tensor | None = None

    def high_res_masks(self) -> torch.Tensor:
        """(B, 1, S, S) logits: the chosen mask upsampled to the model input size."""
        if self.high_res_override is not None:
            return self.high_res_override
        return upsample_masks(self.low_res_masks, self.image_size)


@dataclass
class MemoryTokens:
    """A frame's memory bank as attention tokens: (B, M, mem_dim) features + encodings."""

    feats: torch.Tensor
    pos: torch.Tensor
    num_ptr_tokens: int


def upsample_masks(masks: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of mask logits (the interpolation SAM 2 uses everywhere)."""
    if isinstance(size, int):
        size = (size, size)
    return F.interpolate(masks, size=size, mode="bilinear", align_corners=False)


class Sam2(nn.Module):
    """SAM 2 with the official parameter names; see the module docstring."""

    #: automatic-detection thresholds calibrated for these weights (empty: the official ones')
    automatic_thresholds: dict[str, float] = {}

    def __init__(self, config: Sam2Config) -> None:
        super().__init__()
        self.config = config
        c = config
        hidden, mem_dim = c.hidden_dim, c.mem_dim
        self.image_encoder = ImageEncoder(c.hiera, c.neck)
        self.memory_attention = MemoryAttention(c.memory_attention)
        self.memory_encoder = MemoryEncoder(c.memory_encoder, hidden)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(c.num_maskmem, 1, 1, mem_dim))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, hidden))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, hidden))
        for p in (self.maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc):
            nn.init.trunc_normal_(p, std=0.02)
        if c.pred_obj_scores and c.use_obj_ptrs_in_encoder:
            self.no_obj_ptr = nn.Parameter(torch.zeros(1, hidden))
            nn.init.trunc_normal_(self.no_obj_ptr, std=0.02)
        else:
            self.no_obj_ptr = None
        if c.no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, mem_dim))
            nn.init.trunc_normal_(self.no_obj_embed_spatial, std=0.02)
        else:
            self.no_obj_embed_spatial = None
        self.sam_prompt_encoder = PromptEncoder.from_config(c)
        self.sam_mask_decoder = MaskDecoder.from_config(c)
        if c.use_obj_ptrs_in_encoder:
            # turns a binary mask prompt into a stride-4 logit map for pointer extraction
            self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
            self.obj_ptr_proj = MLP(hidden, hidden, hidden, 3) if c.use_mlp_for_obj_ptr_proj else nn.Linear(hidden, hidden)
        else:
            self.obj_ptr_proj = nn.Identity()
        self.obj_ptr_tpos_proj = nn.Linear(hidden, mem_dim) if c.proj_tpos_enc_in_obj_ptrs else nn.Identity()
        self._encoding_cache: dict[tuple, torch.Tensor] = {}  # see _cached_encoding

    # ------------------------------------------------------------------ basics
    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def device(self) -> torch.device:
        return self.maskmem_tpos_enc.device

    @property
    def low_res_size(self) -> int:
        """Side of the low-resolution mask logits (S / 4)."""
        return self.config.image_size // 4

    def forward(self, *args, **kwargs):  # pragma: no cover - guidance only
        raise RuntimeError("Sam2 is driven per frame; use VideoSession (one frame for images)")

    # ------------------------------------------------------------------ image
    def encode_image(self, images: torch.Tensor) -> ImageFeatures:
        """Backbone features of ``images`` (1, 3, S, S), normalized model input."""
        return self.features_from_backbone(self.image_encoder(images)["backbone_fpn"])

    def features_from_backbone(self, levels: list[torch.Tensor]) -> ImageFeatures:
        """Project the image encoder's FPN levels for the SAM heads.

        Separate from :meth:`encode_image` so that training can run a frozen image
        encoder without gradients while the decoder's projections still learn.
        """
        if self.config.use_high_res_features_in_sam:
            high_res = [
                self.sam_mask_decoder.conv_s0(levels[0]),
                self.sam_mask_decoder.conv_s1(levels[1]),
            ]
        else:
            high_res = None
        return ImageFeatures(vision=levels[-1], high_res=high_res)

    def _cached_encoding(self, key: tuple, make) -> torch.Tensor:
        """Parameter-free position encodings, computed once per size and device.

        Kept on the instance (not in a global ``lru_cache``) so that a dropped model frees
        its memory.
        """
        cache = self._encoding_cache
        full_key = key + (self.device,)
        if full_key not in cache or stale_cached(cache[full_key]):
            cache[full_key] = make()
        return cache[full_key]

    def vision_pos(self, size: tuple[int, int]) -> torch.Tensor:
        """Position encoding of the lowest-resolution features as tokens, (1, hw, C)."""

        def make() -> torch.Tensor:
            probe = torch.empty(1, 1, size[0], size[1], device=self.device)
            return self.image_encoder.neck.position_encoding(probe)[0:1].flatten(2).transpose(1, 2)

        return self._cached_encoding(("vision", size[0], size[1]), make)

    # ------------------------------------------------------------------ heads
    def use_multimask(self, is_init_cond_frame: bool, num_points: int) -> bool:
        """SAM 2's rule for emitting 3 candidates (an ambiguous single click)."""
        c = self.config
        return (
            c.multimask_output_in_sam
            and (is_init_cond_frame or c.multimask_output_for_tracking)
            and c.multimask_min_pt_num <= num_points <= c.multimask_max_pt_num
        )

    def run_heads(
        self,
        pix_feat: torch.Tensor,
        high_res: list[torch.Tensor] | None,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_inputs: torch.Tensor | None = None,
        multimask: bool = False,
    ) -> HeadOutput:
        """Prompt encoder + mask decoder on memory-conditioned features (B, C, h, w).

        ``point_coords`` (B, N, 2) are (x, y) in model-input pixels; ``mask_inputs``
        (B, 1, *, *) are mask logits or a binary mask, resized to the prompt size.
        """
        batch = pix_feat.shape[0]
        device = pix_feat.device
        if point_coords is None:
            point_coords = torch.zeros(batch, 1, 2, device=device)
            point_labels = -torch.ones(batch, 1, dtype=torch.int32, device=device)
        mask_prompt = None
        if mask_inputs is not None:
            target = tuple(self.sam_prompt_encoder.mask_input_size)
            if tuple(mask_inputs.shape[-2:]) != target:
                mask_prompt = F.interpolate(
                    mask_inputs.float(), size=target, mode="bilinear", align_corners=False, antialias=True
                )
            else:
                mask_prompt = mask_inputs
        sparse, dense = self.sam_prompt_encoder(
            points=(point_coords, point_labels), boxes=None, masks=mask_prompt
        )
        masks, ious, tokens, obj_scores = self.sam_mask_decoder(
            image_embeddings=pix_feat,
            image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=False,
            high_res_features=high_res,
        )
        present = obj_scores > 0
        if self.config.pred_obj_scores:
            masks = torch.where(present[:, None, None], masks, NO_OBJECT_SCORE)
        masks = masks.float()
        token = tokens[:, 0]
        if multimask:
            best = torch.argmax(ious, dim=-1)
            rows = torch.arange(batch, device=device)
            chosen = masks[rows, best].unsqueeze(1)
            if tokens.shape[1] > 1:
                token = tokens[rows, best]
        else:
            chosen = masks
        obj_ptr = self._pointer(self.obj_ptr_proj(token), obj_scores, present)
        return HeadOutput(masks, ious, chosen, obj_ptr, obj_scores, self.image_size)

    def _pointer(self, ptr: torch.Tensor, obj_scores: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Blend in the learned "no object" pointer where the object is absent."""
        c = self.config
        if not c.pred_obj_scores:
            return ptr
        weight = torch.sigmoid(obj_scores) if c.soft_no_obj_ptr else present.float()
        if c.fixed_no_obj_ptr:
            ptr = weight * ptr
        return ptr + (1 - weight) * self.no_obj_ptr

    def mask_as_output(
        self, pix_feat: torch.Tensor, high_res: list[torch.Tensor] | None, mask: torch.Tensor
    ) -> HeadOutput:
        """Take a binary mask prompt (B, 1, S, S) as the output itself (SAM 2's rule)."""
        scale, bias = 20.0, -10.0
        mask_f = mask.float()
        high = mask_f * scale + bias
        low = F.interpolate(
            high, size=(high.shape[-2] // 4, high.shape[-1] // 4),
            mode="bilinear", align_corners=False, antialias=True,
        )
        ious = mask.new_ones(mask.shape[0], 1).float()
        present = torch.any(mask_f.flatten(1) > 0.0, dim=1)[..., None]
        scores = scale * present.float() + bias
        if self.config.use_obj_ptrs_in_encoder:
            ptr = self.run_heads(pix_feat, high_res, mask_inputs=self.mask_downsample(mask_f)).obj_ptr
            if self.config.pred_obj_scores:
                weight = present.float()
                if self.config.fixed_no_obj_ptr:
                    ptr = weight * ptr
                ptr = ptr + (1 - weight) * self.no_obj_ptr
        else:
            ptr = torch.zeros(mask.shape[0], self.config.hidden_dim, device=mask.device)
        return HeadOutput(low, ious, low, ptr, scores, self.image_size, high_res_override=high)

    # ------------------------------------------------------------------ memory
    def no_memory_features(self, features: ImageFeatures, batch: int) -> torch.Tensor:
        """Features of a first prompted frame, which sees no memory: (B, C, h, w)."""
        if not self.config.directly_add_no_mem_embed:
            c = self.config
            tokens = MemoryTokens(
                self.no_mem_embed.expand(batch, 1, c.mem_dim),
                self.no_mem_pos_enc.expand(batch, 1, c.mem_dim),
                0,
            )
            return self.condition_on_memory(features, tokens)
        vision = features.vision + self.no_mem_embed.view(1, -1, 1, 1)
        return vision.expand(batch, -1, -1, -1)

    def memory_tokens(
        self,
        spatial: list[tuple[int, torch.Tensor]],
        pointers: list[tuple[int, torch.Tensor]],
        max_ptrs: int,
        maskmem_pos: torch.Tensor,
    ) -> MemoryTokens:
        """Assemble memory tokens from past frames of B objects.

        ``spatial``: (t_pos, maskmem (B, mem_dim, h, w)) pairs, t_pos 0 for prompted frames
        and 1..num_maskmem-1 for recent frames (1 = oldest). ``pointers``: (temporal
        distance, obj_ptr (B, C)) pairs. ``maskmem_pos``: (1, mem_dim, h, w).
        """
        c = self.config
        mem_dim, hidden = c.mem_dim, c.hidden_dim
        base_pos = maskmem_pos.flatten(2).transpose(1, 2)  # (1, hw, mem_dim)
        feats, pos = [], []
        for t_pos, mem in spatial:
            feats.append(mem.float().flatten(2).transpose(1, 2))
            pos.append(base_pos + self.maskmem_tpos_enc[c.num_maskmem - t_pos - 1].view(1, 1, mem_dim))
        batch = feats[0].shape[0] if feats else pointers[0][1].shape[0]
        num_ptr_tokens = 0
        if pointers:
            dists, ptrs = zip(*pointers)
            ptr = torch.stack(ptrs, dim=1)  # (B, P, C)
            if c.add_tpos_enc_to_obj_ptrs:
                tpos_dim = hidden if c.proj_tpos_enc_in_obj_ptrs else mem_dim
                rel = torch.tensor(dists, dtype=torch.float32, device=ptr.device) / (max_ptrs - 1)
                ptr_pos = self.obj_ptr_tpos_proj(sine_encoding_1d(rel, tpos_dim))
            else:
                ptr_pos = ptr.new_zeros(len(dists), mem_dim)
            if mem_dim < hidden:
                split = hidden // mem_dim
                ptr = ptr.reshape(batch, -1, mem_dim)  # each pointer becomes `split` tokens
                ptr_pos = ptr_pos.repeat_interleave(split, dim=0)
            feats.append(ptr)
            pos.append(ptr_pos.unsqueeze(0))
            num_ptr_tokens = ptr.shape[1]
        feats_t = torch.cat(feats, dim=1)
        pos_t = torch.cat([p.expand(batch, -1, -1) for p in pos], dim=1)
        return MemoryTokens(feats_t, pos_t, num_ptr_tokens)

    def condition_on_memory(self, features: ImageFeatures, memory: MemoryTokens) -> torch.Tensor:
        """Memory attention: the frame's features fused with B memory banks, (B, C, h, w)."""
        h, w = features.size
        curr = features.vision.flatten(2).transpose(1, 2)  # (1, hw, C), shared by all objects
        out = self.memory_attention(
            curr=curr,
            curr_pos=self.vision_pos((h, w)),
            memory=memory.feats,
            memory_pos=memory.pos,
            num_obj_ptr_tokens=memory.num_ptr_tokens,
            feat_size=(h, w),
        )
        batch = out.shape[0]
        return out.transpose(1, 2).reshape(batch, -1, h, w)

    def encode_memory(
        self,
        features: ImageFeatures,
        high_res_masks: torch.Tensor,
        object_score_logits: torch.Tensor,
        binarize: bool,
    ) -> torch.Tensor:
        """A new memory from a frame's features and its predicted masks (B, 1, S, S).

        ``binarize``: masks from clicks are thresholded so that the memory holds exactly
        what the user saw. Returns (B, mem_dim, h, w).
        """
        c = self.config
        if binarize:
            mask = (high_res_masks > 0).float()
        else:
            mask = torch.sigmoid(high_res_masks)
        if c.sigmoid_scale_for_mem_enc != 1.0:
            mask = mask * c.sigmoid_scale_for_mem_enc
        if c.sigmoid_bias_for_mem_enc != 0.0:
            mask = mask + c.sigmoid_bias_for_mem_enc
        batch = mask.shape[0]
        pix = features.vision.expand(batch, -1, -1, -1)
        mem = self.memory_encoder(pix, mask, skip_mask_sigmoid=True)["vision_features"]
        if self.no_obj_embed_spatial is not None:
            absent = 1.0 - (object_score_logits > 0).float()  # (B, 1)
            mem = mem + absent[..., None, None] * self.no_obj_embed_spatial[..., None, None]
        return mem

    def maskmem_pos(self, size: tuple[int, int]) -> torch.Tensor:
        """Spatial encoding of memories (1, mem_dim, h, w); identical for every frame."""

        def make() -> torch.Tensor:
            probe = torch.empty(1, self.config.mem_dim, size[0], size[1], device=self.device)
            return self.memory_encoder.position_encoding(probe)[0:1].clone()

        return self._cached_encoding(("maskmem", size[0], size[1]), make)

    # ------------------------------------------------------------------ weights
    def load_official_state_dict(self, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Load official weights strictly, naming every mismatch and the variant that fits."""
        check_state_dict(self.config, self.state_dict(), state, source)
        self.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------- loading
@lru_cache(maxsize=None)
def _expected_shapes(name: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = Sam2(MODEL_CONFIGS[name])
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def matching_variants(state: dict[str, torch.Tensor]) -> list[str]:
    """Official variants whose key set and shapes equal those of ``state``."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    return [name for name in MODEL_CONFIGS if _expected_shapes(name) == shapes]


def check_state_dict(
    config: Sam2Config,
    expected: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    source: str,
) -> None:
    """Raise :class:`CheckpointError` unless ``state`` fits ``expected`` exactly."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape)
    )
    if not (missing or unexpected or misshaped):
        return

    def some(keys: list[str]) -> str:
        head = ", ".join(keys[:5])
        return head + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "")

    lines = [f"{source} does not fit the {config.name} model:"]
    if missing:
        lines.append(f"  missing keys: {some(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys: {some(unexpected)}")
    if misshaped:
        shown = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in misshaped[:5]]
        more = f", ... ({len(misshaped)} in all)" if len(misshaped) > 5 else ""
        lines.append("  keys with other shapes (file vs model): " + "; ".join(shown) + more)
    fits = matching_variants(state)
    if fits:
        lines.append(f"It is a checkpoint of {' / '.join(fits)}: choose that model instead.")
    else:
        lines.append("It matches none of the official SAM 2 / SAM 2.1 variants.")
    raise CheckpointError("\n".join(lines))


def build_sam2(
    name: str | Sam2Config | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    image_size: int | None = None,
    quantize: str | None = None,
) -> Sam2:
    """Build a SAM 2 model in eval mode.

    ``name``: an official variant (``MODEL_NAMES``), a bundled model (``"demo"``, whose
    weights ship with the package and are always loaded) or a :class:`Sam2Config`; ``None``
    takes the architecture recorded in ``checkpoint`` (see :mod:`.saved`), the official
    variant whose keys an official file fits, or ``sam2.1_hiera_tiny`` without a file.
    ``checkpoint``: ``None`` for untrained weights (tests), a path to an official or
    self-describing file, or ``"official"`` to use the cached/downloaded file. Loading
    is strict: missing, unexpected or mis-shaped keys raise :class:`CheckpointError`.
    ``image_size``: run at another input size with the same weights (e.g. 512); by
    default the size recorded in the checkpoint, else the variant's own.
    ``device``: defaults to CUDA, then MPS, then CPU.
    ``quantize``: ``"int8"`` for dynamic int8 linear layers (a faster, approximate CPU
    mode; see :mod:`.quantize`).
    """
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    thresholds: dict[str, float] = {}
    if is_bundled(name):
        # a bundled model always comes with its weights: its own file, or a fine-tune of it
        if checkpoint is None or str(checkpoint) == "official":
            checkpoint = bundled_path(str(name))
        thresholds = automatic_thresholds(str(name))
        name = None
    saved = None
    if checkpoint is not None and str(checkpoint) != "official":
        from .saved import read_checkpoint

        path = Path(checkpoint).expanduser()
        saved = read_checkpoint(path)
    config = _choose_config(name, saved, image_size)
    model = Sam2(config)
    if saved is not None and not thresholds:
        from .saved import recorded_thresholds

        thresholds = recorded_thresholds(saved.metadata)
    model.automatic_thresholds = thresholds
    if checkpoint is not None:
        if saved is None:
            if config.name not in MODEL_CONFIGS:
                raise CheckpointError(f"{config.name!r} has no official checkpoint")
            path = download_checkpoint(config.name)
            state = read_state_dict(path)
        else:
            state = saved.state
        try:
            model.load_official_state_dict(state, source=str(path))
        except CheckpointError as err:
            if saved is not None and saved.config is not None and name is not None:
                raise CheckpointError(
                    f"{err}\nThe file records its own architecture ({saved.config.name}, "
                    f"{saved.config.image_size} px): load it without naming a model."
                ) from None
            raise
    model.eval()
    model.requires_grad_(False)
    target = torch.device(device) if device is not None else default_device()
    if quantize == "int8":
        if target.type != "cpu":
            raise ValueError("int8 quantization runs on the CPU only; on GPUs the engine uses bfloat16")
        from .quantize import quantize_int8

        return quantize_int8(model)
    return model.to(target)


def _choose_config(name: str | Sam2Config | None, saved, image_size: int | None) -> Sam2Config:
    """The architecture to build: named, recorded in the checkpoint, or inferred from it."""
    recorded = saved.config if saved is not None else None
    if isinstance(name, Sam2Config):
        return name if image_size is None else name.with_image_size(image_size)
    if name is None:
        if recorded is not None:
            return recorded if image_size is None else recorded.with_image_size(image_size)
        fits = matching_variants(saved.state) if saved is not None else []
        name = fits[0] if len(fits) == 1 else "sam2.1_hiera_tiny"
    config = get_config(name, image_size)
    if image_size is None and recorded is not None and recorded.with_image_size(config.image_size) == config:
        config = recorded  # a fine-tune of this variant keeps the input size it was trained at
    return config
