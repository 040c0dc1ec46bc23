"""On a CUDA GPU: QPM never waits for the host, and both backbones train in bf16 autocast.

Skipped where no GPU is present (CI); run on a GPU machine with
`python -m pytest Testing/core/test_model_cuda.py`.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from VQSegCore.model import VQSegConfig, build_model, reconstruction_l1_loss
from VQSegCore.model.qpm import perturb_codes

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@contextlib.contextmanager
def host_sync_is_an_error():
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.7, 1.0])
def test_qpm_on_gpu_runs_without_host_sync_and_honours_epsilon(epsilon):
    generator = torch.Generator(device="cuda").manual_seed(0)
    codes = torch.randn(16384, 384, device="cuda", generator=generator)
    indices = torch.randint(16384, (16, 256), device="cuda", generator=generator)
    with host_sync_is_an_error():
        new, changed = perturb_codes(indices, codes, epsilon, 0.1, generator=generator)
    assert torch.equal(changed, new != indices)
    fraction = changed.float().mean().item()
    assert abs(fraction - epsilon) < 0.03


@pytest.mark.parametrize(
    "config, size",
    [
        (dict(backbone="unet"), 128),
        (dict(backbone="vit_dinov2", codebook_size=16384), 224),
    ],
    ids=["unet", "vit"],
)
def test_training_step_in_bf16_with_qpm_has_no_host_sync(config, size):
    torch.manual_seed(0)
    model = build_model(VQSegConfig(**config, perturbation="qpm", qpm_epsilon=0.7)).cuda()
    images = torch.rand(4, 1, size, size, device="cuda")
    labels = torch.randint(2, (4, size, size), device="cuda")
    generator = torch.Generator(device="cuda").manual_seed(1)
    with host_sync_is_an_error(), torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(images, perturb=True, generator=generator)
        loss = F.cross_entropy(out.logits.float(), labels) + out.vq_losses.total + reconstruction_l1_loss(out.reconstruction.float(), images)
    loss.backward()
    assert torch.isfinite(loss)
    encoder_grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert encoder_grads and all(torch.isfinite(g).all() for g in encoder_grads)
    assert out.perturbed_mask.float().mean().item() > 0.5
