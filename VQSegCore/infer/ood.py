"""Out-of-distribution score from the codebook: does this volume use the codes the training volumes used?

A model trained on chest CT maps chest-CT tokens onto a typical set of codes; an MR image, a head
scan or a wrongly scaled image lands on other codes in other proportions. The score is the
Jensen-Shannon divergence (nats, 0..ln 2) between the volume's code histogram and the training
volumes' pooled histogram, stored in the model card as `ood_reference` when training ends.

A histogram of few tokens differs from any reference by chance alone, so the divergence is compared
with what a sample of the same size drawn from the training histogram gives (`expected`, from
seeded multinomial draws): the score is the excess over that. The warning threshold is the larger
of 1.5x the largest excess of a training volume and their mean + 4 standard deviations.
(The mean token-to-code distance is reported too; on ACDC it did not separate other modalities —
benchmarks/results/inference_quality.md — so it is not what the warning uses.)

    stats = CodeStatistics.empty(1024); stats.add(indices, distances)   # per forward pass
    reference = reference_from_volumes([stats_1, stats_2, ...])         # training volumes
    score = ood_score(stats, reference)                                  # OodScore(..., warning=...)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

METRIC = "code_histogram_js"
MAX_FACTOR = 1.5
STD_FACTOR = 4.0
NULL_DRAWS = 16


@dataclass
class CodeStatistics:
    """Code-usage counts and quantization distances of one volume's tokens."""

    counts: np.ndarray  # [K] int64
    distance_sum: float = 0.0

    @classmethod
    def empty(cls, codebook_size: int) -> "CodeStatistics":
        return cls(np.zeros(codebook_size, dtype=np.int64))

    @property
    def tokens(self) -> int:
        return int(self.counts.sum())

    @property
    def mean_distance(self) -> float:
        return self.distance_sum / max(self.tokens, 1)

    def add(self, indices, distances) -> None:
        """Accumulate a batch: `indices` and `distances` are torch tensors of one shape."""
        import torch

        self.counts += torch.bincount(indices.flatten().long(), minlength=self.counts.size).cpu().numpy()[: self.counts.size]
        self.distance_sum += float(distances.float().sum())

    def merge(self, other: "CodeStatistics") -> None:
        self.counts += other.counts
        self.distance_sum += other.distance_sum


@dataclass(frozen=True)
class OodScore:
    divergence: float  # JS divergence of the volume's code histogram from the training histogram
    expected: float  # what a same-sized sample of the training histogram gives
    excess: float  # divergence - expected: the score
    threshold: float  # excess above this draws the warning
    ratio: float  # excess / threshold (1 = at the threshold)
    mean_distance: float  # mean token-to-code squared distance (information only)
    tokens: int
    warning: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def js_divergence(counts: np.ndarray, reference: np.ndarray) -> float:
    p = counts / max(counts.sum(), 1)
    q = reference / reference.sum()
    m = 0.5 * (p + q)
    def kl(a):  # terms with a = 0 contribute 0; m > 0 wherever a > 0
        nonzero = a > 0
        return float((a[nonzero] * np.log(a[nonzero] / m[nonzero])).sum())
    return 0.5 * kl(p) + 0.5 * kl(q)


def expected_divergence(reference: np.ndarray, tokens: int, seed: int = 0) -> float:
    """Mean JS divergence of `tokens`-sized multinomial samples of the reference histogram from it."""
    q = reference / reference.sum()
    rng = np.random.default_rng(seed + tokens)
    return float(np.mean([js_divergence(rng.multinomial(tokens, q), reference) for _ in range(NULL_DRAWS)]))


def reference_from_volumes(volumes: list[CodeStatistics]) -> dict:
    if not volumes or any(v.tokens == 0 for v in volumes):
        raise ValueError("the OOD reference needs at least one volume with tokens")
    pooled = np.sum([v.counts for v in volumes], axis=0).astype(np.float64)
    excess = np.array([js_divergence(v.counts, pooled) - expected_divergence(pooled, v.tokens) for v in volumes])
    distances = np.array([v.mean_distance for v in volumes])
    return {
        "metric": METRIC, "volumes": len(volumes), "histogram": [int(c) for c in pooled],
        "excess_mean": float(excess.mean()), "excess_std": float(excess.std()), "excess_max": float(excess.max()),
        "threshold": float(max(MAX_FACTOR * excess.max(), excess.mean() + STD_FACTOR * excess.std(), 1e-3)),
        "mean_distance_median": float(np.median(distances)),
    }


def ood_score(stats: CodeStatistics, reference: dict | None) -> OodScore | None:
    """None when the model card holds no (current) reference."""
    if not reference or reference.get("metric") != METRIC or stats.tokens == 0:
        return None
    pooled = np.asarray(reference["histogram"], dtype=np.float64)
    if pooled.size != stats.counts.size:
        return None
    divergence = js_divergence(stats.counts, pooled)
    expected = expected_divergence(pooled, stats.tokens)
    excess = divergence - expected
    threshold = float(reference["threshold"])
    warning = None
    if excess > threshold:
        warning = (f"this image looks unlike the model's training data (codebook usage {excess / threshold:.1f}x the "
                   "warning threshold): check the modality, body region and intensities; treat the segmentation with caution")
    return OodScore(divergence, expected, excess, threshold, excess / threshold, stats.mean_distance, stats.tokens, warning)


# ---- the reference, written into a model's card at the end of training ------------------------
OOD_REFERENCE_CASES = 24
OOD_REFERENCE_SLICES = 16


def ood_reference(model, cases: list, config, device) -> dict:
    """Code usage of (up to 24) training volumes (train.data's PreparedCase): the card's OOD reference.

    CT volumes are cut to the body's in-plane box first, as inference crops to the lungs or body:
    the reference must count the tokens inference will see, not the air around the patient. The
    engine runs in the model's own inference windows, so it counts tokens as inference counts them.
    """
    import torch

    from VQSegCore.infer.engine import SliceEngine

    with torch.no_grad():
        return reference_from_volumes(_reference_codes(SliceEngine(model, device, precision="fp32", channels_last=False), cases, config))


def _reference_codes(engine, cases: list, config) -> list[CodeStatistics]:
    step = max(1, len(cases) // OOD_REFERENCE_CASES)
    context = config.preprocessing.context_slices
    volumes = []
    for case in cases[::step][:OOD_REFERENCE_CASES]:
        depth = case.image.shape[0]
        chosen = np.unique(np.linspace(0, depth - 1, min(depth, OOD_REFERENCE_SLICES)).round().astype(int))
        volume = np.asarray(case.image, dtype=np.float32)
        if context == 0:  # the chosen slices; 2.5D needs the neighbours, so all slices
            volume = volume[chosen]
        if config.preprocessing.modality == "ct":
            volume = volume[(slice(None), *_body_plane(volume, config))]
        volumes.append(engine.run(np.ascontiguousarray(volume), background=case.background).codes)
    return volumes


def _body_plane(volume: np.ndarray, config) -> tuple[slice, slice]:
    """In-plane box of voxels above -500 HU (normalised), over all slices; the whole plane if none."""
    from VQSegCore.infer.body import BODY_THRESHOLD_HU
    from VQSegCore.preprocess import intensity_transform

    threshold = intensity_transform(volume[:0], config.preprocessing).apply(np.array([BODY_THRESHOLD_HU]))[0]
    body = (volume > threshold).any(axis=0)
    if not body.any():
        return slice(None), slice(None)
    rows, cols = np.flatnonzero(body.any(axis=1)), np.flatnonzero(body.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
