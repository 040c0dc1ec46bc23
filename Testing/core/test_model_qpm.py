"""QPM: replacement rate, locality, the exact sampling distribution, scale invariance."""

from __future__ import annotations

import math

import pytest
import torch

from VQSegCore.model.qpm import (
    QuantizedPerturbation,
    calibrate_candidates,
    effective_candidates,
    kernel_logits,
    perturb_codes,
    perturbation_capacity,
    replacement_logits,
)
from VQSegCore.model.quantizer import squared_distances


def random_codes(count: int, dim: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, dim, generator=torch.Generator().manual_seed(seed))


def chi_square_p(observed: torch.Tensor, expected: torch.Tensor) -> float:
    """Pearson chi-square goodness-of-fit p-value (dof = bins - 1)."""
    observed, expected = observed.double(), expected.double()
    statistic = ((observed - expected) ** 2 / expected).sum()
    dof = observed.numel() - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=torch.float64), statistic / 2.0))


def test_epsilon_zero_leaves_every_code():
    codes = random_codes(32, 8)
    indices = torch.randint(32, (4, 64))
    new, changed = perturb_codes(indices, codes, 0.0, 0.1)
    assert torch.equal(new, indices)
    assert not changed.any()


BOTH_PATHS = pytest.mark.parametrize("fixed_shapes", [False, True], ids=["per_code", "fixed_shapes"])


@BOTH_PATHS
def test_epsilon_one_changes_every_token(fixed_shapes):
    codes = random_codes(32, 8)
    indices = torch.randint(32, (4, 64), generator=torch.Generator().manual_seed(1))
    new, changed = perturb_codes(indices, codes, 1.0, 0.1, fixed_shapes=fixed_shapes, generator=torch.Generator().manual_seed(2))
    assert changed.all()
    assert (new != indices).all()


@BOTH_PATHS
@pytest.mark.parametrize("epsilon", [0.1, 0.3, 0.7])
def test_changed_fraction_matches_epsilon(epsilon, fixed_shapes):
    codes = random_codes(64, 8)
    tokens = 20000
    indices = torch.randint(64, (tokens,), generator=torch.Generator().manual_seed(3))
    new, changed = perturb_codes(indices, codes, epsilon, 0.1, fixed_shapes=fixed_shapes, generator=torch.Generator().manual_seed(4))
    fraction = changed.float().mean().item()
    assert abs(fraction - epsilon) <= 5 * math.sqrt(epsilon * (1 - epsilon) / tokens)
    assert torch.equal(changed, new != indices)  # a replacement is never the code itself


def test_capacity_bounds_the_binomial_count():
    assert perturbation_capacity(1000, 0.0) == 0
    assert perturbation_capacity(1000, 1.0) == 1000
    assert 100 < perturbation_capacity(1000, 0.1) < 250


def neighbour_ranks(codes, sources, replacements):
    distances = squared_distances(codes[sources], codes)
    ranks = distances.argsort(dim=1).argsort(dim=1)
    return ranks[torch.arange(sources.numel()), replacements] - 1  # 0 = nearest other code


@BOTH_PATHS
def test_lower_temperature_concentrates_on_near_codes(fixed_shapes):
    codes = random_codes(256, 16)
    indices = torch.randint(256, (20000,), generator=torch.Generator().manual_seed(5))
    results = {}
    for temperature in (1.0, 0.05):
        new, _ = perturb_codes(indices, codes, 1.0, temperature, fixed_shapes=fixed_shapes, generator=torch.Generator().manual_seed(6))
        ranks = neighbour_ranks(codes, indices, new).float()
        results[temperature] = (ranks.mean().item(), (ranks == 0).float().mean().item())
    assert results[0.05][0] < 0.5 * results[1.0][0]  # mean neighbour rank drops
    assert results[0.05][1] > 2 * results[1.0][1]  # nearest-neighbour share rises


@BOTH_PATHS
def test_samples_follow_the_analytic_softmax(fixed_shapes):
    codes = random_codes(8, 4, seed=7)
    source, scale, samples = 3, torch.tensor(2.0), 40000
    indices = torch.full((samples,), source)
    new, _ = perturb_codes(
        indices, codes, 1.0, 1.0, distance_scale=scale, fixed_shapes=fixed_shapes, generator=torch.Generator().manual_seed(8)
    )
    others = torch.tensor([j for j in range(8) if j != source])
    d = ((codes[others] - codes[source]) ** 2).sum(dim=1)
    expected = torch.softmax(-d / scale, dim=0) * samples
    observed = torch.bincount(new, minlength=8)
    assert observed[source] == 0
    assert chi_square_p(observed[others], expected) > 1e-3
    # The same test rejects a wrong distribution (uniform over the other codes): it can fail.
    assert chi_square_p(observed[others], torch.full((7,), samples / 7)) < 1e-6


def test_distribution_is_scale_invariant():
    # Scaling every code by 10 multiplies distances by 100; the median normalisation undoes it.
    # (Across both paths too: per-code small codes against fixed-shape large codes.)
    codes = random_codes(16, 4, seed=9)
    indices = torch.full((30000,), 5)
    small, _ = perturb_codes(indices, codes, 1.0, 0.2, median_sample=16, fixed_shapes=False, generator=torch.Generator().manual_seed(10))
    large, _ = perturb_codes(indices, 10 * codes, 1.0, 0.2, median_sample=16, fixed_shapes=True, generator=torch.Generator().manual_seed(11))
    counts = torch.stack([torch.bincount(small, minlength=16), torch.bincount(large, minlength=16)]).double()
    counts = counts[:, counts.sum(0) > 0]
    expected = counts.sum(1, keepdim=True) * counts.sum(0, keepdim=True) / counts.sum()
    statistic = ((counts - expected) ** 2 / expected).sum()
    dof = counts.shape[1] - 1
    assert float(torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=torch.float64), statistic / 2.0)) > 1e-3


