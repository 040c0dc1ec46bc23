"""Which codebook size K suits the CPU U-Net? Short supervised runs on synthetic chest CT phantoms.

For each K, the U-Net VQ model (default config apart from K) is trained supervised for a few
hundred iterations on 96 x 96 axial slices of `VQSegCore.synth` phantoms (half tumour slices,
half random slices; CT window [-1000, 400] HU to [0, 1]) with cross-entropy + soft Dice + the VQ
losses + the L1 reconstruction loss, then evaluated on held-out phantoms: 3D Dice per volume,
fraction of codes used and perplexity on the validation tokens, and seconds per iteration.

    .venv/bin/python benchmarks/codebook_size.py            # K in 64..16384, 2 seeds each
    .venv/bin/python benchmarks/codebook_size.py --quick    # 3 sizes, 1 seed, fewer iterations

Longer runs on a GPU machine without SimpleITK: write the slices here with `--slices FILE.npz`
(made once, then read), and run there with `--slices FILE.npz --device cuda --iterations ...`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.report import write_report  # noqa: E402
from VQSegCore.model import VQSegConfig, build_model, reconstruction_l1_loss  # noqa: E402

SIZE = 96
HU_WINDOW = (-1000.0, 400.0)


def phantom_slices(seeds: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image [Z, 96, 96] in [0, 1], label [Z, 96, 96]) per phantom."""
    import SimpleITK as sitk  # here, not at the top: a GPU machine reading --slices may lack it

    from VQSegCore.synth import PhantomSpec, make_chest_ct

    volumes = []
    for seed in seeds:
        phantom = make_chest_ct(PhantomSpec(size_xy=(SIZE, SIZE), n_slices=48, spacing=(3.5, 3.5, 5.0), seed=seed))
        hu = sitk.GetArrayFromImage(phantom.image).astype(np.float32)
        image = (np.clip(hu, *HU_WINDOW) - HU_WINDOW[0]) / (HU_WINDOW[1] - HU_WINDOW[0])
        volumes.append((image, sitk.GetArrayFromImage(phantom.label).astype(np.int64)))
    return volumes


def load_or_make_slices(path: Path | None):
    """Training and validation volumes, from `path` if it exists (else made, and saved there)."""
    if path is not None and path.is_file():
        data = np.load(path)
        split = lambda prefix: [  # noqa: E731
            (data[f"{prefix}_image_{i}"].astype(np.float32), data[f"{prefix}_label_{i}"].astype(np.int64))
            for i in range(int(data[f"{prefix}_count"]))
        ]
        return split("train"), split("val")
    train, val = phantom_slices(list(range(16))), phantom_slices(list(range(1000, 1004)))
    if path is not None:
        arrays = {"train_count": np.array(len(train)), "val_count": np.array(len(val))}
        for prefix, volumes in (("train", train), ("val", val)):
            for i, (image, label) in enumerate(volumes):
                arrays[f"{prefix}_image_{i}"] = image.astype(np.float16)
                arrays[f"{prefix}_label_{i}"] = label.astype(np.uint8)
        np.savez_compressed(path, **arrays)
    return train, val


def training_batches(volumes, batch_size: int, generator: np.random.Generator):
    images = np.concatenate([v[0] for v in volumes])
    labels = np.concatenate([v[1] for v in volumes])
    tumour = np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1))
    while True:
        half = batch_size // 2
        pick = np.concatenate([generator.choice(tumour, half), generator.integers(len(images), size=batch_size - half)])
        x, y = images[pick], labels[pick]
        flip = generator.random(batch_size) < 0.5  # left-right flip (the phantom's tumour side varies)
        x[flip], y[flip] = x[flip, :, ::-1], y[flip, :, ::-1]
        yield torch.from_numpy(np.ascontiguousarray(x))[:, None], torch.from_numpy(np.ascontiguousarray(y))


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    probability = logits.softmax(dim=1)[:, 1]
    target = (labels == 1).float()
    overlap = (probability * target).sum()
    return 1.0 - (2.0 * overlap + 1.0) / (probability.sum() + target.sum() + 1.0)


