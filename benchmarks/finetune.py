"""Fine-tuning under domain shift on synthetic chest CT: before, after semi-supervised and after supervised-only.

Source family A (the base model's data): small tumours (12-20 mm), low noise (10 HU), 2.0x2.0x4 mm.
Target family B (the pool): large tumours (38-55 mm), high noise (45 HU), 2.6x2.6x5 mm.
1. The base model is trained on 8 labelled A phantoms and becomes the active version of a store.
2. A pool gets 3 corrected B cases (the phantom's truth as the correction, the base model's output
   as the draft) and 10 uncorrected B cases.
3. `vqseg finetune --pool P --minutes M` (default 8) runs once per mode and seed (`--seeds 0,1,2`)
   from the same base, each in its own process (time and peak RSS measured) and a fresh copy of the
   store; with several seeds the table adds each mode's mean over them. Default modes:
   semi-supervised at the default settings and `--supervised-only`. Others: `semi-dice` (the
   pseudo-labels' Dice beside their CE, one strong view), `semi-no-warmup`, both modes at
   `--lr 1e-3`, and `supervised-matched` (after `semi`): supervised-only with as many iterations as
   the semi-supervised run made, the unlabelled cases' worth per update, their cost aside.
   The pool's cases are added in a fixed order, so every run holds out the same case for the gate.
   `--label-all` gives the 10 uncorrected cases their truth too (the gate then holds out 4 of 13):
   supervised-only on them bounds what the unlabelled cases could add with perfect pseudo-labels.
   `--iterations N` budgets updates instead of minutes.
4. Dice on 10 fresh B phantoms (seeds 400-409): the base model and each candidate. Fine-tuning
   settings are chosen on other B phantoms (seeds 300-309, `--phantoms dev`), the learning rate on
   `vqseg demo`.

    .venv/bin/python benchmarks/finetune.py --work /tmp/ftbench                 # results/finetune.json and .md
    .venv/bin/python benchmarks/finetune.py --work /tmp/ftbench --reuse-base --seeds 0,1,2   # the README's table
    # three more seeds from the same base (copy the base/ folder of /tmp/ftbench to /tmp/ftseeds first)
    .venv/bin/python benchmarks/finetune.py --work /tmp/ftseeds --reuse-base --seeds 3,4,5 --name finetune_seeds345
    python benchmarks/finetune.py --device cuda --minutes 1 --name finetune_gpu               # on a GPU: base, fine-tunes, scoring
    # every pool case labelled, supervised-only (copy the base/ folder of /tmp/ftbench to /tmp/ftall first)
    .venv/bin/python benchmarks/finetune.py --work /tmp/ftall --reuse-base --seeds 0,1,2 --modes supervised --label-all \
        --name finetune_all_labelled
    .venv/bin/python benchmarks/finetune.py --work /tmp/ftall --reuse-base --seeds 0,1,2 --modes supervised --label-all \
        --iterations 1065 --name finetune_all_labelled_iterations
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402

from benchmarks.inference import cpu_model, last_result, run_measured  # noqa: E402
from benchmarks.report import write_report  # noqa: E402
from VQSegCore.dataset_spec import DatasetSpec  # noqa: E402
from VQSegCore.finetune.holdout import held_out_count  # noqa: E402
from VQSegCore.infer import SegmentRequest, segment_volume  # noqa: E402
from VQSegCore.metrics import dice_score  # noqa: E402
from VQSegCore.model import VQSegConfig, load_model  # noqa: E402
from VQSegCore.model.config import PreprocessingConfig  # noqa: E402
from VQSegCore.model.persistence import read_card  # noqa: E402
from VQSegCore.models import ModelStore  # noqa: E402
from VQSegCore.pool import Pool  # noqa: E402
from VQSegCore.pool.layout import case_number  # noqa: E402
from VQSegCore.synth import PhantomSpec, make_chest_ct  # noqa: E402
from VQSegCore.train import train  # noqa: E402

MODEL = "bench-lung"
CONFIG = VQSegConfig(unet_base_width=16, unet_depth=4, preprocessing=PreprocessingConfig(spacing_mm=(2.0, 2.0)))


MODES = {  # key: (row name, extra vqseg finetune options)
    "semi": ("semi-supervised", []),
    "semi-dice": ("semi-supervised, the pseudo-labels' Dice beside their CE, one strong view",
                  ["--unlabelled-dice", "1", "--strong-views", "1"]),
    "semi-no-warmup": ("semi-supervised, no warm-up", ["--supervised-warmup", "0"]),
    "supervised": ("supervised only", ["--supervised-only"]),
    "semi-lr1e-3": ("semi-supervised, lr 1e-3", ["--lr", "1e-3"]),
    "supervised-lr1e-3": ("supervised only, lr 1e-3", ["--supervised-only", "--lr", "1e-3"]),
    # as many updates as the semi-supervised run made (cost aside: what do the unlabelled cases add per update?)
    "supervised-matched": ("supervised only, the semi-supervised run's iterations", ["--supervised-only"]),
}
PAIRS = {"defaults": ("semi", "supervised"), "lr 1e-3": ("semi-lr1e-3", "supervised-lr1e-3"),
         "same iterations": ("semi", "supervised-matched")}
TEST_SEEDS = range(400, 410)  # fine-tuning settings are chosen on DEV_SEEDS, never on these
DEV_SEEDS = range(300, 310)
POOL_STEMS = [f"b{i}" for i in range(13)]  # in the order added: CORRECTED_CASES corrected, then the uncorrected
CORRECTED_CASES = 3
DICE_COLUMN = "mean Dice (10 fresh B)"


def candidate_label(key: str) -> str:
    """The table's name of a mode's fine-tuned rows, before the version: "fine-tuned, semi-supervised"."""
    return f"fine-tuned, {MODES[key][0]}"


def family(name: str, seed: int) -> PhantomSpec:
    rng = np.random.default_rng(seed)
    if name == "A":
        return PhantomSpec(size_xy=(160, 160), n_slices=40, spacing=(2.0, 2.0, 4.0), tumour_diameter_mm=float(rng.uniform(12, 20)),
                           noise_hu=10.0, seed=seed)
    return PhantomSpec(size_xy=(128, 128), n_slices=36, spacing=(2.6, 2.6, 5.0), tumour_diameter_mm=float(rng.uniform(38, 55)),
                       noise_hu=45.0, seed=seed)


def phantom_files(folder: Path, stem: str) -> tuple[Path, Path]:
    return folder / f"{stem}.nii.gz", folder / f"{stem}-label.nii.gz"


def pool_files(data: Path) -> list[tuple[Path, Path]]:
    """(image, truth) of the pool's cases in the order they are added: 3 corrected, then 10 uncorrected."""
    return [phantom_files(data, stem) for stem in POOL_STEMS]


