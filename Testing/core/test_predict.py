"""Whole-volume prediction (`segment_volume`): the label map follows the model's softmax on the input's exact grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from helpers.images import GEOMETRIES, make_image
from VQSegCore.io.geometry import Geometry
from VQSegCore.model import VQSegConfig, build_model
from VQSegCore.model.config import PreprocessingConfig
from VQSegCore.model.vqseg_net import VQSegOutput
from VQSegCore.preprocess import intensity_transform
from VQSegCore.infer import SegmentRequest, SliceEngine, segment_volume


class ThresholdModel(nn.Module):
    """Class 1 wherever the normalised intensity exceeds 0.5: a model whose answer is known."""

    def __init__(self, config: VQSegConfig) -> None:
        super().__init__()
        self.config = config.resolved()
        self.quantizer = nn.Module()
        self.quantizer.codebook_size = 4
        self.calls = 0

    def forward(self, images, perturb=False, reconstruct=False, **_):
        self.calls += 1
        centre = images[:, images.shape[1] // 2 : images.shape[1] // 2 + 1]
        logits = torch.cat([torch.zeros_like(centre), 40.0 * (centre - 0.5)], dim=1)
        tokens = torch.zeros(images.shape[0], 1, 1)
        return VQSegOutput(logits, None, tokens.long(), tokens, None, tokens, None, None)


def test_label_map_equals_the_models_decision_on_the_input_grid():
    config = VQSegConfig(unet_depth=3, preprocessing=PreprocessingConfig(spacing_mm=(1.0, 1.0)))
    image = make_image(GEOMETRIES["identity"], size=(21, 13, 5))
    label = segment_volume(ThresholdModel(config), {}, image, SegmentRequest(device="cpu", crop="none")).labels
    assert Geometry.of(label) == Geometry.of(image)
    values = sitk.GetArrayFromImage(image).astype(np.float32)
    expected = intensity_transform(values, config.preprocessing).apply(values) > 0.5
    np.testing.assert_array_equal(sitk.GetArrayFromImage(label), expected.astype(np.uint8))


@pytest.mark.parametrize("name", ["negative_axes", "oblique", "anisotropic_flipped_z"])
def test_output_geometry_is_the_inputs_for_any_orientation(name):
    config = VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16, preprocessing=PreprocessingConfig(spacing_mm=(1.5, 1.5)))
    torch.manual_seed(0)
    image = make_image(GEOMETRIES[name], size=(17, 12, 4))
    label = segment_volume(build_model(config), {}, image, SegmentRequest(device="cpu")).labels
    assert label.GetSize() == image.GetSize()
    assert label.GetSpacing() == image.GetSpacing() and label.GetOrigin() == image.GetOrigin()
    assert label.GetDirection() == image.GetDirection()
    assert set(np.unique(sitk.GetArrayFromImage(label))) <= {0, *config.classes.values}


def test_probabilities_are_a_softmax_per_voxel_with_25d_context():
    config = VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16, preprocessing=PreprocessingConfig(context_slices=1))
    torch.manual_seed(0)
    volume = np.random.default_rng(0).random((5, 10, 14), dtype=np.float32)
    engine = SliceEngine(build_model(config), torch.device("cpu"), precision="fp32", batch_size=2)
    probabilities = engine.run(volume).probabilities
    assert probabilities.shape == (2, 5, 10, 14)
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-5)
