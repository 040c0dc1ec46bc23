"""DPT decoder (as in UniMatch V2 / VQ-Seg's code): four ViT taps fused top-down at 1/7 of the input.

Each tap [B, D, h, w] is projected (1x1) to its own width, resampled to 4h, 2h, h and h/2, mapped
to `features` channels (3x3) and fused coarse to fine with RefineNet-style fusion blocks; the
last fusion doubles the size again, so a 16x16-token input gives a 128x128 feature map.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """path = refine(path + residual(skip)), resized to `size`, then a 1x1 conv."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.skip_unit = ResidualConvUnit(features)
        self.refine_unit = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)

    def forward(self, path: Tensor, skip: Tensor | None, size: tuple[int, int]) -> Tensor:
        if skip is not None:
            path = path + self.skip_unit(skip)
        path = self.refine_unit(path)
        path = F.interpolate(path, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(path)


class DPTDecoder(nn.Module):
    """forward(skips, bottleneck): the first three taps and the (quantised) last tap, each
    [B, in_dim, h, w]; returns [B, features, 8h, 8w]."""

    def __init__(self, in_dim: int, tap_channels: tuple[int, ...] = (48, 96, 192, 384), features: int = 64) -> None:
        super().__init__()
        c0, c1, c2, c3 = tap_channels
        self.projections = nn.ModuleList(nn.Conv2d(in_dim, c, kernel_size=1) for c in tap_channels)
        self.resamplers = nn.ModuleList(
            [
                nn.ConvTranspose2d(c0, c0, kernel_size=4, stride=4),
                nn.ConvTranspose2d(c1, c1, kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(c3, c3, kernel_size=3, stride=2, padding=1),
            ]
        )
        self.level_convs = nn.ModuleList(nn.Conv2d(c, features, kernel_size=3, padding=1, bias=False) for c in tap_channels)
        self.fusions = nn.ModuleList(FusionBlock(features) for _ in tap_channels)
        self.out_channels = features

    def forward(self, skips: list[Tensor], bottleneck: Tensor) -> Tensor:
        taps = [*skips, bottleneck]
        levels = [
            conv(resample(project(tap)))
            for tap, project, resample, conv in zip(taps, self.projections, self.resamplers, self.level_convs)
        ]
        finest = levels[0].shape[-2:]
        path = self.fusions[3](levels[3], None, levels[2].shape[-2:])
        path = self.fusions[2](path, levels[2], levels[1].shape[-2:])
        path = self.fusions[1](path, levels[1], finest)
        return self.fusions[0](path, levels[0], (2 * finest[0], 2 * finest[1]))
