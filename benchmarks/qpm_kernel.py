"""How local is QPM's replacement kernel? Effective candidates on initial and trained codebooks.

For each codebook (the initial U-Net codebook of K = 1,024 and of K = 16,384, and the codebooks of
trained model folders), every 4th code (at most 256 codes) is a source; for each kernel the table gives
the mean over sources of exp(entropy) of its replacement distribution (the number of codes a swap
really chooses among: K - 1 uniform, 1 nearest-neighbour) and the mass it puts on the source's 8
nearest codes. Kernels: the fixed exp(-d / (median pairwise distance * T)) at several T, and the
calibrated kernel the models use (`qpm_candidates`), with the most mass that solving it over each
source's nearest codes only drops (against solving it over all K). It also times `perturb_codes` with each kernel
on the initial codebooks (16 x 256 tokens, epsilon 0.7, the device's default path; median of 5).

    .venv/bin/python benchmarks/qpm_kernel.py --models Resources/Models/lung-lesion /tmp/vqseg-acdc/cpu_3_qpm_0_baseline/last
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.report import write_report  # noqa: E402
from VQSegCore.model import VQSegConfig, build_model, load_model  # noqa: E402
from VQSegCore.model.qpm import (  # noqa: E402
    NEAREST_PER_CANDIDATE,
    calibrate_candidates,
    effective_candidates,
    kernel_logits,
    median_pairwise_distance,
    perturb_codes,
    replacement_logits,
)
from VQSegCore.model.quantizer import squared_distances  # noqa: E402

TEMPERATURES = (1.0, 0.3, 0.1, 0.03)
NEAREST = 8


def kernel_summary(codes: torch.Tensor, sources: torch.Tensor, *, candidates: float = 0.0, temperature: float = 1.0) -> tuple[float, float]:
    """(mean effective candidates, mean mass on the 8 nearest other codes) of one kernel."""
    width = effective_candidates(sources, codes, candidates=candidates, temperature=temperature,
                                 generator=torch.Generator().manual_seed(0))
    scale = torch.ones(()) if candidates else median_pairwise_distance(codes, 512, torch.Generator().manual_seed(0)) * temperature
    probabilities = torch.softmax(kernel_logits(sources, codes, scale, candidates=candidates), dim=1)
    distances = squared_distances(codes[sources], codes)
    distances[torch.arange(sources.numel()), sources] = float("inf")
    nearest = distances.topk(NEAREST, dim=1, largest=False).indices
    return width, float(probabilities.gather(1, nearest).sum(dim=1).mean())


def truncated_mass(codes: torch.Tensor, sources: torch.Tensor, candidates: float) -> float:
    """The largest share of a source's mass that the calibrated kernel, solved over all K codes, puts
    beyond its NEAREST_PER_CANDIDATE * candidates nearest codes: what the truncation drops."""
    nearest = math.ceil(NEAREST_PER_CANDIDATE * candidates)
    if nearest >= codes.shape[0]:
        return 0.0
    full = torch.softmax(calibrate_candidates(replacement_logits(sources, codes, torch.ones(())), candidates), dim=1)
    return float(1.0 - full.sort(dim=1, descending=True).values[:, :nearest].sum(dim=1).min())


def step_ms(codes: torch.Tensor, *, candidates: float = 0.0, temperature: float = 1.0, repeats: int = 5) -> float:
    """Median milliseconds of one QPM call on 16 x 256 tokens drawn uniformly over the codebook, epsilon 0.7."""
    indices = torch.randint(codes.shape[0], (16, 256), generator=torch.Generator().manual_seed(0))
    times = []
    for seed in range(repeats + 1):
        started = time.perf_counter()
        perturb_codes(indices, codes, 0.7, temperature, candidates=candidates, generator=torch.Generator().manual_seed(seed))
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times[1:])


def codebooks(model_dirs: list[Path]) -> list[tuple[str, torch.Tensor]]:
    found = []
    for size in (1024, 16384):
        torch.manual_seed(0)
        found.append((f"initial U-Net codebook, K = {size}", build_model(VQSegConfig(codebook_size=size)).quantizer.codes().detach()))
    for folder in model_dirs:
        model, _card = load_model(folder)
        found.append((f"trained: {folder}", model.quantizer.codes().detach()))
    return found


@torch.no_grad()
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, nargs="*", default=[], help="trained model folders (save_model format)")
    parser.add_argument("--candidates", type=float, default=VQSegConfig().qpm_candidates, help="the calibrated kernel's width")
    args = parser.parse_args()
    rows = []
    for name, codes in codebooks(args.models):
        size = codes.shape[0]
        sources = torch.arange(0, size, max(4, size // 256))
        kernels = [(f"fixed T = {t:g}", dict(temperature=t)) for t in TEMPERATURES]
        kernels.append((f"calibrated, {args.candidates:g} candidates", dict(candidates=args.candidates)))
        for kernel, options in kernels:
            width, near = kernel_summary(codes.float(), sources, **options)
            timed = name.startswith("initial") and (options.get("candidates") or options.get("temperature") == 0.1)
            rows.append({"codebook": name, "K": size, "kernel": kernel, "effective candidates": round(width, 1),
                         f"mass on {NEAREST} nearest": round(near, 3),
                         "ms per call": round(step_ms(codes.float(), **options), 1) if timed else "",
                         "mass beyond the nearest codes (max)": round(truncated_mass(codes.float(), sources, options["candidates"]), 4)
                         if options.get("candidates") else ""})
            print(rows[-1], flush=True)
    write_report("qpm_kernel", rows, {"command": "python benchmarks/qpm_kernel.py " + " ".join(sys.argv[1:]),
                                      "sources": "every 4th code, at most 256 per codebook"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