def test_qpm_module_feeds_the_new_code_and_passes_gradients():
    codes = random_codes(16, 4)
    tokens = torch.randn(2, 10, 4, requires_grad=True)
    indices = torch.randint(16, (2, 10))
    qpm = QuantizedPerturbation(epsilon=1.0, temperature=0.1)
    features, changed = qpm(tokens, tokens, indices, codes, generator=torch.Generator().manual_seed(0))
    assert changed.all()
    # Forward value is a code other than the original one.
    matches = (features.detach()[..., None, :] - codes).abs().sum(-1).argmin(-1)
    assert (matches != indices).all()
    features.sum().backward()
    assert torch.equal(tokens.grad, torch.ones_like(tokens))


def test_per_code_path_keeps_each_token_on_its_own_row():
    # Two far-apart clusters: a replacement must come from the source's own cluster at low T.
    codes = torch.cat([torch.randn(8, 4) * 0.01, torch.randn(8, 4) * 0.01 + 10.0])
    indices = torch.tensor([0, 9, 3, 12, 0, 0, 15, 9] * 50)
    new, changed = perturb_codes(indices, codes, 1.0, 0.05, fixed_shapes=False, generator=torch.Generator().manual_seed(0))
    assert changed.all() and (new != indices).all()
    assert torch.equal(new >= 8, indices >= 8)


def line_codes(count: int = 64, spacing: float = 1.0) -> torch.Tensor:
    """Codes at 0, 1, 2, ... on a line (plus a tiny second coordinate): code i's nearest codes are i +- 1, i +- 2, ..."""
    positions = torch.arange(count, dtype=torch.float32) * spacing
    return torch.stack([positions, 1e-3 * torch.randn(count, generator=torch.Generator().manual_seed(0))], dim=1)


@pytest.mark.parametrize("candidates", [1.5, 4.0, 8.0, 40.0])
def test_calibrated_kernel_has_the_asked_number_of_candidates(candidates):
    codes = random_codes(256, 16, seed=1)
    sources = torch.arange(0, 256, 4)
    assert effective_candidates(sources, codes, candidates=candidates) == pytest.approx(candidates, rel=1e-3)
    # A fixed temperature on median-normalised distances spreads over most of such a codebook.
    assert effective_candidates(sources, codes, temperature=0.1) > 40


def test_calibrated_kernel_is_local_on_a_constructed_codebook():
    codes = line_codes()
    source = torch.tensor([32])
    probabilities = torch.softmax(kernel_logits(source, codes, torch.ones(()), candidates=2.0), dim=1)[0]
    near = probabilities[[31, 33]].sum()
    assert near > 0.7  # the two neighbours carry most of the mass ...
    assert probabilities[[30, 34]].sum() < near / 3  # ... the next ones much less
    assert probabilities[:24].sum() + probabilities[41:].sum() < 1e-3  # nothing far away
    assert probabilities[32] == 0.0  # never the code itself


@BOTH_PATHS
def test_calibrated_samples_follow_the_kernel_and_ignore_scale(fixed_shapes):
    codes = line_codes(16)
    indices = torch.full((20000,), 8)
    for scale_factor, seed in ((1.0, 0), (100.0, 1)):  # distances x 10,000: the same kernel
        new, _ = perturb_codes(indices, codes * scale_factor, 1.0, 0.1, candidates=3.0, fixed_shapes=fixed_shapes,
                               generator=torch.Generator().manual_seed(seed))
        expected = torch.softmax(kernel_logits(torch.tensor([8]), codes, torch.ones(()), candidates=3.0), dim=1)[0]
        observed = torch.bincount(new, minlength=16)
        kept = expected * 20000 > 5
        assert observed[~kept].sum() <= 5
        assert chi_square_p(observed[kept], expected[kept] / expected[kept].sum() * observed[kept].sum()) > 1e-3


def test_calibration_is_truncated_to_the_nearest_codes_without_losing_mass():
    codes = random_codes(4096, 32, seed=2)
    sources = torch.arange(0, 4096, 64)
    logits = kernel_logits(sources, codes, torch.ones(()), candidates=2.0)  # 64 nearest codes per source
    assert (torch.isfinite(logits).sum(dim=1) == 64).all()
    full = calibrate_candidates(replacement_logits(sources, codes, torch.ones(())), 2.0)
    mass_beyond = torch.softmax(full, dim=1).masked_fill(torch.isfinite(logits), 0.0).sum(dim=1)
    assert mass_beyond.max() < 0.01


def test_qpm_module_reports_its_kernel_width():
    codes = random_codes(128, 8)
    used = torch.arange(0, 128, 3)
    assert QuantizedPerturbation(0.7, 0.1, candidates=8.0).effective_candidates(used, codes) == pytest.approx(8.0, rel=1e-3)
    assert QuantizedPerturbation(0.7, 1000.0).effective_candidates(used, codes) == pytest.approx(127, rel=0.01)  # uniform
