"""QPM, the Quantized Perturbation Module: distance-based substitution of codes.

Each token keeps its code i with probability 1 - epsilon; otherwise its code is replaced by a
code j != i drawn with probability proportional to exp(-d(e_i, e_j) / tau_i), where d is the
squared L2 distance between effective codes.

The method's idea is a swap for a *near* code, so the kernel must be local. A fixed temperature
is not: in a high-dimensional codebook the distances crowd around their median, and how many codes
one temperature spreads over depends on the geometry, which training changes (on distances divided
by the median pairwise distance, T = 0.1 spreads over ~257 of 1,024 codes at initialisation and
~193 on the shipped lung model's trained codebook; T = 0.03 over 9 and 23). So, by default, each
source code's tau_i is solved (bisection) so that its kernel's effective number of candidates,
exp(entropy), equals `candidates`: a local kernel of known width on any codebook, as t-SNE
calibrates its perplexity. `candidates=0` keeps the fixed kernel exp(-d / (m * T)), m the
median pairwise distance, T the temperature.

No Python loop over codes. On an accelerator everything runs with fixed shapes (no `.item()`,
no boolean indexing, no `torch.unique`), so a CUDA step never waits for the host: one distance
row per candidate token. On a CPU, where there is no host to wait for, one row per distinct
perturbed code instead, which is fewer rows whenever tokens share codes. benchmarks/qpm.py
compares both with the per-code loop of the authors' code.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from VQSegCore.model.quantizer import squared_distances

# Perturbed tokens whose distance rows are computed at once: 256 x 16384 floats = 16 MB.
ROWS_PER_BLOCK = 256
# A calibrated kernel is solved over each source's 32 * candidates nearest codes; the rest get weight 0,
# and sampling spans those 256 codes (at 8 candidates), not all K. Against solving it over all K this
# drops at most 0.01 % of a source's mass on trained codebooks of 1,024 codes, 0.7 % on an initial
# one and 3.8 % on an initial one of 16,384 (benchmarks/qpm_kernel.py).
NEAREST_PER_CANDIDATE = 32
# Bisection steps on log(1 / tau) over [-20, 20]: 18 halvings leave a step of 1.5e-4 (0.015 % in tau).
CALIBRATION_STEPS = 18


def perturbation_capacity(num_tokens: int, epsilon: float) -> int:
    """A fixed upper bound on how many of `num_tokens` Bernoulli(epsilon) draws come up.

    Mean + 8 standard deviations + 16: exceeded with probability far below 1e-12, and even then
    the surplus tokens simply keep their codes (the returned mask stays truthful).
    """
    if epsilon <= 0.0:
        return 0
    spread = 8.0 * math.sqrt(num_tokens * epsilon * (1.0 - epsilon))
    return min(num_tokens, math.ceil(num_tokens * epsilon + spread) + 16)


def median_pairwise_distance(codes: Tensor, sample_size: int = 512, generator: torch.Generator | None = None) -> Tensor:
    """Median squared L2 distance between distinct codes, estimated on a random subset (0-d tensor)."""
    count = min(sample_size, codes.shape[0])
    pick = torch.randperm(codes.shape[0], device=codes.device, generator=generator)[:count]
    sample = codes[pick].float()
    rows, cols = torch.triu_indices(count, count, offset=1, device=codes.device)
    return squared_distances(sample, sample)[rows, cols].median()


def replacement_logits(source: Tensor, codes: Tensor, distance_scale: Tensor, code_norms: Tensor | None = None) -> Tensor:
    """Logits [P, K] of the replacement distribution for source codes [P]; the source is -inf.

    -||e_i - e_j||^2 / s = (2 e_i.e_j - ||e_j||^2 - ||e_i||^2) / s, and a softmax over j ignores
    the row constant ||e_i||^2, so one addmm gives the logits.
    """
    codes = codes.float()
    code_norms = (codes * codes).sum(dim=1) if code_norms is None else code_norms
    # Scale the small operands, not the [P, K] result: one pass fewer over the big matrix.
    logits = torch.addmm(code_norms / distance_scale, codes[source] * (2.0 / distance_scale), codes.T, beta=-1.0)
    return logits.scatter_(1, source[:, None], float("-inf"))


def calibrate_candidates(logits: Tensor, candidates: float) -> Tensor:
    """Each row of `logits` [P, K] (-inf = excluded) rescaled so that exp(entropy of its softmax) = `candidates`.

    The rows are gaps g_j = max - logit_j >= 0, divided by their mean so the search is scale-free;
    entropy falls monotonically as the inverse temperature beta grows, so bisection on log(beta)
    finds it. A row with at most `candidates` codes becomes uniform over them.
    """
    finite = torch.isfinite(logits)
    gaps = logits.max(dim=1, keepdim=True).values - logits
    gaps = torch.where(finite, gaps, 0.0)
    gaps = gaps / (gaps.sum(dim=1, keepdim=True) / finite.sum(dim=1, keepdim=True)).clamp_min(torch.finfo(gaps.dtype).tiny)
    target = torch.log(torch.minimum(finite.sum(dim=1).to(gaps.dtype), torch.tensor(float(candidates), dtype=gaps.dtype)))
    low = torch.full_like(target, -20.0)
    high = torch.full_like(target, 20.0)
    for _ in range(CALIBRATION_STEPS):
        middle = (low + high) / 2
        too_flat = _entropy(gaps, finite, middle.exp()) > target  # sharpen: a larger beta
        low = torch.where(too_flat, middle, low)
        high = torch.where(too_flat, high, middle)
    beta = ((low + high) / 2).exp()
    return torch.where(finite, -beta[:, None] * gaps, float("-inf"))


def _entropy(gaps: Tensor, finite: Tensor, beta: Tensor) -> Tensor:
    """Entropy of softmax(-beta * gaps) over the finite entries of each row."""
    weights = torch.where(finite, torch.exp(-beta[:, None] * gaps), 0.0)
    total = weights.sum(dim=1)
    return torch.log(total) + beta * (weights * gaps).sum(dim=1) / total


def kernel_logits(source: Tensor, codes: Tensor, distance_scale: Tensor, code_norms: Tensor | None = None,
                  candidates: float = 0.0) -> Tensor:
    """The replacement kernel's logits [P, K] for source codes [P]: calibrated to `candidates`, or fixed (0)."""
    logits, columns = _kernel(source, codes, distance_scale, code_norms, candidates)
    if columns is None:
        return logits
    return torch.full((source.shape[0], codes.shape[0]), float("-inf"), device=logits.device).scatter_(1, columns, logits)


