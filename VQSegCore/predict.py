"""Whole-volume prediction with a VQ-Seg model: an image in, a label map on exactly its grid out.

    label_image = segment_image(model, image, device=torch.device("cpu"))

The image goes onto the model grid (`to_model_grid`: reorientation, in-plane resampling, the card's
intensity normalisation), the model runs slice by slice (2.5D stacks when the config asks), and the
per-class softmax comes back to the original grid with linear interpolation before the argmax, so
the label map has the input's size, spacing, origin and direction.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch

from VQSegCore.model import VQSegConfig
from VQSegCore.preprocess import crop_from_padding, pad_to_multiple, probabilities_to_label, slice_stack, to_model_grid


@torch.inference_mode()
def predict_probabilities(
    model, volume: np.ndarray, config: VQSegConfig, device: torch.device, *, background: float = 0.0, slices_per_batch: int = 8
) -> np.ndarray:
    """Softmax [C, z, H, W] float32 of a model-grid volume [z, H, W]; channel 0 is background."""
    model.eval()
    depth = volume.shape[0]
    context = config.preprocessing.context_slices
    out = np.empty((config.num_classes, *volume.shape), dtype=np.float32)
    for start in range(0, depth, slices_per_batch):
        stop = min(depth, start + slices_per_batch)
        stack = np.stack([np.asarray(slice_stack(volume, k, context), dtype=np.float32) for k in range(start, stop)])
        padded, padding = pad_to_multiple(stack, config.size_multiple, value=background)
        logits = model(torch.from_numpy(np.ascontiguousarray(padded)).to(device), perturb=False, reconstruct=False).logits
        probabilities = torch.softmax(logits.float(), dim=1).cpu().numpy()  # [B, C, H, W]
        out[:, start:stop] = crop_from_padding(probabilities, padding).transpose(1, 0, 2, 3)
    return out


def segment_image(model, image: sitk.Image, device: torch.device | str = "cpu") -> sitk.Image:
    """Label map (the class table's values, 0 background) of `image`, on the image's own grid."""
    config: VQSegConfig = model.config
    grid = to_model_grid(image, config.preprocessing)
    probabilities = predict_probabilities(model, grid.array, config, torch.device(device), background=grid.background_value)
    return probabilities_to_label(probabilities, grid, labels=(0, *config.classes.values))
