"""Output heads of the dual-branch decoder: segmentation logits and image reconstruction (+ L1 loss).

The reconstruction decoder reads only the quantised bottleneck, never the encoder's skips: with
skips, the finest skip alone could reproduce the image and the L1 loss would teach the codebook
nothing. Through the bottleneck it forces the codes to carry the image's content (the paper's D_i).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from VQSegCore.model.blocks import conv_norm_relu


class SegmentationHead(nn.Module):
    """1x1 conv to class logits, optionally after a 3x3 conv + ReLU (the DPT head)."""

    def __init__(self, in_channels: int, num_classes: int, hidden_channels: int | None = None) -> None:
        super().__init__()
        if hidden_channels is None:
            self.layers = nn.Conv2d(in_channels, num_classes, kernel_size=1)
        else:
            self.layers = nn.Sequential(
                nn.Conv2d(in_channels, hidden_channels, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(hidden_channels, num_classes, kernel_size=1),
            )

    def forward(self, features: Tensor) -> Tensor:
        return self.layers(features)


class ReconstructionDecoder(nn.Module):
    """Image decoder D_i: per width, a 2x bilinear upsampling and 3x3 conv-norm-ReLU; then 1x1 to the
    image channels, resized to the image size. Output is in preprocessed intensity units (no
    squashing: CT is in [0, 1], MRI is z-scored).
    """

    def __init__(self, code_dim: int, widths: list[int], out_channels: int, norm: str = "group") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = code_dim
        for width in widths:
            layers += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), *conv_norm_relu(channels, width, norm)]
            channels = width
        self.body = nn.Sequential(*layers)
        self.to_image = nn.Conv2d(channels, out_channels, kernel_size=1)

    def forward(self, quantized: Tensor, image_size: tuple[int, int]) -> Tensor:
        image = self.to_image(self.body(quantized))
        if image.shape[-2:] != tuple(image_size):
            image = F.interpolate(image, size=image_size, mode="bilinear", align_corners=False)
        return image


def reconstruction_l1_loss(reconstruction: Tensor, images: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error, optionally only where `mask` [B, 1 or C, H, W] is true (e.g. not padding)."""
    error = (reconstruction - images).abs()
    if mask is None:
        return error.mean()
    weight = mask.to(error.dtype).expand_as(error)
    return (error * weight).sum() / weight.sum().clamp_min(1.0)
