"""Batched, torch-only augmentations for the weak-to-strong scheme, seeded by a torch.Generator.

Weak view (teacher input, and the base of the strong views): per-sample random horizontal flip,
vertical flip and 90-degree rotation (0/180 only for non-square images), applied identically to
the images and to every label map passed along. Exact on the pixel grid: no interpolation, so a
label never blurs. (The authors' rescale + crop belongs to the data loader, which sees the
whole slice; this works on the crops it produces.)

Strong view (student input), on top of the weak view: intensity jitter (brightness, contrast,
gamma), Gaussian blur with a random sigma, Gaussian noise; each with its own probability, as
UniMatch's ColorJitter(p=0.8) / blur(p=0.5). No geometry, so the teacher's pseudo-label on the
weak view stays aligned with the strong view. Intensities are augmented within each sample's own
range [min, max]: a CT window in [0, 1] and a z-scored MRI alike (shifts and noise are fractions of
that range, gamma acts on the range mapped to [0, 1], results stay inside it). Clamping a z-scored
image to [0, 1] would zero most of it and saturate the blood pool: views the teacher and
inference never see. `StrongAugment.value_range` fixes the range instead (e.g. (0, 1)).

CutMix: a random box (2-40 % of the area, aspect 0.3-3.3) per sample, with probability p; inside
it a sample takes the content of the batch in reverse order (`x.flip(0)`), as in the authors'
code. `cutmix` mixes images, pseudo-labels, confidences and valid masks with the same box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def _uniform(generator: torch.Generator | None, low: float, high: float, size: int = 1) -> Tensor:
    return low + (high - low) * torch.rand(size, generator=generator)


def weak_view(images: Tensor, *maps: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, ...]:
    """images [B, C, H, W], maps [B, H, W] -> the same tensors, flipped/rotated per sample alike."""
    batch, square = images.shape[0], images.shape[-1] == images.shape[-2]
    flips = torch.rand(batch, 2, generator=generator) < 0.5
    turns = torch.randint(4 if square else 1, (batch,), generator=generator) * (1 if square else 2)
    out = [images.clone(), *(m.clone() for m in maps)]
    for i in range(batch):
        for k, tensor in enumerate(out):
            x = tensor[i]
            if flips[i, 0]:
                x = x.flip(-1)
            if flips[i, 1]:
                x = x.flip(-2)
            tensor[i] = torch.rot90(x, int(turns[i]), dims=(-2, -1))
    return tuple(out)


@dataclass
class StrongAugment:
    """Strength of the strong view's intensity augmentations; shifts and noise in units of the range."""

    jitter_p: float = 0.8
    brightness: float = 0.2  # additive shift in [-b, b] x range
    contrast: float = 0.3  # scale about the sample mean by [1 - c, 1 + c]
    gamma: tuple[float, float] = (0.7, 1.5)
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # pixels, as UniMatch's blur
    noise_p: float = 0.5
    noise_std: float = 0.03  # maximum standard deviation x range; drawn per sample in [0, noise_std]
    value_range: tuple[float, float] | None = None  # None: each sample's own [min, max]


def sample_range(images: Tensor, value_range: tuple[float, float] | None = None) -> tuple[Tensor, Tensor]:
    """(low, high) [B, 1, 1, 1] of each sample: its own min and max, or the fixed `value_range`."""
    if value_range is not None:
        low, high = (images.new_full((images.shape[0], 1, 1, 1), float(v)) for v in value_range)
        return low, high
    flat = images.reshape(images.shape[0], -1)
    return flat.amin(dim=1).view(-1, 1, 1, 1), flat.amax(dim=1).view(-1, 1, 1, 1)


def strong_view(images: Tensor, generator: torch.Generator | None = None, params: StrongAugment | None = None) -> Tensor:
    """Intensity-only strong augmentation of [B, C, H, W] images; each sample stays within its range."""
    p = params or StrongAugment()
    batch, device = images.shape[0], images.device

    def per_sample(values: Tensor) -> Tensor:
        return values.to(device=device, dtype=images.dtype).view(batch, 1, 1, 1)

    x = images
    low, high = sample_range(images, p.value_range)
    span = (high - low).clamp_min(torch.finfo(images.dtype).eps)
    jitter = per_sample(torch.rand(batch, generator=generator) < p.jitter_p)
    shift = per_sample(_uniform(generator, -p.brightness, p.brightness, batch)) * span
    scale = per_sample(_uniform(generator, 1 - p.contrast, 1 + p.contrast, batch))
    gamma = per_sample(_uniform(generator, *p.gamma, batch))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    unit = ((((x + shift - mean) * scale + mean) - low) / span).clamp(0, 1)  # the range mapped to [0, 1]
    x = torch.where(jitter.bool(), low + span * unit**gamma, x)

    blur = torch.rand(batch, generator=generator) < p.blur_p
    sigma = _uniform(generator, *p.blur_sigma, batch)
    x = torch.where(per_sample(blur).bool(), gaussian_blur(x, sigma.to(device)), x)

    noisy = per_sample(torch.rand(batch, generator=generator) < p.noise_p)
    std = per_sample(_uniform(generator, 0.0, p.noise_std, batch)) * span
    noise = torch.randn(x.shape, generator=generator).to(device=device, dtype=x.dtype)
    return torch.minimum(torch.maximum(x + noisy * std * noise, low), high)


def gaussian_blur(images: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur of [B, C, H, W] with one sigma [B] per sample (reflect padding)."""
    batch, channels, height, width = images.shape
    radius = max(1, min(math.ceil(3 * float(sigma.max())), (min(height, width) - 1)))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None].to(images.dtype)) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)  # [B*C, K]
    x = images.reshape(1, batch * channels, height, width)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=batch * channels)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel[:, None, :, None], groups=batch * channels)
    return x.reshape(batch, channels, height, width)


def cutmix_boxes(
    batch: int,
    size: tuple[int, int],
    generator: torch.Generator | None = None,
    *,
    p: float = 0.5,
    area: tuple[float, float] = (0.02, 0.4),
    aspect: tuple[float, float] = (0.3, 1 / 0.3),
    device: torch.device | str = "cpu",
) -> Tensor:
    """Boolean box masks [B, H, W]; with probability 1 - p a sample's mask is empty (no mixing)."""
    height, width = size
    boxes = torch.zeros(batch, height, width, dtype=torch.bool)
    for i in range(batch):
        if float(torch.rand(1, generator=generator)) >= p:
            continue
        for _ in range(100):  # rejection sampling, as the authors' code: redraw until the box fits
            box_area = float(_uniform(generator, *area)) * height * width
            ratio = math.exp(float(_uniform(generator, math.log(aspect[0]), math.log(aspect[1]))))
            h, w = round(math.sqrt(box_area * ratio)), round(math.sqrt(box_area / ratio))
            if 1 <= h <= height and 1 <= w <= width and area[0] <= h * w / (height * width) <= area[1]:
                break
        else:  # a tiny image where no box fits the bounds: the smallest square that does
            h = w = min(height, width, math.ceil(math.sqrt(area[0] * height * width)))
        top = int(torch.randint(height - h + 1, (1,), generator=generator))
        left = int(torch.randint(width - w + 1, (1,), generator=generator))
        boxes[i, top : top + h, left : left + w] = True
    return boxes.to(device)


def cutmix(tensor: Tensor, boxes: Tensor) -> Tensor:
    """Inside each sample's box, the content of the batch in reverse order; [B, H, W] or [B, C, H, W]."""
    mask = boxes if tensor.ndim == 3 else boxes[:, None]
    return torch.where(mask, tensor.flip(0), tensor)