@torch.no_grad()
def evaluate(model, volumes, device: str) -> tuple[float, float, float]:
    """Mean 3D Dice over volumes, and (fraction used, perplexity) of the validation tokens."""
    model.eval()
    model.quantizer.reset_usage()
    dices = []
    for image, label in volumes:
        x = torch.from_numpy(image)[:, None].to(device)
        prediction = torch.cat([model(x[i : i + 16], reconstruct=False).logits.argmax(dim=1) for i in range(0, len(x), 16)])
        truth = torch.from_numpy(label).to(device) == 1
        predicted = prediction == 1
        dices.append(float(2 * (predicted & truth).sum() / (predicted.sum() + truth.sum()).clamp_min(1)))
    usage = model.quantizer.usage()
    model.train()
    return statistics.mean(dices), usage.fraction_used, usage.perplexity


def run(codebook_size: int, seed: int, iterations: int, train, val, batch_size: int, device: str = "cpu") -> dict:
    torch.manual_seed(seed)
    model = build_model(VQSegConfig(backbone="unet", codebook_size=codebook_size, perturbation="none")).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    batches = training_batches(train, batch_size, np.random.default_rng(seed))
    start = time.perf_counter()
    for _ in range(iterations):
        x, y = (t.to(device) for t in next(batches))
        out = model(x)
        loss = (
            F.cross_entropy(out.logits, y)
            + soft_dice_loss(out.logits, y)
            + out.vq_losses.total
            + reconstruction_l1_loss(out.reconstruction, x)
        )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    train_fraction = model.quantizer.usage().fraction_used  # also waits for the device
    seconds_per_iteration = (time.perf_counter() - start) / iterations
    dice, fraction, perplexity = evaluate(model, val, device)
    return {
        "K": codebook_size,
        "seed": seed,
        "val_dice": round(dice, 4),
        "val_codes_used": round(fraction, 4),
        "val_perplexity": round(perplexity, 1),
        "train_codes_used": round(train_fraction, 4),
        "s_per_iter": round(seconds_per_iteration, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 sizes, 1 seed, 100 iterations")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024, 4096, 16384])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--slices", type=Path, help="npz of the phantom slices: read if present, else written")
    parser.add_argument("--out-dir", type=Path, help="report folder (default benchmarks/results)")
    parser.add_argument("--name", default="codebook_size", help="report name")
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.seeds, args.sizes = 100, 1, [64, 1024, 16384]

    train, val = load_or_make_slices(args.slices)
    rows = []
    for seed in range(args.seeds):
        for codebook_size in args.sizes:
            rows.append(run(codebook_size, seed, args.iterations, train, val, args.batch_size, args.device))
            print(rows[-1], flush=True)

    summary = []
    for codebook_size in args.sizes:
        mine = [r for r in rows if r["K"] == codebook_size]
        summary.append(
            {
                "K": codebook_size,
                "val_dice_mean": round(statistics.mean(r["val_dice"] for r in mine), 4),
                "val_codes_used_mean": round(statistics.mean(r["val_codes_used"] for r in mine), 4),
                "val_perplexity_mean": round(statistics.mean(r["val_perplexity"] for r in mine), 1),
                "s_per_iter_mean": round(statistics.mean(r["s_per_iter"] for r in mine), 4),
            }
        )
    meta = {
        "setup": (
            f"U-Net (base 16, depth 4, code_dim 64, GroupNorm), supervised, {args.iterations} iterations, batch "
            f"{args.batch_size}, AdamW 2e-3; {SIZE}x{SIZE} slices at 3.5 mm from 16 training / 4 validation phantoms"
        ),
        "device": args.device,
        "loss": "cross-entropy + soft Dice + VQ (codebook + 0.25 commitment) + L1 reconstruction",
        "summary": summary,
    }
    for line in summary:
        print(line)
    json_path, md_path = write_report(args.name, rows, meta, out_dir=args.out_dir)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
