"""2D U-Net encoder: `depth` 2x downsamplings, width doubling per level; trains from scratch on a CPU."""

from __future__ import annotations

from torch import Tensor, nn

from VQSegCore.model.blocks import EncoderFeatures, double_conv


class UNetEncoder(nn.Module):
    """Levels 0..depth at widths base_width * 2**level; level `depth` is the bottleneck the VQ sees."""

    def __init__(self, in_channels: int, base_width: int = 16, depth: int = 4, norm: str = "group") -> None:
        super().__init__()
        self.widths = [base_width * 2**level for level in range(depth + 1)]
        self.stem = double_conv(in_channels, self.widths[0], norm)
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), double_conv(self.widths[level], self.widths[level + 1], norm))
            for level in range(depth)
        )

    @property
    def skip_channels(self) -> list[int]:
        return self.widths[:-1]

    @property
    def out_channels(self) -> int:
        return self.widths[-1]

    def forward(self, images: Tensor) -> EncoderFeatures:
        x = self.stem(images)
        skips = []
        for down in self.downs:
            skips.append(x)
            x = down(x)
        return EncoderFeatures(skips=skips, bottleneck=x)
