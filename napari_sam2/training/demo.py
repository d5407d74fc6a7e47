"""The demo model: a reduced SAM 2 small and fast enough to train on a laptop CPU.

Same components as the official models (Hiera trunk, FPN neck, prompt encoder, two-way
mask decoder, memory encoder, memory attention), with a shallower and narrower trunk,
narrower heads and a 256-pixel input. It is trained on the synthetic generators of
:mod:`napari_sam2.sample_data` and bundled with the package as the model ``demo``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from napari_sam2.model.config import (
    MODEL_CONFIGS,
    HieraConfig,
    MemoryAttentionConfig,
    MemoryEncoderConfig,
    NeckConfig,
    Sam2Config,
)

__all__ = [
    "DEMO_IMAGE_SIZE", "DEMO_STAGES", "DemoStage", "HELDOUT_SEED", "build_demo", "demo_clip", "demo_config",
    "stage_config", "tie_decoder_attention",
]

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


# --- the recipe -------------------------------------------------------------------------

#: Clips for training are drawn from seeds below this; held-out scoring uses seeds from
#: ``HELDOUT_SEED`` on, which training never sees.
TRAIN_SEEDS = 1_000_000
HELDOUT_SEED = 1_000_000
#: Share of each kind among training clips (by seed modulo 10).
_KIND_BY_DIGIT = ("fluorescence",) * 5 + ("rgb",) * 3 + ("nuclei",) * 2


@dataclass(frozen=True)
class DemoStage:
    """One stage of the recipe: a fresh optimiser schedule on clips of ``num_frames``."""

    name: str
    steps: int
    num_frames: int
    max_objects: int
    correction_rounds: int
    lr: float
    guidance: float = 0.0  # weight of the click attention guidance (see napari_sam2.training.guidance)
    memory_guidance: float = 0.0  # weight of the memory attention guidance (likewise)


#: Stage "image" teaches the encoder and decoder to segment from prompts on single
#: frames with many objects each (the image encoder runs once per frame, so every extra
#: object is cheap supervision), with attention guidance so that masks follow the click;
#: stage "video" teaches memory on short clips and keeps a little guidance.
DEMO_STAGES = (
    DemoStage("image", steps=4000, num_frames=1, max_objects=8, correction_rounds=1, lr=4e-4, guidance=0.5),
    DemoStage("video", steps=1500, num_frames=4, max_objects=6, correction_rounds=1, lr=2e-4, guidance=0.2,
              memory_guidance=0.5),
)


def demo_clip(seed: int, num_frames: int = 12) -> Any:
    """The synthetic clip of ``seed``: its kind follows the seed's last digit."""
    from napari_sam2.sample_data import random_clip

    return random_clip(_KIND_BY_DIGIT[seed % 10], seed, num_frames=num_frames)


def stage_config(stage: DemoStage, seed: int, checkpoint_every: int = 50) -> Any:
    """The :class:`~napari_sam2.training.TrainConfig` of one recipe stage."""
    from .clips import ClipSettings
    from .config import TrainConfig
    from .losses import LossWeights
    from .optim import OptimSettings
    from .prompts import PromptSettings

    return TrainConfig(
        steps=stage.steps,
        trainable="all",
        seed=seed,
        clip=ClipSettings(num_frames=stage.num_frames, max_objects=stage.max_objects),
        # the demo is used with clicks first: fewer mask prompts than SAM 2's 0.5
        prompts=PromptSettings(prob_mask=0.3, prob_box=0.2, correction_rounds=stage.correction_rounds),
        # from scratch: one learning rate for every layer, a looser clip than fine-tuning
        optim=OptimSettings(lr=stage.lr, encoder_lr_scale=1.0, layer_decay=1.0, grad_clip=1.0),
        loss=LossWeights(attention=stage.guidance, memory_attention=stage.memory_guidance),
        checkpoint_every=checkpoint_every,
        grad_checkpoint=False,
    )


def tie_decoder_attention(model: Any) -> None:
    """Start every mask-decoder attention with its key projection equal to its query projection.

    With W_k = W_q a query and a key that carry the same positional encoding score
    highest together, so a click token and the pixels around the click already attend to
    each other a little at step 0; attention guidance builds on that (from random
    projections it takes several times longer to start).
    """
    import torch

    with torch.no_grad():
        for module in model.sam_mask_decoder.transformer.modules():
            q, k = getattr(module, "q_proj", None), getattr(module, "k_proj", None)
            if q is not None and k is not None and q.weight.shape == k.weight.shape:
                k.weight.copy_(q.weight)
                k.bias.copy_(q.bias)


def build_demo(
    output: str | os.PathLike,
    workdir: str | os.PathLike,
    *,
    seed: int = 0,
    stages: Sequence[DemoStage] = DEMO_STAGES,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """Train the demo model from scratch, stage by stage, and write it to ``output``.

    Every stage keeps a resumable state in ``workdir`` (saved every 50 steps and on
    Ctrl-C); with ``resume`` finished stages are skipped and an interrupted one goes on
    where it stopped.
    """
    import torch

    from napari_sam2.model import build_sam2
    from napari_sam2.model.saved import save_checkpoint

    from .data import from_generator
    from .loop import train
    from .state import state_path_for

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    data = from_generator(demo_clip, seeds=range(TRAIN_SEEDS), name="demo synthetic clips")
    started = time.time()
    model = None
    for index, stage in enumerate(stages):
        out = work / f"stage-{index + 1}-{stage.name}.pt"
        state = state_path_for(out)
        config = stage_config(stage, seed + index)
        if resume and out.is_file() and not state.is_file():
            log(f"stage {stage.name}: done earlier ({out})")
            model = build_sam2(checkpoint=out, device="cpu")
            continue
        go_on = resume and state.is_file()
        if model is None and not go_on:
            torch.manual_seed(seed)
            model = build_sam2(demo_config(), device="cpu")
            tie_decoder_attention(model)

        def report(p: Any, name: str = stage.name) -> None:
            if p.step % 10 == 0 or p.step == p.steps:
                log(f"{name} {p.step}/{p.steps} loss {p.loss:.3f} lr {p.lr:.2e} {p.elapsed:.0f}s")

        result = train(
            None if go_on else model, data, config, output=out, overwrite=True, resume=go_on, progress=report,
            metadata={"recipe": "napari_sam2.training.demo", "stage": stage.name},
        )
        if result.cancelled:
            raise KeyboardInterrupt
        state.unlink(missing_ok=True)  # the stage is finished: its output is what counts
        model = result.model
    assert model is not None
    minutes = (time.time() - started) / 60.0
    meta = {
        "recipe": "python -m napari_sam2.training.demo",
        "seed": seed,
        "stages": [dataclasses.asdict(s) for s in stages],
        "train_seeds": f"0..{TRAIN_SEEDS - 1}",
        "minutes_this_run": round(minutes, 1),
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
    }
    save_checkpoint(model, output, meta, overwrite=True)
    log(f"demo model written to {output} ({minutes:.1f} min in this run)")
    return Path(output)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m napari_sam2.training.demo``: rebuild the bundled demo model."""
    import argparse

    import torch

    parser = argparse.ArgumentParser(prog="python -m napari_sam2.training.demo", description=main.__doc__)
    parser.add_argument("-o", "--output", default="demo.pt", help="where to write the model (default: demo.pt)")
    parser.add_argument("--workdir", default="demo-training", help="stage outputs and resumable states")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--resume", action="store_true", help="go on from the states in the work folder")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        build_demo(args.output, args.workdir, seed=args.seed, resume=args.resume,
                   log=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        print(f"stopped; run again with --resume to go on from {args.workdir}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