def write_phantom(spec: PhantomSpec, folder: Path, stem: str) -> tuple[Path, Path]:
    phantom = make_chest_ct(spec)
    image, label = phantom_files(folder, stem)
    sitk.WriteImage(phantom.image, str(image))
    sitk.WriteImage(phantom.label, str(label))
    return image, label


def read_cases(pairs: list[tuple[Path, Path]]) -> list[tuple[sitk.Image, np.ndarray]]:
    """(image, tumour mask) of each (image file, truth file): read once, scored against every model."""
    return [(sitk.ReadImage(str(image)), sitk.GetArrayFromImage(sitk.ReadImage(str(label))) == 1) for image, label in pairs]


def dice_on(model_dir: Path, cases: list[tuple[sitk.Image, np.ndarray]], device: str = "cpu") -> list[float]:
    model, card = load_model(model_dir)
    return [dice_score(sitk.GetArrayFromImage(segment_volume(model, card, image, SegmentRequest(device=device)).labels) == 1, tumour)
            for image, tumour in cases]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-iterations", type=int, default=400)
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=8.0, help="training budget of each fine-tune (default 8)")
    budget.add_argument("--iterations", type=int, default=None, help="a budget in updates instead of minutes")
    parser.add_argument("--work", type=Path, default=None, help="keep the work folder here (default: a temporary one)")
    parser.add_argument("--reuse-base", action="store_true", help="keep the base model an earlier run left in --work")
    parser.add_argument("--modes", default="semi,supervised",
                        help=f"comma-separated, in order, of {', '.join(MODES)} (default: semi,supervised)")
    parser.add_argument("--seeds", default="0", help="comma-separated fine-tune --seed values, each mode runs once per seed (default 0)")
    parser.add_argument("--name", default="finetune", help="results/NAME.json and .md (default finetune)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where base training, fine-tunes and scoring run (default cpu, the target's 2-core CPU)")
    parser.add_argument("--label-all", action="store_true",
                        help="give every pool case its truth (an upper bound: what the 10 unlabelled cases could add, perfectly labelled)")
    parser.add_argument("--phantoms", choices=("test", "dev"), default="test",
                        help="score on the test phantoms (seeds 400-409) or the development ones (300-309) that settings are chosen on")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if not set(modes) <= set(MODES):
        parser.error(f"--modes: unknown {sorted(set(modes) - set(MODES))}")
    try:
        run_seeds = [int(seed) for seed in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds: comma-separated integers, got {args.seeds!r}")
    if "supervised-matched" in modes and "semi" not in modes[:modes.index("supervised-matched")]:
        parser.error("--modes: supervised-matched needs semi before it")  # before minutes of base training
    work = args.work or Path(tempfile.mkdtemp(prefix="vqseg-finetune-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    data.mkdir(exist_ok=True)
    python = sys.executable

    # 1. the base model on family A
    cases = []
    for i in range(10):
        image, label = write_phantom(family("A", 100 + i), data, f"a{i}")
        cases.append({"id": f"a{i}", "image": str(image), "label": str(label), "split": "train" if i < 8 else "val"})
    (work / "base-spec.json").write_text(json.dumps({"cases": cases}))
    if args.reuse_base and (work / "base" / "last").is_dir():
        base = {"iterations": read_card(work / "base" / "last")["training"]["iterations_done"]}
    else:
        shutil.rmtree(work / "base", ignore_errors=True)
        base = train(DatasetSpec.load(work / "base-spec.json"), CONFIG, work / "base", iterations=args.base_iterations, batch_size=8,
                     crop_size=96, validate_every=args.base_iterations, supervised_only=True, device=args.device, seed=0)
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    store = ModelStore(home / "models")
    base_model, base_card = load_model(work / "base" / "last")
    version = store.add_version(MODEL, base_model, training=base_card["training"], ood_reference=base_card.get("ood_reference"),
                                status="promoted", reason="base model (family A)")
    store.activate(MODEL, version)

    # 2. the pool on family B: 3 corrected, 10 uncorrected
    pool = Pool.create(home / "pools" / "shift", name="shift")
    pooled = []  # the pool's cases in the order added, with their truth (the uncorrected ones' too)
    for i, stem in enumerate(POOL_STEMS):
        image, label = write_phantom(family("B", 200 + i), data, stem)
        pooled.append((image, label))
        if i < CORRECTED_CASES:
            draft = data / f"{stem}-draft.nii.gz"
            base_output = segment_volume(base_model, base_card, sitk.ReadImage(str(image)), SegmentRequest(device=args.device))
            sitk.WriteImage(base_output.labels, str(draft))
            pool.add(image, label=label, draft=draft, draft_model=f"{MODEL}/{version}")
        else:
            pool.add(image, label=label if args.label_all else None)
    seeds = TEST_SEEDS if args.phantoms == "test" else DEV_SEEDS
    fresh = read_cases([write_phantom(family("B", seed), data, f"{args.phantoms}{seed}") for seed in seeds])

    # 3. the fine-tunes, each from the same base, per seed
    results = {}
    for seed in run_seeds:
        for key in modes:
            mode_home = work / f"home-{key}-seed{seed}"
            budget = ["--minutes", str(args.minutes)] if args.iterations is None else ["--iterations", str(args.iterations)]
            if key == "supervised-matched":
                budget = ["--iterations", str(results[("semi", seed)][0]["iterations"])]
            shutil.rmtree(mode_home, ignore_errors=True)
            shutil.copytree(home, mode_home)
            wall, rss, out = run_measured([python, "-m", "VQSegCore", "finetune", "--pool", str(mode_home / "pools" / "shift"),
                                           "--model", MODEL, *budget, "--device", args.device, "--seed", str(seed),
                                           "--events", *MODES[key][1]],
                                          {"VQSEG_HOME": str(mode_home)})
            results[(key, seed)] = (last_result(out), wall, rss, mode_home)

    # 4. Dice on fresh family-B phantoms
    before = dice_on(store.path(MODEL, version), fresh, args.device)
    # every run holds out the same case (the pool's cases are added in a fixed order), so the first run's split is every run's
    trained, unlabelled = map(read_cases, pool_cases_trained_on(Path(next(iter(results.values()))[0]["run"]), pooled))
    rows = [{"model": "base (family A only)", "seed": "", DICE_COLUMN: round(float(np.mean(before)), 4),
             "min–max": f"{min(before):.3f}–{max(before):.3f}", **pool_dice(store.path(MODEL, version), trained, unlabelled, args.device),
             "iterations": "", "fine-tune min": "", "peak RSS GB": "", "gate": ""}]
    means = {}
    for (key, seed), (result, wall, rss, mode_home) in results.items():
        candidate = ModelStore(mode_home / "models").path(MODEL, result["version"])
        scores = dice_on(candidate, fresh, args.device)
        means[(key, seed)] = float(np.mean(scores))
        rows.append({"model": f"{candidate_label(key)} ({result['version']})", "seed": seed,
                     DICE_COLUMN: round(means[(key, seed)], 4), "min–max": f"{min(scores):.3f}–{max(scores):.3f}",
                     **pool_dice(candidate, trained, unlabelled, args.device),
                     "iterations": result["iterations"], "fine-tune min": round(wall / 60, 2), "peak RSS GB": round(rss, 2),
                     "gate": "promoted" if result["promoted"] else f"kept: {result['reason']}"})
        print(rows[-1], flush=True)
    over_seeds = {key: float(np.mean([means[(key, seed)] for seed in run_seeds])) for key in modes}
    if len(run_seeds) > 1:
        for key in modes:
            spread = [means[(key, seed)] for seed in run_seeds]
            rows.append({"model": f"mean over seeds: {MODES[key][0]}", "seed": ",".join(map(str, run_seeds)),
                         DICE_COLUMN: round(over_seeds[key], 4), "min–max": f"{min(spread):.3f}–{max(spread):.3f} (seeds)",
                         "iterations": "", "fine-tune min": "", "peak RSS GB": "", "gate": ""})
    write_report(args.name, rows, {
        "command": "python benchmarks/finetune.py " + " ".join(sys.argv[1:]), "cpu_model": cpu_model(), "device": device_name(args.device),
        "base_training_s": base.get("elapsed_s"), "base_iterations": base["iterations"],
        "finetune_minutes_budget": None if args.iterations else args.minutes, "finetune_iterations_budget": args.iterations,
        "families": {"A": "12-20 mm tumours, 10 HU noise, 2.0x2.0x4 mm, 160x160x40",
                     "B": "38-55 mm tumours, 45 HU noise, 2.6x2.6x5 mm, 128x128x36"},
        "pool": (f"{len(POOL_STEMS)} family-B cases, all labelled; the gate holds out {held_out_count(len(POOL_STEMS))} of them"
                 if args.label_all else
                 f"{CORRECTED_CASES} corrected + {len(POOL_STEMS) - CORRECTED_CASES} uncorrected family-B cases; the gate holds out "
                 f"{held_out_count(CORRECTED_CASES)} of the {CORRECTED_CASES} corrected cases"),
        "targets": {"finetune_minutes": 10, "peak_rss_gb": 4, "semi_beats_supervised": True},
        "seeds": run_seeds, "scored_on": f"{args.phantoms} phantoms, seeds {seeds[0]}-{seeds[-1]}",
        "semi_beats_supervised": {
            pair: {"mean_over_seeds": over_seeds[semi] > over_seeds[supervised],
                   "seeds_won": sum(means[(semi, seed)] > means[(supervised, seed)] for seed in run_seeds), "seeds": len(run_seeds)}
            for pair, (semi, supervised) in PAIRS.items() if semi in modes and supervised in modes},
        "finetune_results": {f"{MODES[key][0]}, seed {seed}": r[0] for (key, seed), r in results.items()},
    })
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def pool_cases_trained_on(run: Path, pooled: list[tuple[Path, Path]]) -> tuple[list, list]:
    """(the labelled pool cases a fine-tune trained on, the unlabelled ones), as (image, truth) files.

    The run's spec.json names pool cases by id; a case's number counts from 1 in the order they were added.
    """
    cases = json.loads((run / "spec.json").read_text())["cases"]
    trained = [pooled[case_number(case["id"]) - 1] for case in cases if case.get("label") and case["split"] == "train"]
    return trained, [pooled[case_number(case["id"]) - 1] for case in cases if not case.get("label")]


def pool_dice(model_dir: Path, trained: list, unlabelled: list, device: str) -> dict:
    """Mean Dice on the pool's cases: how well the labels were fitted, and on the images seen without labels."""
    scores = dice_on(model_dir, trained + unlabelled, device)
    columns = {f"Dice, labelled pool cases trained on ({len(trained)})": scores[:len(trained)],
               f"Dice, unlabelled pool cases ({len(unlabelled)})": scores[len(trained):]}
    return {column: round(float(np.mean(values)), 4) for column, values in columns.items() if values}  # --label-all: none unlabelled


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else "cpu"


if __name__ == "__main__":
    sys.exit(main())
