"""PFA, the Post-VQ Feature Adapter: align quantised features with a frozen foundation model.

A 1x1 conv maps the post-VQ features, resized to the foundation model's grid, to its channel
count; a patch-wise InfoNCE loss (cosine similarity, temperature tau) then asks each adapted patch
to match the foundation feature at the same location rather than at any other location of the
same image. The caller weights the loss (lambda_a = 5 in the paper). Training only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PFAAdapter(nn.Module):
    def __init__(self, code_dim: int, feature_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(code_dim, feature_dim, kernel_size=1)

    def forward(self, quantized: Tensor, grid: tuple[int, int]) -> Tensor:
        """quantized [B, D, h, w] -> [B, feature_dim, *grid]."""
        if quantized.shape[-2:] != tuple(grid):
            quantized = F.interpolate(quantized, size=grid, mode="bilinear", align_corners=False)
        return self.proj(quantized)


def patch_infonce_loss(adapted: Tensor, target: Tensor, temperature: float = 0.07) -> Tensor:
    """InfoNCE over the patches of each image.

    L = -mean_i log( exp(cos(a_i, t_i)/tau) / sum_j exp(cos(a_i, t_j)/tau) ), j over the patches
    of the same image. adapted, target: [B, C, H, W]; the target is treated as constant.
    """
    if adapted.shape != target.shape:
        raise ValueError(f"adapted features {tuple(adapted.shape)} and target {tuple(target.shape)} differ in shape")
    batch, _, height, width = adapted.shape
    a = F.normalize(adapted.flatten(2).float(), dim=1)  # [B, C, P]
    t = F.normalize(target.detach().flatten(2).float(), dim=1)
    logits = a.transpose(1, 2) @ t / temperature  # [B, P, P]: row = adapted patch, column = target patch
    positives = torch.arange(height * width, device=adapted.device).expand(batch, -1)
    return F.cross_entropy(logits.reshape(-1, height * width), positives.reshape(-1))
