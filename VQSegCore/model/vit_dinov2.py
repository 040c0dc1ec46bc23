"""DINOv2 ViT-S/14 in plain torch, with the parameter names of Meta's released checkpoint.

`DinoV2ViT` holds exactly the tensors of `dinov2_vits14_pretrain.pth` (patch_embed.proj,
cls_token, pos_embed, mask_token, blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2,
mlp.fc1, mlp.fc2, ls2.gamma}, norm), so that file loads with strict=True; see pretrained.py.
Written here rather than taken from timm because timm imports torchvision, which does not import
beside the CPU torch build this project pins.

`DinoV2Encoder` wraps it for segmentation: grey or 2.5D input to RGB, ImageNet normalisation,
and the patch tokens of the tapped blocks as [B, D, H/14, W/14] maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from VQSegCore.model.blocks import EncoderFeatures

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int, in_channels: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Tensor) -> Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)  # [B, h*w, D]


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(attended.transpose(1, 2).reshape(batch, tokens, dim))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both residual branches."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio * dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoV2ViT(nn.Module):
    """ViT with a CLS token, no registers; defaults are ViT-S/14 (384 wide, 12 blocks, 6 heads)."""

    def __init__(
        self, embed_dim: int = 384, depth: int = 12, num_heads: int = 6, patch_size: int = 14, pos_grid: int = 37
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.pos_grid = pos_grid
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pos_grid * pos_grid, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))  # unused here; in the checkpoint
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def position_embedding(self, grid_h: int, grid_w: int) -> Tensor:
        """The checkpoint's position embeddings resampled (bicubic) to a grid_h x grid_w token grid."""
        if grid_h == grid_w == self.pos_grid:
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        dim = patch_pos.shape[-1]
        patch_pos = patch_pos.float().reshape(1, self.pos_grid, self.pos_grid, dim).permute(0, 3, 1, 2)
        # As in DINOv2: a scale factor with a +0.1 offset (so rounding lands on the target size)
        # rather than a target size; both give the same grid, the offset gives DINOv2's values.
        scale = ((grid_h + 0.1) / self.pos_grid, (grid_w + 0.1) / self.pos_grid)
        patch_pos = F.interpolate(patch_pos, scale_factor=scale, mode="bicubic", align_corners=False)
        patch_pos = patch_pos[:, :, :grid_h, :grid_w].permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)
        return torch.cat([cls_pos, patch_pos.to(cls_pos.dtype)], dim=1)

    def tokens_of_blocks(self, images: Tensor, blocks: tuple[int, ...]) -> list[Tensor]:
        """Normalised patch tokens [B, h*w, D] after each block in `blocks` (CLS token dropped)."""
        grid_h, grid_w = images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.position_embedding(grid_h, grid_w)
        taken = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in blocks:
                taken.append(self.norm(x)[:, 1:])
            if index >= blocks[-1]:
                break
        return taken


class DinoV2Encoder(nn.Module):
    """The ViT as a segmentation encoder: taps blocks `taps`; the last tap is the VQ bottleneck."""

    def __init__(
        self,
        in_channels: int = 1,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        patch_size: int = 14,
        pos_grid: int = 37,
        taps: tuple[int, ...] = (2, 5, 8, 11),
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"the DINOv2 encoder takes 1 or 3 channels, got {in_channels}")
        self.in_channels = in_channels
        self.taps = tuple(taps)
        self.vit = DinoV2ViT(embed_dim, depth, num_heads, patch_size, pos_grid)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def out_channels(self) -> int:
        return self.vit.norm.normalized_shape[0]

    def forward(self, images: Tensor) -> EncoderFeatures:
        rgb = images.expand(-1, 3, -1, -1) if self.in_channels == 1 else images
        rgb = (rgb - self.mean) / self.std
        grid_h, grid_w = images.shape[-2] // self.vit.patch_size, images.shape[-1] // self.vit.patch_size
        maps = [t.transpose(1, 2).reshape(t.shape[0], -1, grid_h, grid_w) for t in self.vit.tokens_of_blocks(rgb, self.taps)]
        return EncoderFeatures(skips=maps[:-1], bottleneck=maps[-1])
