"""A miniature random SAM 2 for fast tests of everything around the model.

It has the real architecture (every component, every code path of the session) with
tiny widths and a 64-pixel input, so thousands of frames take seconds.
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


def miniature_config(image_size: int = 64) -> Sam2Config:
    hiera = HieraConfig(
        embed_dim=8,
        num_heads=1,
        stages=(1, 1, 1, 1),
        global_att_blocks=(2,),
        window_spec=(4, 2, 2, 2),
        window_pos_embed_bkg_spatial_size=(2, 2),
    )
    hidden, mem = 32, 8
    return replace(
        MODEL_CONFIGS["sam2.1_hiera_tiny"],
        name="miniature",
        hiera=hiera,
        neck=NeckConfig(d_model=hidden, backbone_channel_list=tuple(reversed(hiera.stage_dims))),
        memory_attention=MemoryAttentionConfig(d_model=hidden, num_layers=1, dim_feedforward=32, kv_in_dim=mem),
        memory_encoder=MemoryEncoderConfig(in_dim=hidden, out_dim=mem, fuser_num_layers=1),
        image_size=image_size,
        decoder_mlp_dim=32,
        decoder_num_heads=2,
        iou_head_hidden_dim=32,
        mask_in_chans=4,
    )


def miniature_model(image_size: int = 64, seed: int = 0):
    import torch

    from napari_sam2.model import build_sam2

    torch.manual_seed(seed)
    model = build_sam2(miniature_config(image_size), device="cpu")
    # make the object-score head say "present", as in the parity tests
    bias = model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias
    with torch.no_grad():
        bias.add_(8.0)
    return model


def install_as_demo(folder, monkeypatch, seed: int = 0):
    """Make the miniature model this session's bundled ``demo`` model (fast stand-in)."""
    from pathlib import Path

    from napari_sam2.model import bundled
    from napari_sam2.model.saved import save_checkpoint

    path = save_checkpoint(miniature_model(seed=seed), Path(folder) / "demo.pt", overwrite=True)
    monkeypatch.setattr(bundled, "_WEIGHTS", Path(folder))
    return path


def go_offline(cache, monkeypatch) -> list:
    """No official checkpoint is cached, and every download fails as without a network.

    Returns the list of model names whose download was tried.
    """
    from napari_sam2.model import checkpoint

    monkeypatch.setenv(checkpoint.CACHE_ENV, str(cache))
    tried: list = []

    def no_network(name, progress=True):
        tried.append(name)
        reason = f"https://huggingface.co/facebook/x/resolve/main/{name}.pt: ConnectionError: no network"
        raise checkpoint.DownloadError(f"could not download the {name} checkpoint.\n{reason}", name, (reason,))

    monkeypatch.setattr(checkpoint, "download_checkpoint", no_network)
    return tried
