"""VQ bottleneck: assignment, straight-through gradients, losses, usage statistics."""

from __future__ import annotations

import math

import pytest
import torch

from VQSegCore.model import quantizer as quantizer_module
from VQSegCore.model.quantizer import VectorQuantizer, code_usage_entropy_loss


def test_chunked_assignment_matches_brute_force(monkeypatch):
    monkeypatch.setattr(quantizer_module, "ASSIGNMENT_BLOCK_ELEMENTS", 64 * 7)  # 7 tokens per block
    vq = VectorQuantizer(64, 8)
    tokens = torch.randn(3, 50, 8)
    _, indices, _, distance = vq(tokens, return_distance=True)
    codes = vq.codes().detach()
    brute = torch.cdist(tokens.reshape(-1, 8), codes).argmin(dim=1).reshape(3, 50)
    assert torch.equal(indices, brute)
    explicit = ((tokens - codes[indices]) ** 2).sum(-1)
    assert torch.allclose(distance, explicit, atol=1e-5)


def test_straight_through_forward_value_and_gradient():
    vq = VectorQuantizer(16, 4)
    tokens = torch.randn(2, 9, 4, requires_grad=True)
    quantized, indices, losses = vq(tokens)
    assert torch.allclose(quantized, vq.codes()[indices], atol=1e-6)
    (quantized * torch.arange(4.0)).sum().backward()
    assert torch.allclose(tokens.grad, torch.arange(4.0).expand(2, 9, 4))  # identity gradient


def test_losses_train_projection_and_encoder():
    vq = VectorQuantizer(16, 4, commitment_weight=0.25)
    tokens = torch.randn(2, 9, 4, requires_grad=True)
    _, _, losses = vq(tokens)
    assert torch.allclose(losses.total, losses.codebook + 0.25 * losses.commitment)
    assert torch.allclose(losses.codebook, losses.commitment)  # same value, different gradients
    losses.codebook.backward()
    assert vq.codebook_projection.weight.grad.abs().sum() > 0
    assert tokens.grad is None or tokens.grad.abs().sum() == 0  # codebook loss stops the encoder side
    assert vq.frozen_codebook.grad is None


def test_usage_statistics_on_a_constructed_batch():
    vq = VectorQuantizer(8, 6)
    codes = vq.codes().detach()
    vq(codes[[0, 1, 2, 3] * 5])  # four codes, equally often
    usage = vq.usage()
    assert usage.fraction_used == pytest.approx(0.5)
    assert usage.perplexity == pytest.approx(4.0, rel=1e-5)
    assert usage.tokens == 20
    vq(codes[[0, 0, 0, 1] * 5])  # accumulates: counts 0:20, 1:10, 2:5, 3:5 of 40
    expected = math.exp(-(0.5 * math.log(0.5) + 0.25 * math.log(0.25) + 2 * 0.125 * math.log(0.125)))
    assert vq.usage().perplexity == pytest.approx(expected, rel=1e-5)
    vq.reset_usage()
    assert vq.usage().tokens == 0 and vq.usage().fraction_used == 0.0


def test_entropy_loss_is_lowest_for_confident_balanced_assignment():
    k = 8
    far = 100.0
    confident_balanced = torch.full((k, k), far).fill_diagonal_(0.0)  # token n sits on code n
    confident_collapsed = torch.full((k, k), far)
    confident_collapsed[:, 0] = 0.0  # every token sits on code 0
    unsure = torch.zeros(k, k)  # every token equally far from all codes
    values = {name: code_usage_entropy_loss(d, temperature=1.0).item() for name, d in
              [("balanced", confident_balanced), ("collapsed", confident_collapsed), ("unsure", unsure)]}
    assert values["balanced"] == pytest.approx(-math.log(k), abs=1e-4)
    assert values["collapsed"] == pytest.approx(0.0, abs=1e-4)
    assert values["unsure"] == pytest.approx(0.0, abs=1e-4)


def test_entropy_loss_enters_total_when_switched_on():
    vq = VectorQuantizer(16, 4, entropy_loss_weight=0.1, entropy_temperature=0.5)
    tokens = torch.randn(2, 9, 4, requires_grad=True)
    _, _, losses = vq(tokens)
    assert losses.entropy.abs() > 0
    assert torch.allclose(losses.total, losses.codebook + 0.25 * losses.commitment + 0.1 * losses.entropy)
    losses.total.backward()
    assert tokens.grad.abs().sum() > 0


def test_usage_counts_are_not_saved_with_the_weights():
    vq = VectorQuantizer(8, 4)
    assert "usage_counts" not in vq.state_dict()
    assert "frozen_codebook" in vq.state_dict()
    assert not any(p is vq.frozen_codebook for p in vq.parameters())