def _kernel(source: Tensor, codes: Tensor, distance_scale: Tensor, code_norms: Tensor | None,
            candidates: float) -> tuple[Tensor, Tensor | None]:
    """(logits, code index of each column): all K codes ([P, K], None), or for a calibrated kernel on a
    large codebook each source's nearest codes only ([P, M], [P, M]), so sampling never spans all K."""
    logits = replacement_logits(source, codes, distance_scale, code_norms)
    if not candidates:
        return logits, None
    nearest = math.ceil(NEAREST_PER_CANDIDATE * candidates)
    if nearest >= logits.shape[1]:
        return calibrate_candidates(logits, candidates), None
    top, columns = torch.topk(logits, nearest, dim=1)
    return calibrate_candidates(top, candidates), columns


def effective_candidates(source: Tensor, codes: Tensor, *, candidates: float = 0.0, temperature: float = 1.0,
                         median_sample: int = 512, generator: torch.Generator | None = None) -> float:
    """Mean over the source codes [P] of exp(entropy) of their replacement kernel: how many codes a swap
    really chooses among (K - 1 for a uniform kernel, 1 for nearest-neighbour)."""
    codes = codes.detach().float()
    scale = torch.ones(()) if candidates else median_pairwise_distance(codes, median_sample, generator) * temperature
    logits = kernel_logits(source, codes, scale.clamp_min(torch.finfo(torch.float32).tiny), candidates=candidates)
    log_p = torch.log_softmax(logits, dim=1)
    entropy = -(log_p.exp() * torch.where(torch.isfinite(log_p), log_p, 0.0)).sum(dim=1)
    return float(entropy.exp().mean())


