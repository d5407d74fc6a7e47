"""Token layouts of the Hiera trunk: the feature grid cut into tiles, and moves between tilings.

Between blocks the residual stream is ``(B * n_tiles, tile_h * tile_w, C)``: the
``(H, W)`` grid cut into non-overlapping tiles that cover it exactly, tiles row-major,
tokens row-major inside each tile (see :mod:`.hiera`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _chunk_limit(x: torch.Tensor, elements: int) -> int:
    """The working-set size for ``x``'s device: ``elements`` on CPU, unbounded elsewhere."""
    return elements if x.device.type == "cpu" else 1 << 62


@dataclass(frozen=True)
class _Tiling:
    """An ``(height, width)`` grid cut into ``(tile_h, tile_w)`` tiles that divide it."""

    height: int
    width: int
    tile_h: int
    tile_w: int

    @staticmethod
    def grid(height: int, width: int) -> "_Tiling":
        return _Tiling(height, width, height, width)

    @property
    def n_tiles(self) -> int:
        return (self.height // self.tile_h) * (self.width // self.tile_w)

    def halved(self) -> "_Tiling":
        """The tiling after a 2x2 query pool inside every tile."""
        return _Tiling(self.height // 2, self.width // 2, self.tile_h // 2, self.tile_w // 2)


def _split_axis(extent: int, src: int, dst: int) -> tuple[list[int], int] | None:
    """Factor one axis for a re-tiling from tiles of ``src`` to tiles of ``dst``.

    Returns the sizes of the source's dims along this axis after splitting, tile index
    first and in-tile index last, and how many of the leading ones make up the
    destination's tile index (the rest make up its in-tile index); ``None`` when
    neither tile side divides the other.
    """
    if dst % src == 0:  # merge source tiles: (extent/dst, dst/src) tile index, src in-tile
        return [extent // dst, dst // src, src], 1
    if src % dst == 0:  # split source tiles: extent/src tile index, (src/dst, dst) in-tile
        return [extent // src, src // dst, dst], 2
    return None


def _retile(x: torch.Tensor, batch: int, src: _Tiling, dst: _Tiling) -> torch.Tensor:
    """Reorder tokens ``(B * src.n_tiles, T, C)`` into the tiling ``dst`` (one copy)."""
    if src == dst:
        return x
    rows = _split_axis(src.height, src.tile_h, dst.tile_h)
    cols = _split_axis(src.width, src.tile_w, dst.tile_w)
    if rows is None or cols is None:  # incommensurable tiles: go through the plain grid
        grid = _Tiling.grid(src.height, src.width)
        return _retile(_retile(x, batch, src, grid), batch, grid, dst)
    (r0, r1, r2), r_tile = rows
    (c0, c1, c2), c_tile = cols
    channels = x.shape[-1]
    # source memory order: B | row tile dims (r0[, r1]) | col tile dims | row in-tile | col in-tile | C
    r_dims = [r0, r1] if r_tile == 1 else [r0]
    c_dims = [c0, c1] if c_tile == 1 else [c0]
    r_in = [r2] if r_tile == 1 else [r1, r2]
    c_in = [c2] if c_tile == 1 else [c1, c2]
    sizes = [batch, *r_dims, *c_dims, *r_in, *c_in, channels]
    idx = iter(range(1, len(sizes) - 1))
    r_src = [next(idx) for _ in r_dims]
    c_src = [next(idx) for _ in c_dims]
    r_src += [next(idx) for _ in r_in]
    c_src += [next(idx) for _ in c_in]
    # r_src / c_src now list the axis' dims in (tile index ..., in-tile ...) order
    order = [0, *r_src[:r_tile], *c_src[:c_tile], *r_src[r_tile:], *c_src[c_tile:], len(sizes) - 1]
    out = x.reshape(sizes).permute(order)
    return out.reshape(batch * dst.n_tiles, dst.tile_h * dst.tile_w, channels)


def _tiles_to_channels_first(x: torch.Tensor, batch: int, tiling: _Tiling) -> torch.Tensor:
    """Tokens in ``tiling`` -> ``(B, C, H, W)`` (channels-last memory, as the published
    model returns its stage outputs)."""
    grid = _retile(x, batch, tiling, _Tiling.grid(tiling.height, tiling.width))
    return grid.view(batch, tiling.height, tiling.width, -1).permute(0, 3, 1, 2)


def _pad_windows(x: torch.Tensor, batch: int, height: int, width: int, window: int) -> torch.Tensor:
    """Plain-grid tokens ``(B, H*W, C)`` -> zero-padded windows ``(B*nW, window**2, C)``."""
    channels = x.shape[-1]
    pad_h = -height % window
    pad_w = -width % window
    x = x.view(batch, height, width, channels)
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    nh, nw = (height + pad_h) // window, (width + pad_w) // window
    x = x.view(batch, nh, window, nw, window, channels).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(batch * nh * nw, window * window, channels)


def _unpad_windows(x: torch.Tensor, batch: int, height: int, width: int, window: int) -> torch.Tensor:
    """Padded windows ``(B*nW, window**2, C)`` -> plain-grid tokens ``(B, H*W, C)``."""
    channels = x.shape[-1]
    nh, nw = -(-height // window), -(-width // window)
    x = x.view(batch, nh, nw, window, window, channels).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(batch, nh * window, nw * window, channels)[:, :height, :width]
    return x.reshape(batch, height * width, channels)


def _pool_tiles(x: torch.Tensor, tile_h: int, tile_w: int) -> torch.Tensor:
    """2x2 max pool inside every tile: ``(N, tile_h*tile_w, C)`` -> ``(N, tile_h*tile_w/4, C)``.

    ``x`` may be a strided view (e.g. the query slice of a fused qkv projection).
    Odd tile sides drop their last row/column, like ``MaxPool2d(2, 2)``.
    """
    n, _, channels = x.shape
    x = x.unflatten(1, (tile_h, tile_w))
    h2, w2 = tile_h // 2, tile_w // 2
    if tile_h % 2 or tile_w % 2:
        x = x[:, : 2 * h2, : 2 * w2]
    # two pairwise maxima (columns, then rows) beat a strided amax reduction by far
    cols = x.unflatten(2, (w2, 2))  # (N, 2*h2, w2, 2, C)
    x = torch.maximum(cols[:, :, :, 0], cols[:, :, :, 1]).unflatten(1, (h2, 2))
    return torch.maximum(x[:, :, 0], x[:, :, 1]).view(n, h2 * w2, channels)
