"""QPM, the Quantized Perturbation Module: distance-based substitution of codes.

Each token keeps its code i with probability 1 - epsilon; otherwise its code is replaced by a
code j != i drawn with probability proportional to exp(-d(e_i, e_j) / (m * T)), where d is the
squared L2 distance between effective codes, m the median pairwise distance of the codebook and
T the temperature. Dividing by m makes the kernel scale-free: the codes' norms grow or shrink in
training, and without it the same T would mean "any code" early and "nearest code" late.

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


def replacement_cdf(source: Tensor, codes: Tensor, distance_scale: Tensor, code_norms: Tensor) -> tuple[Tensor, Tensor]:
    """Unnormalised cumulative softmax [P, K] of each source's replacement distribution, and its total [P, 1]."""
    weights = replacement_logits(source, codes, distance_scale, code_norms)
    weights = weights.sub_(weights.max(dim=1, keepdim=True).values).exp_()
    cdf = weights.cumsum(dim=1)
    return cdf, cdf[:, -1:].contiguous()


def draw_from_cdf(cdf: Tensor, total: Tensor, uniforms: Tensor) -> Tensor:
    """Inverse-CDF draws: for uniforms [P, M] in [0, 1), the code index of each draw [P, M].

    right=True: a code of zero weight (the source) never owns an interval. The minimum with the
    last code of positive weight guards against uniform * total rounding up to total.
    """
    chosen = torch.searchsorted(cdf, uniforms * total, right=True)
    return torch.minimum(chosen, torch.searchsorted(cdf, total))


def sample_per_token(source: Tensor, codes: Tensor, distance_scale: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One replacement j != i for every source code i in `source` [P]: one distance row per token.

    Fixed shapes throughout (nothing waits for the device). Inverse-CDF sampling (cumulative sum
    + binary search) draws exactly like torch.multinomial, about five times faster on a CPU.
    """
    codes = codes.float()
    code_norms = (codes * codes).sum(dim=1)
    replacements = []
    for start in range(0, source.shape[0], ROWS_PER_BLOCK):
        block = source[start : start + ROWS_PER_BLOCK]
        cdf, total = replacement_cdf(block, codes, distance_scale, code_norms)
        uniforms = torch.rand(block.shape[0], 1, device=codes.device, generator=generator)
        replacements.append(draw_from_cdf(cdf, total, uniforms).squeeze(1))
    return torch.cat(replacements) if replacements else source.clone()


def sample_per_code(source: Tensor, codes: Tensor, distance_scale: Tensor, generator: torch.Generator | None = None) -> Tensor:
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
        cdf, total = replacement_cdf(distinct[rows], codes, distance_scale, code_norms)
        drawn[rows] = draw_from_cdf(cdf, total, uniforms[rows])
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
    fixed_shapes: bool | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Replace each token's code with probability `epsilon` by a nearby other code.

    Args:
        indices: code ids of any shape.
        codes: the effective codebook [K, D].
        epsilon: per-token replacement probability.
        temperature: T of the kernel exp(-d / (median * T)).
        distance_scale: the divisor of the distances; default median pairwise distance * T.
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
    if distance_scale is None:
        distance_scale = median_pairwise_distance(codes, median_sample, generator) * temperature
    distance_scale = distance_scale.clamp_min(torch.finfo(torch.float32).tiny)

    draws = torch.rand(num_tokens, device=flat.device, generator=generator)
    if fixed_shapes:
        # The `capacity` smallest draws hold every draw below epsilon: a fixed-size list of the
        # candidate tokens, found without asking the device how many there are.
        candidate_draws, candidates = torch.topk(draws, perturbation_capacity(num_tokens, epsilon), largest=False, sorted=False)
        perturbed = candidate_draws < epsilon
        source = flat[candidates]
        replacement = torch.where(perturbed, sample_per_token(source, codes, distance_scale, generator), source)
    else:
        candidates = (draws < epsilon).nonzero().squeeze(1)
        perturbed = torch.ones_like(candidates, dtype=torch.bool)
        replacement = sample_per_code(flat[candidates], codes, distance_scale, generator)

    new_flat = flat.clone()
    new_flat[candidates] = replacement
    changed = torch.zeros(num_tokens, dtype=torch.bool, device=flat.device)
    changed[candidates] = perturbed
    return new_flat.reshape(indices.shape), changed.reshape(indices.shape)


class QuantizedPerturbation(nn.Module):
    """QPM as a perturbation: same interface as FeatureDropout and NoPerturbation.

    forward(tokens, quantized, indices, codes) -> (features, changed)
        tokens: the encoder's pre-quantisation tokens z [B, N, D]
        quantized: z + sg(e_i - z) [B, N, D] (unused here; QPM re-quantises z to the new codes)
        indices: the assigned codes i [B, N]; codes: the effective codebook [K, D]
    The result is z + sg(e_j - z): the decoder sees e_j and the gradient still reaches the encoder.
    """

    def __init__(self, epsilon: float, temperature: float, median_sample: int = 512) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.temperature = temperature
        self.median_sample = median_sample

    def forward(
        self, tokens: Tensor, quantized: Tensor, indices: Tensor, codes: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        codes = codes.detach()
        new_indices, changed = perturb_codes(
            indices, codes, self.epsilon, self.temperature, median_sample=self.median_sample, generator=generator
        )
        replacement = codes[new_indices].to(tokens.dtype)
        return tokens + (replacement - tokens).detach(), changed

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}, temperature={self.temperature}"