def replacement_cdf(source: Tensor, codes: Tensor, distance_scale: Tensor, code_norms: Tensor,
                    candidates: float = 0.0) -> tuple[Tensor, Tensor, Tensor | None]:
    """Unnormalised cumulative softmax of each source's replacement distribution [P, M], its total [P, 1],
    and the code index of each column ([P, M]; None when the columns are all K codes in order)."""
    weights, columns = _kernel(source, codes, distance_scale, code_norms, candidates)
    weights = weights.sub_(weights.max(dim=1, keepdim=True).values).exp_()
    cdf = weights.cumsum(dim=1)
    return cdf, cdf[:, -1:].contiguous(), columns


def _to_codes(drawn: Tensor, columns: Tensor | None) -> Tensor:
    return drawn if columns is None else columns.gather(1, drawn)


def draw_from_cdf(cdf: Tensor, total: Tensor, uniforms: Tensor) -> Tensor:
    """Inverse-CDF draws: for uniforms [P, M] in [0, 1), the code index of each draw [P, M].

    right=True: a code of zero weight (the source) never owns an interval. The minimum with the
    last code of positive weight guards against uniform * total rounding up to total.
    """
    chosen = torch.searchsorted(cdf, uniforms * total, right=True)
    return torch.minimum(chosen, torch.searchsorted(cdf, total))


def sample_per_token(source: Tensor, codes: Tensor, distance_scale: Tensor, generator: torch.Generator | None = None,
                     candidates: float = 0.0) -> Tensor:
    """One replacement j != i for every source code i in `source` [P]: one distance row per token.

    Fixed shapes throughout (nothing waits for the device). Inverse-CDF sampling (cumulative sum
    + binary search) draws exactly like torch.multinomial, about five times faster on a CPU.
    """
    codes = codes.float()
    code_norms = (codes * codes).sum(dim=1)
    replacements = []
    for start in range(0, source.shape[0], ROWS_PER_BLOCK):
        block = source[start : start + ROWS_PER_BLOCK]
        cdf, total, columns = replacement_cdf(block, codes, distance_scale, code_norms, candidates)
        uniforms = torch.rand(block.shape[0], 1, device=codes.device, generator=generator)
        replacements.append(_to_codes(draw_from_cdf(cdf, total, uniforms), columns).squeeze(1))
    return torch.cat(replacements) if replacements else source.clone()


def sample_per_code(source: Tensor, codes: Tensor, distance_scale: Tensor, generator: torch.Generator | None = None,
                    candidates: float = 0.0) -> Tensor:
    """Like `sample_per_token`, but one distance row per distinct source code, drawn from by all
    tokens that carry it. Fewer rows when tokens share codes; the number of distinct codes is
    data-dependent, which costs a host synchronisation on an accelerator (free on a CPU).
    """
    codes = codes.float()
    code_norms = (codes * codes).sum(dim=1)
    distinct, row, counts = torch.unique(source, return_inverse=True, return_counts=True)
    # Each token's slot among the tokens of its code: a [distinct, max count] table of uniforms.
    order = torch.argsort(row, stable=True)
    group_start = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(row)
    slot[order] = torch.arange(row.numel(), device=row.device) - group_start[row[order]]
    uniforms = torch.zeros(distinct.numel(), int(counts.max()), device=codes.device)
    uniforms[row, slot] = torch.rand(row.numel(), device=codes.device, generator=generator)
    drawn = torch.empty(uniforms.shape, dtype=torch.long, device=codes.device)
    for start in range(0, distinct.numel(), ROWS_PER_BLOCK):
        rows = slice(start, start + ROWS_PER_BLOCK)
        cdf, total, columns = replacement_cdf(distinct[rows], codes, distance_scale, code_norms, candidates)
        drawn[rows] = _to_codes(draw_from_cdf(cdf, total, uniforms[rows]), columns)
    return drawn[row, slot]


