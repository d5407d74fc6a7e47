"""The Hiera trunk of the image encoder (the neck is :mod:`.neck`, the whole encoder
:mod:`.image_encoder`; both names are also importable from here).

Parameter names follow the official checkpoints (``trunk.*``) so that those
load unchanged. The computation is the one of the published model; the implementation
differs in how tokens are laid out in memory.

Token layouts
-------------
Between blocks the residual stream is a tensor ``(B * n_tiles, tile_h * tile_w, C)``: the
``(H, W)`` feature grid cut into non-overlapping tiles that cover it exactly (no
padding), tiles in row-major order, tokens row-major inside each tile. A plain row-major
grid is the special case of one tile per image. Window attention whose window divides
the grid runs directly on tiles of the window size, so consecutive windowed blocks of a
stage never partition or unpartition, and query pooling (a 2x2 max pool) stays inside
tiles. LayerNorm, the MLP and the projections act per token and do not care about the
layout. Global attention is invariant to the token order and runs on any layout. Only
windows that need padding (window size not dividing the grid) are built per block: the
normalized tokens are zero padded exactly as in the published model, because padded
tokens take part in the attention as keys and values.

Cache blocking (CPU)
--------------------
Runs of consecutive blocks that act tile by tile are executed on chunks of tile rows,
each chunk going through all blocks of the run before the next one starts; windowed
blocks that pad run in bands of window rows; wide MLPs run in token chunks. The
activations of a chunk then stay in cache instead of streaming through memory between
every operation. Results do not depend on the chunking.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import HieraConfig
from .hiera_tiles import _chunk_limit, _pad_windows, _pool_tiles, _retile, _Tiling, _tiles_to_channels_first, _unpad_windows

__all__ = ["Hiera", "HieraBlock", "HieraAttention", "PatchEmbed"]

# Working-set sizes (in elements) of the cache-blocked loops on CPU; they change speed
# only. On accelerators everything runs in one piece (fewer, larger kernels).
MLP_CHUNK_ELEMENTS = 1 << 21  # hidden activations per MLP chunk
TILE_CHUNK_ELEMENTS = 1 << 20  # input tokens x channels per chunk of tile-wise blocks


# ---------------------------------------------------------------------------------------
# trunk
# ---------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Strided convolution from pixels to the first stage's tokens; key ``proj``."""

    def __init__(self, cfg: HieraConfig, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(
            in_chans,
            cfg.embed_dim,
            kernel_size=cfg.patch_kernel,
            stride=cfg.patch_stride,
            padding=cfg.patch_padding,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, C, H/4, W/4)``."""
        return self.proj(x)


class _GeluMlp(nn.Module):
    """Two linear layers with an exact GELU between them; keys ``layers.{0,1}``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList((nn.Linear(dim, hidden), nn.Linear(hidden, dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[1](F.gelu(self.layers[0](x)))


class HieraAttention(nn.Module):
    """Multi-head self-attention with optional 2x2 query pooling; keys ``qkv``, ``proj``."""

    def __init__(self, dim: int, dim_out: int, num_heads: int) -> None:
        super().__init__()
        if dim_out % num_heads:
            raise ValueError(f"dim_out {dim_out} is not divisible by num_heads {num_heads}")
        self.dim_out = dim_out
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim_out)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor, pool_tile: tuple[int, int] | None = None) -> torch.Tensor:
        """Attend within each row of ``x`` ``(N, L, C)`` -> ``(N, L', dim_out)``.

        With ``pool_tile=(th, tw)`` the sequence is read as consecutive ``th x tw`` tiles
        and the queries are max-pooled 2x2 inside each tile, so ``L' = L / 4``.
        """
        n, length, _ = x.shape
        heads, head_dim = self.num_heads, self.dim_out // self.num_heads
        qkv = self.qkv(x).view(n, length, 3, self.dim_out)
        q, k, v = qkv.unbind(2)  # strided views (N, L, dim_out)
        if pool_tile is not None:
            th, tw = pool_tile
            q = _pool_tiles(q.reshape(n * (length // (th * tw)), th * tw, self.dim_out), th, tw)
            q = q.view(n, -1, self.dim_out)
        q_len = q.shape[1]
        out = F.scaled_dot_product_attention(
            q.view(n, q_len, heads, head_dim).transpose(1, 2),
            k.view(n, length, heads, head_dim).transpose(1, 2),
            v.view(n, length, heads, head_dim).transpose(1, 2),
        )
        return self.proj(out.transpose(1, 2).reshape(n, q_len, self.dim_out))


class HieraBlock(nn.Module):
    """Pre-norm transformer block with windowed or global attention.

    The first block of a stage may widen the channels (``proj`` on the normed input for
    the skip connection) and pool the queries (``q_stride``), halving the grid.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        mlp_ratio: float,
        window_size: int,
        q_stride: tuple[int, int] | None,
    ) -> None:
        super().__init__()
        if q_stride is not None and tuple(q_stride) != (2, 2):
            raise NotImplementedError("only a query stride of (2, 2) is supported")
        self.dim = dim
        self.dim_out = dim_out
        self.window_size = window_size
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = HieraAttention(dim, dim_out, num_heads)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = _GeluMlp(dim_out, int(dim_out * mlp_ratio))
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def input_tiling(self, tiling: _Tiling) -> _Tiling:
        """The layout this block wants its input in, given the current one."""
        ws = self.window_size
        if ws > 0:
            if tiling.height % ws == 0 and tiling.width % ws == 0:
                return _Tiling(tiling.height, tiling.width, ws, ws)
            return _Tiling.grid(tiling.height, tiling.width)  # padded windows, built per block
        if self.q_stride is not None and (tiling.tile_h % 2 or tiling.tile_w % 2):
            return _Tiling.grid(tiling.height, tiling.width)
        return tiling  # global attention: any token order

    def tilewise(self, tiling: _Tiling) -> bool:
        """Whether, on input in ``tiling``, this block acts on every tile independently."""
        ws = self.window_size
        return ws > 0 and (tiling.tile_h, tiling.tile_w) == (ws, ws)

    def forward(
        self, x: torch.Tensor, batch: int, tiling: _Tiling
    ) -> tuple[torch.Tensor, _Tiling]:
        """Tokens ``(B * n_tiles, T, dim)`` in ``tiling`` -> tokens and their new tiling."""
        want = self.input_tiling(tiling)
        x = _retile(x, batch, tiling, want)
        tiling = want
        pool = self.q_stride is not None
        out_tiling = tiling.halved() if pool else tiling
        if self.tilewise(tiling):
            return self.forward_tiles(x), out_tiling
        if self.window_size > 0:  # windows need padding: run on the plain grid
            return self._forward_padded(x, batch, tiling), out_tiling
        # global attention over all tokens of an image, in any order
        tile = (tiling.tile_h, tiling.tile_w)
        xn = self.norm1(x)
        shortcut = self._shortcut(x, xn, tile)
        y = self.attn(xn.view(batch, -1, self.dim), tile if pool else None)
        return self._mlp_residual(y.view(shortcut.shape).add_(shortcut)), out_tiling

    def _forward_padded(self, x: torch.Tensor, batch: int, tiling: _Tiling) -> torch.Tensor:
        """Windowed block on plain-grid tokens ``(B, H*W, dim)`` whose windows need zero
        padding, in bands of window rows (each band is independent of the others)."""
        ws, height, width = self.window_size, tiling.height, tiling.width
        pool = self.q_stride is not None
        div = 2 if pool else 1
        ws_out, w_out = ws // div, width // div
        n_rows = -(-height // ws)
        band = max(1, _chunk_limit(x, TILE_CHUNK_ELEMENTS) // (ws * width * self.dim))
        out = x.new_empty((batch, (height // div) * w_out, self.dim_out))
        grid_in = x.view(batch, height, width, self.dim)
        grid_out = out.view(batch, height // div, w_out, self.dim_out)
        for b in range(batch):
            for r0 in range(0, n_rows, band):
                g0, g1 = r0 * ws, min(height, (r0 + band) * ws)
                xb = grid_in[b, g0:g1].reshape(1, (g1 - g0) * width, self.dim)
                xn = self.norm1(xb)
                shortcut = self._shortcut(xb, xn, (g1 - g0, width))
                windows = _pad_windows(xn, 1, g1 - g0, width, ws)
                y = self.attn(windows, (ws, ws) if pool else None)
                y = _unpad_windows(y, 1, (g1 - g0) // div, w_out, ws_out)
                y = self._mlp_residual(y.add_(shortcut))
                grid_out[b, g0 // div : g1 // div] = y.view(-1, w_out, self.dim_out)
        return out

    def forward_tiles(self, x: torch.Tensor) -> torch.Tensor:
        """The block on tokens ``(N, ws*ws, dim)`` whose tiles are its attention windows.

        Every tile is independent, so any subset of tiles can be passed. Returns
        ``(N, ws*ws, dim_out)``, or ``(N, ws*ws/4, dim_out)`` when pooling.
        """
        tile = (self.window_size, self.window_size)
        xn = self.norm1(x)
        shortcut = self._shortcut(x, xn, tile)
        y = self.attn(xn, tile if self.q_stride is not None else None)
        return self._mlp_residual(y.add_(shortcut))

    def _shortcut(self, x: torch.Tensor, xn: torch.Tensor, tile: tuple[int, int]) -> torch.Tensor:
        if self.dim == self.dim_out:
            return x
        shortcut = self.proj(xn)
        return _pool_tiles(shortcut, *tile) if self.q_stride is not None else shortcut

    def _mlp_residual(self, x: torch.Tensor) -> torch.Tensor:
        """``x + mlp(norm2(x))``, in token chunks so that the wide hidden layer stays in cache."""
        tokens = x.reshape(-1, self.dim_out)
        step = max(256, _chunk_limit(x, MLP_CHUNK_ELEMENTS) // self.mlp.layers[0].out_features)
        if tokens.shape[0] <= step or torch.is_grad_enabled():  # out= does not record grads
            return self.mlp(self.norm2(x)).add_(x)
        out = torch.empty_like(tokens)
        for i in range(0, tokens.shape[0], step):
            part = tokens[i : i + step]
            torch.add(self.mlp(self.norm2(part)), part, out=out[i : i + step])
        return out.view(x.shape)


class Hiera(nn.Module):
    """Hierarchical ViT trunk (Hiera as used by SAM 2).

    ``forward(x)`` maps ``(B, 3, H, W)`` (H, W multiples of 32) to the four stage outputs,
    highest resolution first: ``(B, C_i, H / 4 / 2**i, W / 4 / 2**i)`` with
    ``C_i = cfg.stage_dims[i]``.
    """

    def __init__(self, cfg: HieraConfig) -> None:
        super().__init__()
        if len(cfg.stages) != len(cfg.window_spec):
            raise ValueError("stages and window_spec must have the same length")
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        embed_dim = cfg.embed_dim
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *cfg.window_pos_embed_bkg_spatial_size))
        first_window = cfg.window_spec[0]
        self.pos_embed_window = nn.Parameter(torch.zeros(1, embed_dim, first_window, first_window))

        stage_ends = [sum(cfg.stages[: i + 1]) - 1 for i in range(len(cfg.stages))]
        pool_blocks = {end + 1 for end in stage_ends[:-1][: cfg.q_pool]}
        self.stage_ends: tuple[int, ...] = tuple(stage_ends)
        self.blocks = nn.ModuleList()
        dim, heads, stage = embed_dim, cfg.num_heads, 0
        for i in range(sum(cfg.stages)):
            # a stage's first block still attends in the previous stage's windows
            window = 0 if i in cfg.global_att_blocks else cfg.window_spec[stage]
            dim_out = dim
            if i - 1 in stage_ends:
                dim_out = int(dim * cfg.dim_mul)
                heads = int(heads * cfg.head_mul)
                stage += 1
            self.blocks.append(
                HieraBlock(
                    dim,
                    dim_out,
                    heads,
                    cfg.mlp_ratio,
                    window,
                    tuple(cfg.q_stride) if i in pool_blocks else None,
                )
            )
            dim = dim_out
        self.channel_list: list[int] = [self.blocks[i].dim_out for i in reversed(stage_ends)]
        self._pos_cache: dict[tuple, torch.Tensor] = {}
        self._stride = cfg.patch_stride[0] * cfg.q_stride[0] ** cfg.q_pool

    def _pos_embed_grid(self, height: int, width: int) -> torch.Tensor:
        """The absolute position embedding of an ``(H, W)`` token grid, ``(1, C, H, W)``."""
        pos = F.interpolate(self.pos_embed, size=(height, width), mode="bicubic")
        window = self.pos_embed_window
        reps = (height // window.shape[-2], width // window.shape[-1])
        return pos + window.tile(1, 1, *reps)

    def _pos_embed_tiles(self, tiling: _Tiling, dtype: torch.dtype) -> torch.Tensor:
        """The position embedding in ``tiling`` as ``(n_tiles, T, C)``; cached in inference."""
        params = (self.pos_embed, self.pos_embed_window)
        # the cache is keyed on the parameters' storage and version counters (in-place
        # updates such as load_state_dict bump them); inference tensors have none
        cacheable = not any(p.is_inference() for p in params) and not (
            torch.is_grad_enabled() and any(p.requires_grad for p in params)
        )
        key = None
        if cacheable:
            key = (tiling, dtype, self.pos_embed.device, *((p.data_ptr(), p._version) for p in params))
            if key in self._pos_cache:
                return self._pos_cache[key]
        pos = self._pos_embed_grid(tiling.height, tiling.width).to(dtype)
        grid = _Tiling.grid(tiling.height, tiling.width)
        pos = _retile(pos.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[1]), 1, grid, tiling)
        if cacheable:
            self._pos_cache.clear()
            self._pos_cache[key] = pos
        return pos

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` -> four ``(B, C_i, H_i, W_i)`` maps, highest resolution first."""
        if x.shape[-2] % self._stride or x.shape[-1] % self._stride:
            raise ValueError(
                f"input height and width must be multiples of {self._stride}, got {tuple(x.shape[-2:])}"
            )
        feats = self.patch_embed(x)  # (B, C, H, W)
        batch, channels, height, width = feats.shape
        tiling = self.blocks[0].input_tiling(_Tiling.grid(height, width))
        th, tw = tiling.tile_h, tiling.tile_w
        nh, nw = height // th, width // tw
        pos = self._pos_embed_tiles(tiling, feats.dtype).view(1, nh, nw, th, tw, channels)
        # (B, C, H, W) -> tokens in `tiling`, fused with the position embedding add
        src = feats.view(batch, channels, nh, th, nw, tw).permute(0, 2, 4, 3, 5, 1)
        if torch.is_grad_enabled() and (src.requires_grad or pos.requires_grad):
            tokens = src + pos
        else:  # write straight into a contiguous buffer: one pass for permute and add
            tokens = torch.empty(src.shape, dtype=feats.dtype, device=feats.device)
            torch.add(src, pos, out=tokens)
        tokens = tokens.reshape(batch * nh * nw, th * tw, channels)

        outputs: list[torch.Tensor] = []
        i = 0
        while i < len(self.blocks):
            run = self._tilewise_run(i, tiling)
            if run > 0:
                tokens, tiling = self._forward_tilewise(i, i + run, tokens, batch, tiling, outputs)
                i += run
                continue
            tokens, tiling = self.blocks[i](tokens, batch, tiling)
            if i in self.stage_ends:
                outputs.append(_tiles_to_channels_first(tokens, batch, tiling))
            i += 1
        return outputs

    def _tilewise_run(self, start: int, tiling: _Tiling) -> int:
        """How many blocks from ``start`` on act tile by tile (after one re-tiling)."""
        tiling = self.blocks[start].input_tiling(tiling)
        count = 0
        for block in self.blocks[start:]:
            if block.input_tiling(tiling) != tiling or not block.tilewise(tiling):
                break
            tiling = tiling.halved() if block.q_stride is not None else tiling
            count += 1
        return count

    def _forward_tilewise(
        self,
        start: int,
        stop: int,
        tokens: torch.Tensor,
        batch: int,
        tiling: _Tiling,
        outputs: list[torch.Tensor],
    ) -> tuple[torch.Tensor, _Tiling]:
        """Run blocks ``start:stop`` on chunks of tile rows, one chunk through all blocks
        at a time, so that a chunk's activations stay in cache. Stage outputs met on the
        way are written straight into their (B, H, W, C) grids."""
        want = self.blocks[start].input_tiling(tiling)
        tokens = _retile(tokens, batch, tiling, want)
        tiling = want
        tilings = [tiling]
        for block in self.blocks[start:stop]:
            tilings.append(tilings[-1].halved() if block.q_stride is not None else tilings[-1])
        nh, nw = tiling.height // tiling.tile_h, tiling.width // tiling.tile_w
        grids = {
            i: tokens.new_empty(
                (batch, tilings[i - start + 1].height, tilings[i - start + 1].width, self.blocks[i].dim_out)
            )
            for i in range(start, stop)
            if i in self.stage_ends
        }
        last = tilings[-1]
        out = tokens.new_empty((tokens.shape[0], last.tile_h * last.tile_w, self.blocks[stop - 1].dim_out))
        row_elems = nw * tokens.shape[1] * tokens.shape[2]
        rows_per_chunk = max(1, _chunk_limit(tokens, TILE_CHUNK_ELEMENTS) // row_elems)
        for b in range(batch):
            for r0 in range(0, nh, rows_per_chunk):
                r1 = min(nh, r0 + rows_per_chunk)
                sl = slice((b * nh + r0) * nw, (b * nh + r1) * nw)
                x = tokens[sl]
                for i in range(start, stop):
                    x = self.blocks[i].forward_tiles(x)
                    if i in grids:
                        t = tilings[i - start + 1]
                        region = grids[i][b, r0 * t.tile_h : r1 * t.tile_h]
                        region = region.view(r1 - r0, t.tile_h, nw, t.tile_w, -1)
                        region.copy_(x.view(r1 - r0, nw, t.tile_h, t.tile_w, -1).transpose(1, 2))
                out[sl] = x
        for i in sorted(grids):
            outputs.append(grids[i].permute(0, 3, 1, 2))
        return out, last


def __getattr__(name: str):  # FpnNeck and ImageEncoder lived here; still importable
    if name == "FpnNeck":
        from .neck import FpnNeck

        return FpnNeck
    if name == "ImageEncoder":
        from .image_encoder import ImageEncoder

        return ImageEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
