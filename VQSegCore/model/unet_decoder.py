"""2D U-Net decoder: from the (quantised) bottleneck up to full resolution with skip connections."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from VQSegCore.model.blocks import double_conv


class UNetDecoder(nn.Module):
    """Post-quantisation 1x1 conv (code_dim -> bottleneck width), then per level: 2x transposed
    conv, concatenation with the encoder's skip, double conv. Output: [B, skip_channels[0], H, W].
    """

    def __init__(self, code_dim: int, skip_channels: list[int], bottleneck_channels: int, norm: str = "group") -> None:
        super().__init__()
        self.post_quant = nn.Conv2d(code_dim, bottleneck_channels, kernel_size=1)
        widths = [*skip_channels, bottleneck_channels]
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(widths[level + 1], widths[level], kernel_size=2, stride=2) for level in reversed(range(len(skip_channels)))
        )
        self.fuse = nn.ModuleList(double_conv(2 * widths[level], widths[level], norm) for level in reversed(range(len(skip_channels))))
        self.out_channels = skip_channels[0]

    def forward(self, skips: list[Tensor], bottleneck: Tensor) -> Tensor:
        x = self.post_quant(bottleneck)
        for up, fuse, skip in zip(self.ups, self.fuse, reversed(skips)):
            x = fuse(torch.cat([up(x), skip], dim=1))
        return x