@torch.no_grad()
def perturb_codes(
    indices: Tensor,
    codes: Tensor,
    epsilon: float,
    temperature: float,
    *,
    distance_scale: Tensor | None = None,
    median_sample: int = 512,
    candidates: float = 0.0,
    fixed_shapes: bool | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Replace each token's code with probability `epsilon` by a nearby other code.

    Args:
        indices: code ids of any shape.
        codes: the effective codebook [K, D].
        epsilon: per-token replacement probability.
        temperature: T of the fixed kernel exp(-d / (median * T)) (unused when `candidates` > 0).
        distance_scale: the divisor of the distances; default median pairwise distance * T.
        candidates: > 0: each source's kernel is calibrated to this many effective candidates.
        fixed_shapes: True: one distance row per candidate token, fixed-size tensors only, so an
            accelerator never waits for the host. False: one row per distinct perturbed code
            (fewer rows, data-dependent sizes). Default: False on a CPU, True elsewhere. Both
            draw from the same distribution.

    Returns (new indices, changed mask), both shaped like `indices`.
    """
    flat = indices.reshape(-1)
    num_tokens = flat.numel()
    if epsilon <= 0.0 or codes.shape[0] < 2 or num_tokens == 0:
        return indices.clone(), torch.zeros_like(indices, dtype=torch.bool)
    if fixed_shapes is None:
        fixed_shapes = flat.device.type != "cpu"
    if distance_scale is None:  # a calibrated kernel does not depend on the scale: skip the median
        distance_scale = torch.ones((), device=codes.device) if candidates else \
            median_pairwise_distance(codes, median_sample, generator) * temperature
    distance_scale = distance_scale.clamp_min(torch.finfo(torch.float32).tiny)

    draws = torch.rand(num_tokens, device=flat.device, generator=generator)
    if fixed_shapes:
        # The `capacity` smallest draws hold every draw below epsilon: a fixed-size list of the
        # tokens that may be perturbed, found without asking the device how many there are.
        candidate_draws, tokens = torch.topk(draws, perturbation_capacity(num_tokens, epsilon), largest=False, sorted=False)
        perturbed = candidate_draws < epsilon
        source = flat[tokens]
        replacement = torch.where(perturbed, sample_per_token(source, codes, distance_scale, generator, candidates), source)
    else:
        tokens = (draws < epsilon).nonzero().squeeze(1)
        perturbed = torch.ones_like(tokens, dtype=torch.bool)
        replacement = sample_per_code(flat[tokens], codes, distance_scale, generator, candidates)

    new_flat = flat.clone()
    new_flat[tokens] = replacement
    changed = torch.zeros(num_tokens, dtype=torch.bool, device=flat.device)
    changed[tokens] = perturbed
    return new_flat.reshape(indices.shape), changed.reshape(indices.shape)


class QuantizedPerturbation(nn.Module):
    """QPM as a perturbation: same interface as FeatureDropout and NoPerturbation.

    forward(tokens, quantized, indices, codes) -> (features, changed)
        tokens: the encoder's pre-quantisation tokens z [B, N, D]
        quantized: z + sg(e_i - z) [B, N, D] (unused here; QPM re-quantises z to the new codes)
        indices: the assigned codes i [B, N]; codes: the effective codebook [K, D]
    The result is z + sg(e_j - z): the decoder sees e_j and the gradient still reaches the encoder.
    """

    def __init__(self, epsilon: float, temperature: float, median_sample: int = 512, candidates: float = 0.0) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.temperature = temperature
        self.median_sample = median_sample
        self.candidates = candidates

    def forward(
        self, tokens: Tensor, quantized: Tensor, indices: Tensor, codes: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        codes = codes.detach()
        new_indices, changed = perturb_codes(
            indices, codes, self.epsilon, self.temperature, median_sample=self.median_sample, candidates=self.candidates,
            generator=generator,
        )
        replacement = codes[new_indices].to(tokens.dtype)
        return tokens + (replacement - tokens).detach(), changed

    def effective_candidates(self, source: Tensor, codes: Tensor) -> float:
        """How many codes this kernel really spreads a swap over, averaged over the source codes [P]."""
        return effective_candidates(source, codes, candidates=self.candidates, temperature=self.temperature,
                                    median_sample=self.median_sample)

    def extra_repr(self) -> str:
        kernel = f"candidates={self.candidates:g}" if self.candidates else f"temperature={self.temperature}"
        return f"epsilon={self.epsilon}, {kernel}"
