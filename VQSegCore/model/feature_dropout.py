"""The two comparison perturbations that share QPM's call site: feature dropout and none.

Every perturbation takes (tokens, quantized, indices, codes) and returns (features, changed), so
`perturbation = qpm | dropout | none` is one switch on one code path.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FeatureDropout(nn.Module):
    """UniMatch-style channel dropout (Dropout2d, p = 0.5) on the quantised features.

    On tokens [B, N, D] a channel is one feature dimension across all N tokens of a sample, so
    this is exactly Dropout2d on the [B, D, h, w] map. It is applied whenever the caller asks
    for a perturbation, in train and eval mode alike (the flag, not `model.training`, decides).
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    def forward(
        self, tokens: Tensor, quantized: Tensor, indices: Tensor, codes: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, None]:
        return channel_dropout(quantized, self.p, channel_dim=2, generator=generator), None

    def extra_repr(self) -> str:
        return f"p={self.p}"


def channel_dropout(features: Tensor, p: float, *, channel_dim: int = 1, generator: torch.Generator | None = None) -> Tensor:
    """Dropout2d: each sample's channel (along `channel_dim`) zeroed with probability p, the rest scaled by 1 / (1 - p).

    [B, C, H, W] maps (channel_dim 1) or [B, N, D] tokens (channel_dim 2: a channel spans all tokens).
    """
    shape = [1] * features.ndim
    shape[0], shape[channel_dim] = features.shape[0], features.shape[channel_dim]
    keep = torch.rand(shape, device=features.device, generator=generator) >= p
    return features * keep.to(features.dtype) / (1.0 - p)


class NoPerturbation(nn.Module):
    """The control: the quantised features pass unchanged."""

    def forward(
        self, tokens: Tensor, quantized: Tensor, indices: Tensor, codes: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, None]:
        return quantized, None
