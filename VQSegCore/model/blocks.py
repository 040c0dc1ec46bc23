"""Small convolution building blocks shared by the U-Net encoder and the decoders."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass
class EncoderFeatures:
    """What every encoder returns: skip features (finest first) and the bottleneck map."""

    skips: list[Tensor]
    bottleneck: Tensor


def make_norm(kind: str, channels: int) -> nn.Module:
    """GroupNorm (up to 8 groups; no running statistics, independent of batch size) or BatchNorm."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(math.gcd(8, channels), channels)


def conv_norm_relu(in_channels: int, out_channels: int, norm: str) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        make_norm(norm, out_channels),
        nn.ReLU(inplace=True),
    ]


def double_conv(in_channels: int, out_channels: int, norm: str) -> nn.Sequential:
    """The U-Net unit: two 3x3 convolutions, each followed by a norm and ReLU."""
    return nn.Sequential(*conv_norm_relu(in_channels, out_channels, norm), *conv_norm_relu(out_channels, out_channels, norm))
