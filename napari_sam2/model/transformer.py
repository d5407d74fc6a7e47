"""Attention and the two-way transformer of SAM's mask decoder.

The two-way transformer alternates between the sparse side (output tokens and prompt
embeddings, a handful of vectors) and the dense side (the image embedding, one token per
feature-map cell): tokens attend to each other, tokens attend to the image, the image
attends back to the tokens. Parameter names follow the official checkpoints.

:class:`Attention` is also the base of the rotary attention of the memory module: a
subclass can reuse :meth:`Attention.project` (input projections, split into heads),
rotate queries and keys, and finish with :meth:`Attention.attend`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .layers import MLP

__all__ = ["Attention", "TwoWayAttentionBlock", "TwoWayTransformer"]


class Attention(nn.Module):
    """Multi-head attention whose queries, keys and values live in a narrower space.

    Inputs of ``embedding_dim`` channels (keys and values: ``kv_in_dim``) are projected to
    ``embedding_dim // downsample_rate`` channels, split into ``num_heads`` heads, attended
    with :func:`torch.nn.functional.scaled_dot_product_attention` and projected back to
    ``embedding_dim``.

    Submodules (official keys): ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        downsample_rate: int = 1,
        kv_in_dim: int | None = None,
        *,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.kv_in_dim = embedding_dim if kv_in_dim is None else kv_in_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError(
                f"num_heads ({num_heads}) must divide the internal width {self.internal_dim}"
            )
        self.head_dim = self.internal_dim // num_heads
        self.dropout_p = dropout

        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.v_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def separate_heads(self, x: Tensor, num_heads: int | None = None) -> Tensor:
        """``(..., N, heads * D)`` -> ``(..., heads, N, D)`` (a view)."""
        heads = self.num_heads if num_heads is None else num_heads
        return x.unflatten(-1, (heads, -1)).transpose(-3, -2)

    @staticmethod
    def recombine_heads(x: Tensor) -> Tensor:
        """``(..., heads, N, D)`` -> ``(..., N, heads * D)``."""
        return x.transpose(-3, -2).flatten(-2)

    def project(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Input projections split into heads.

        ``q`` (B, Nq, embedding_dim), ``k``/``v`` (B, Nk, kv_in_dim) ->
        ``(B, heads, Nq, D)``, ``(B, heads, Nk, D)``, ``(B, heads, Nk, D)``.
        """
        return (
            self.separate_heads(self.q_proj(q)),
            self.separate_heads(self.k_proj(k)),
            self.separate_heads(self.v_proj(v)),
        )

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Scaled dot-product attention on split heads and the output projection.

        ``(B, heads, Nq, D)``, ``(B, heads, Nk, D)`` x2 -> ``(B, Nq, embedding_dim)``.
        """
        dropout_p = self.dropout_p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        return self.out_proj(self.recombine_heads(out))

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """``q`` (B, Nq, C), ``k`` and ``v`` (B, Nk, C_kv) -> (B, Nq, C)."""
        return self.attend(*self.project(q, k, v))


class TwoWayAttentionBlock(nn.Module):
    """One round of token/image exchange.

    1. self-attention of the tokens (without positional terms in the first block, where
       its output replaces the tokens instead of being added to them),
    2. tokens attend to the image,
    3. an MLP on the tokens,
    4. the image attends to the tokens.

    Each step is followed by a residual add and a layer norm (``norm1`` .. ``norm4``).
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.skip_first_layer_pe = skip_first_layer_pe
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, num_layers=2)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )

    def forward(
        self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Tokens ``queries`` (B, N, C) and image ``keys`` (B, HW, C) with their positional
        terms ``query_pe`` (B, N, C) and ``key_pe`` (1 or B, HW, C); returns both updated."""
        if self.skip_first_layer_pe:
            queries = self.norm1(self.self_attn(queries, queries, queries))
        else:
            q = queries + query_pe
            queries = self.norm1(queries + self.self_attn(q, q, queries))

        # The image tokens do not change until step 4: add their positions once.
        keys_pos = keys + key_pe
        q = queries + query_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, keys_pos, keys))

        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(keys_pos, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """``depth`` two-way blocks and a last token-to-image attention.

    Keys: ``layers.{i}.*``, ``final_attn_token_to_image.*``, ``norm_final_attn.*``.
    """

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim,
                num_heads,
                mlp_dim=mlp_dim,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: Tensor, image_pe: Tensor, point_embedding: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Run the exchange.

        Args:
            image_embedding: ``(B, C, h, w)`` image features.
            image_pe: ``(1 or B, C, h, w)`` their positional encoding (broadcast over B).
            point_embedding: ``(B, N, C)`` output tokens followed by prompt embeddings;
                also used as the tokens' positional term in every block.

        Returns:
            ``(tokens (B, N, C), image tokens (B, h * w, C))``.
        """
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)

        q = queries + point_embedding
        attn = self.final_attn_token_to_image(q, keys + key_pe, keys)
        queries = self.norm_final_attn(queries + attn)
        return queries, keys
