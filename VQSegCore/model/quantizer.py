"""The VQ bottleneck: a SimVQ-style codebook (frozen random codes + a trainable linear map).

Each token z_n is snapped to its nearest effective code e_k = W c_k + b (squared L2), and the
decoder sees z_n + sg(e_k - z_n) (straight-through estimator). Because the raw codes c_k are frozen
and only W, b train, every code moves when W moves: no code is left behind (SimVQ's remedy for
codebook collapse), so no EMA update or dead-code reset is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Token x code distance blocks are cut so one block holds at most this many floats (64 MB).
ASSIGNMENT_BLOCK_ELEMENTS = 1 << 24


@dataclass
class VQLosses:
    """The quantiser's losses; `total` is what a trainer adds (weights already applied)."""

    codebook: Tensor  # mean ||e - sg(z)||^2: trains the codebook projection
    commitment: Tensor  # mean ||z - sg(e)||^2, unweighted: pulls the encoder toward its codes
    entropy: Tensor  # code-usage entropy loss (0 when switched off), unweighted
    total: Tensor


@dataclass
class CodebookUsage:
    fraction_used: float  # codes assigned at least once / K
    perplexity: float  # exp(entropy of the code histogram); K when all codes are used equally
    tokens: int


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation of tokens [..., D] with a frozen codebook and trainable projection.

    Args:
        codebook_size: K, the number of codes.
        code_dim: D, the token and code dimension.
        commitment_weight: beta in `codebook + beta * commitment` (0.25 as in VQ-VAE).
        entropy_loss_weight: weight of the code-usage entropy loss in `total`; 0 skips computing
            it (it needs a softmax over all K codes per token).
        entropy_temperature: temperature of that softmax over negative squared distances.
    """

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        *,
        commitment_weight: float = 0.25,
        entropy_loss_weight: float = 0.0,
        entropy_temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.code_dim = code_dim
        self.commitment_weight = commitment_weight
        self.entropy_loss_weight = entropy_loss_weight
        self.entropy_temperature = entropy_temperature
        # Saved with the weights (a buffer, not a parameter: it never trains).
        self.register_buffer("frozen_codebook", torch.randn(codebook_size, code_dim) * code_dim**-0.5)
        self.codebook_projection = nn.Linear(code_dim, code_dim)
        # Usage counts are statistics, not weights: not saved, reset with `reset_usage()`.
        self.register_buffer("usage_counts", torch.zeros(codebook_size, dtype=torch.long), persistent=False)

    def codes(self) -> Tensor:
        """The effective codebook [K, D] (differentiable with respect to the projection)."""
        return self.codebook_projection(self.frozen_codebook)

    def forward(
        self,
        tokens: Tensor,
        *,
        codes: Tensor | None = None,
        return_distance: bool = False,
    ) -> tuple[Tensor, Tensor, VQLosses] | tuple[Tensor, Tensor, VQLosses, Tensor]:
        """Quantise `tokens` [..., D].

        Returns (quantized [..., D], indices [...], losses), plus the squared distance of each
        token to its code [...] when `return_distance` is set (an out-of-distribution signal).
        `codes` lets a caller that also needs the codebook compute it once.
        """
        if tokens.shape[-1] != self.code_dim:
            raise ValueError(f"tokens have dimension {tokens.shape[-1]}, the codebook {self.code_dim}")
        codes = self.codes() if codes is None else codes
        flat = tokens.reshape(-1, self.code_dim)
        indices, distance = nearest_codes(flat.detach(), codes.detach())
        chosen = codes[indices].to(flat.dtype)

        codebook_loss = F.mse_loss(chosen, flat.detach())
        commitment_loss = F.mse_loss(flat, chosen.detach())
        if self.entropy_loss_weight > 0:
            entropy = code_usage_entropy_loss(squared_distances(flat.float(), codes.float()), self.entropy_temperature)
        else:
            entropy = flat.new_zeros(())
        total = codebook_loss + self.commitment_weight * commitment_loss + self.entropy_loss_weight * entropy
        losses = VQLosses(codebook=codebook_loss, commitment=commitment_loss, entropy=entropy, total=total)

        quantized = flat + (chosen - flat).detach()  # straight-through: forward e, gradient to z
        self._count_usage(indices)
        shape = tokens.shape[:-1]
        result = (quantized.reshape(tokens.shape), indices.reshape(shape), losses)
        if return_distance:
            return (*result, distance.reshape(shape))
        return result

    # ---- usage statistics --------------------------------------------------------------------
    @torch.no_grad()
    def _count_usage(self, indices: Tensor) -> None:
        # index_add_, not bincount: bincount's output size depends on the data (a CUDA host sync).
        self.usage_counts.index_add_(0, indices.to(self.usage_counts.device), torch.ones_like(indices, device=self.usage_counts.device))

    def reset_usage(self) -> None:
        self.usage_counts.zero_()

    def usage(self) -> CodebookUsage:
        """Usage accumulated since the last `reset_usage()` (this syncs with the device)."""
        fraction, perplexity = codebook_usage(self.usage_counts)
        return CodebookUsage(float(fraction), float(perplexity), int(self.usage_counts.sum()))


@torch.no_grad()
def nearest_codes(tokens: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
    """Index [N] of the nearest code for each token [N, D], and its squared distance [N].

    Computed in blocks of tokens so that K = 16384 codes against many tokens stays within
    ASSIGNMENT_BLOCK_ELEMENTS floats at a time.
    """
    tokens, codes = tokens.float(), codes.float()
    code_norms = (codes * codes).sum(dim=1)
    block = max(1, ASSIGNMENT_BLOCK_ELEMENTS // codes.shape[0])
    indices, distances = [], []
    for start in range(0, tokens.shape[0], block):
        part = tokens[start : start + block]
        d = squared_distances(part, codes, code_norms)
        best_distance, best_index = d.min(dim=1)
        indices.append(best_index)
        distances.append(best_distance)
    if not indices:
        return tokens.new_zeros(0, dtype=torch.long), tokens.new_zeros(0)
    return torch.cat(indices), torch.cat(distances)


def squared_distances(a: Tensor, b: Tensor, b_norms: Tensor | None = None) -> Tensor:
    """||a_i - b_j||^2 for a [N, D], b [K, D] -> [N, K], clamped at 0 (rounding)."""
    b_norms = (b * b).sum(dim=1) if b_norms is None else b_norms
    return ((a * a).sum(dim=1, keepdim=True) - 2.0 * a @ b.T + b_norms).clamp_min(0.0)


def code_usage_entropy_loss(distances: Tensor, temperature: float) -> Tensor:
    """mean_n H(q_n) - H(mean_n q_n), with q_n = softmax(-d_n / temperature) over the K codes.

    Lowest (-log K) when each token is assigned confidently and the batch uses all codes evenly.
    """
    log_q = torch.log_softmax(-distances / temperature, dim=-1)
    q = log_q.exp()
    per_token_entropy = -(q * log_q).sum(dim=-1).mean()
    mean_q = q.mean(dim=0)
    batch_entropy = -(mean_q * torch.log(mean_q.clamp_min(1e-12))).sum()
    return per_token_entropy - batch_entropy


def codebook_usage(counts: Tensor) -> tuple[Tensor, Tensor]:
    """(fraction of codes used, perplexity) from a code histogram [K], as device tensors."""
    counts = counts.float()
    total = counts.sum().clamp_min(1.0)
    p = counts / total
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return (counts > 0).float().mean(), entropy.exp()
