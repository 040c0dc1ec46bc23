"""Train, compare and ship the default lung-lesion model, scored on the LIDC validation patients.

1. The dataset spec (every training patient labelled; the validation patients as the val split):

    .venv/bin/python benchmarks/lidc_default_model.py --write-spec benchmarks/cache/lidc_default.json

2. Candidates, trained side by side with one thread each (the recipe in docs/model.md), e.g.

    OMP_NUM_THREADS=1 vqseg train --dataset benchmarks/cache/lidc_default.json --out RUN --iterations N \
        --crop-size 96 --context-slices 1 --spacing 0.7 0.7 --base-width 16 --depth 4 --batch-size 8 [--supervised-only]

   or continue a trained model on the nodules at least two readers marked (the spec of --write-spec
   PATH --consensus-only: the rest are unlabelled), as the shipped model was:

    vqseg train --dataset benchmarks/cache/lidc_consensus.json --initial-model OLD_MODEL --out RUN --iterations 6000 \
        --lr 3e-4 --crop-size 96 --batch-size 8 --seed 1 --supervised-only --validate-every 1000 --checkpoint-every 250

3. Compare them (best and last of each, in the model's own windows and on whole slices), shipping nothing:

    .venv/bin/python benchmarks/lidc_default_model.py --compare --run RUN_A RUN_B [--name NAME]
        # results/lidc_default_candidates.json and .md (or NAME.*)

4. Ship one: score RUN/<best|last> on every validation case (3D Dice, HD95, missed), copy its weights
   into Resources/Models/lung-lesion/ and write its card (data, preprocessing, intended use,
   metrics, training, the LIDC-IDRI attribution):

    .venv/bin/python benchmarks/lidc_default_model.py --run RUN [--which best] [--window 0]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks import lidc_data, lidc_readers  # noqa: E402
from benchmarks.lidc import evaluate_model  # noqa: E402
from benchmarks.report import write_report  # noqa: E402
from VQSegCore.atomic import write_json_atomic  # noqa: E402
from VQSegCore.dataset_spec import DatasetSpec  # noqa: E402
from VQSegCore.model.persistence import load_model, read_card  # noqa: E402
from VQSegCore.models.locate import DEFAULT_MODEL_NAME, shipped_models_dir  # noqa: E402

ATTRIBUTION = (
    "Trained on LIDC-IDRI (The Cancer Imaging Archive), licensed CC BY 3.0. Armato SG III et al., The Lung Image Database "
    "Consortium (LIDC) and Image Database Resource Initiative (IDRI): a completed reference database of lung nodules on CT "
    "scans. Med. Phys. 38:915-931, 2011. The authors acknowledge the National Cancer Institute and the Foundation for the "
    "National Institutes of Health, and their critical role in the creation of the free publicly available LIDC/IDRI "
    "Database used in this study."
)
INTENDED_USE = (
    "Research use only; not a medical device. Segmentation of a lung lesion (nodule or tumour) in chest CT in Hounsfield "
    "units, inside a region of interest placed around the lesion (as in the training crops: about 90 mm square). On a "
    "whole chest without an ROI it may mark vessels or other dense structures; correct the result in the Segment Editor."
)


def training_summary(training: dict, run_dir: Path, best_iteration=None) -> str:
    """How the model was trained, in one sentence, from its card's training section and the run's checkpoint."""
    minutes = training.get("training_minutes")
    state = run_dir / "checkpoint" / "state.json"
    if minutes is None and state.is_file():
        minutes = round(json.loads(state.read_text())["extra"].get("elapsed_s", 0.0) / 60, 1)
    mode = "supervised only" if training.get("supervised_only") else "semi-supervised (QPM, EMA teacher)"
    start = f"starting from {training['initial_model']}" if training.get("initial_model") else "from random weights"
    return (f"{training.get('iterations_done')} iterations, {mode}, {start}, on {training.get('device')} "
            f"({minutes} min): batch {training.get('batch_size')} crops of "
            f"{training.get('crop_size')} voxels, {training.get('optimiser')} lr {training.get('lr')} with poly decay, "
            f"seed {training.get('seed')}; the weights are the EMA teacher of the best validation (iteration "
            f"{best_iteration or training.get('iterations_done')}).")


def describe_initial_model(folder: Path) -> str:
    """The starting model as the card can say it: its weights' hash and how it was trained, not a path on one machine."""
    card = read_card(folder)
    how = (card.get("model_card") or {}).get("training", "")
    return f"the weights of the earlier {DEFAULT_MODEL_NAME} model (sha256 {card['weights_sha256'][:16]}; {how})"


def model_card_section(card: dict, scores: dict, spec: DatasetSpec, run_dir: Path, evaluated: DatasetSpec) -> dict:
    patients = {case.id.split("_nodule-")[0] for case in evaluated.entries}
    val_patients = {case.id.split("_nodule-")[0] for case in evaluated.entries if case.split == "val"}
    return {
        "training": training_summary(card["training"], run_dir, (card.get("metrics") or {}).get("iteration")),
        "name": DEFAULT_MODEL_NAME,
        "description": "VQ-Seg U-Net (2.5D, one context slice each side) for lung lesions in CT.",
        "intended_use": INTENDED_USE,
        "data": {
            "source": "LIDC-IDRI nodule crops (128 x 128 axial crops centred on each nodule, consensus mask of >= 2 of 4 readers)",
            "patients": len(patients), "training_patients": len(patients - val_patients), "validation_patients": len(val_patients),
            "split": "by patient, sha256 of the patient id (20% validation)",
            "cases": len(evaluated.entries),
            "training_labels": training_labels(spec),
        },
        "preprocessing": {
            "intensity": f"8-bit crop values mapped to HU = {lidc_data.HU_SLOPE} v {lidc_data.HU_INTERCEPT:+.0f}, fitted to the lung "
                         "and soft-tissue peaks (-868 and 67 HU against references of -860 and 40) and checked against fat, a "
                         "reference it was not fitted to: fat lands at -67 HU (reference -100, 59 crops), so the map reads fat "
                         "and soft tissue about 30 HU high and lung within 10 HU; air saturates at the window's lowest value, "
                         "-1010 HU by the map (benchmarks/results/lidc_intensity.md). The model's window is "
                         f"{card['config']['preprocessing']['hu_window']} HU",
            "spacing": f"the crops carry no spacing; {lidc_data.ASSUMED_SPACING_MM[0]} mm in-plane was assumed (typical for "
                       "LIDC-IDRI) and is the model's in-plane spacing: inputs are resampled to it",
        },
        "classes": card["config"]["classes"],
        "validation": {k: v for k, v in scores.items() if k != "per_case"},
        "limitations": [
            "Trained on crops around nodules: no whole-lung training context.",
            "Spacing of the training crops is assumed, so lesion size in mm is learnt only approximately.",
            f"Trained on a CPU for a limited time (see training): mean Dice {scores['reader_level_dice']:.2f} against the "
            f"consensus on the {scores['reader_level_cases']} validation nodules that at least three readers marked "
            f"({scores['paired_dice']:.2f} against each reader's own reference), where one radiologist against the other "
            f"three scores {reader_figure():.2f} on the same nodules, leaving out a reader who did not mark the nodule as "
            f"the published figure does ({reader_figure('reader_score_with_misses'):.2f} counting that reader's miss; "
            f"benchmarks/results/lidc_readers.md); published 3D LIDC nodule segmentation lies at 0.73-0.75. Over every "
            f"validation nodule, including the "
            f"{scores['empty_reference']} that only one reader marked (an empty consensus, where any drawing scores 0): "
            f"{scores['dice']:.2f}.",
        ],
        "licence_and_attribution": ATTRIBUTION,
    }


def training_labels(spec: DatasetSpec) -> str:
    unlabelled = sum(1 for case in spec.entries if case.split == "train" and case.label is None)
    if not unlabelled:
        return "every training nodule with its consensus mask (an empty mask where only one reader marked it)"
    return (f"the consensus mask of every training nodule that at least two readers marked; the {unlabelled} that only "
            "one reader marked are unlabelled training cases")


def reader_figure(key: str = "reader_score") -> float:
    """One radiologist against the other three on the validation nodules scored at reader level."""
    table = lidc_readers.agreement()
    scores = [v[key] for s, v in table.items()
              if v["reader_score"] is not None and lidc_data.is_validation_patient(s.split("_nodule-")[0])]
    return float(np.mean(scores))


def evaluation_spec() -> DatasetSpec:
    """Every nodule of the validation patients, whatever the spec a candidate was trained with."""
    return DatasetSpec.load(write_default_spec(lidc_data.DEFAULT_CACHE.parent / "lidc_default.json"))


def write_default_spec(path: Path, consensus_only: bool = False) -> Path:
    """Every training patient labelled; with `consensus_only`, nodules only one reader marked (an empty
    consensus) are unlabelled training cases and left out of validation."""
    cache = lidc_data.prepare()
    patients = lidc_data.patients()
    val = {p for p in patients if lidc_data.is_validation_patient(p)}
    empty = {s for s, v in lidc_readers.agreement().items() if v["consensus_voxels"] == 0} if consensus_only else set()
    return lidc_data.write_spec(path, cache, set(patients) - val, set(), val, name=path.stem, without_label=empty)


def score_row(label: str, scores: dict, iterations, window) -> dict:
    def r4(value):
        return None if value is None else round(value, 4)

    with_nodule = scores["cases"] - scores["empty_reference"]
    return {"model": label, "iterations": iterations, "window": "whole slices" if window == 0 else "own (training crop)",
            "reader-level nodules": scores["reader_level_cases"], "Dice mean, reader level": r4(scores["reader_level_dice"]),
            "Dice median, reader level": r4(scores["reader_level_dice_median"]), "Dice paired with readers": r4(scores["paired_dice"]),
            "all val nodules": scores["cases"], "Dice mean, all": r4(scores["dice"]), "Dice median, all": r4(scores["dice_median"]),
            "HD95 median (mm)": None if scores["hd95_mm"] is None else round(scores["hd95_mm"], 2),
            "missed / with consensus": f"{scores['missed']} / {with_nodule}",
            "missed %": round(100 * scores["missed"] / max(1, with_nodule), 1)}


def compare(runs: list[Path], name: str = "lidc_default_candidates") -> int:
    rows, training = [], {}
    spec = evaluation_spec()
    for run in runs:
        for which in ("best", "last"):
            if not (run / which).is_dir():
                continue
            card = read_card(run / which)
            if which == "last" and (run / "best").is_dir() and read_card(run / "best")["weights_sha256"] == card["weights_sha256"]:
                continue  # the last validation was the best: the same weights
            training[f"{run.name}/{which}"] = card["training"]
            for window in (None, 0):
                rows.append(score_row(f"{run.name}/{which}", evaluate_model(run / which, spec, window=window),
                                      card["training"].get("iterations_done"), window))
                print(json.dumps(rows[-1]), flush=True)
    write_report(name, rows, {"command": "python benchmarks/lidc_default_model.py " + " ".join(sys.argv[1:]),
                                                   "training": training})
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write-spec", type=Path, metavar="PATH", help="write the default model's dataset spec and stop")
    parser.add_argument("--consensus-only", action="store_true",
                        help="with --write-spec: nodules with an empty consensus become unlabelled training cases")
    parser.add_argument("--run", type=Path, nargs="+", help="vqseg train output folder(s)")
    parser.add_argument("--compare", action="store_true", help="score every --run (best and last), ship nothing")
    parser.add_argument("--name", default="lidc_default_candidates", help="results file of --compare")
    parser.add_argument("--which", choices=("best", "last"), default="best")
    parser.add_argument("--window", type=int, default=None,
                        help="the shipped card's inference window: 0 = whole slices (default: the training crop)")
    parser.add_argument("--out", type=Path, default=shipped_models_dir() / DEFAULT_MODEL_NAME)
    args = parser.parse_args()
    if args.write_spec:
        print("written", write_default_spec(args.write_spec, args.consensus_only))
        return 0
    if not args.run:
        parser.error("--run is required")
    if args.compare:
        return compare(args.run, args.name)
    if len(args.run) != 1:
        parser.error("ship one --run at a time")
    run_dir = args.run[0]
    source = run_dir / args.which
    card = read_card(source)
    load_model(source)  # refuses weights that don't match the card
    if card["training"].get("initial_model"):
        card["training"]["initial_model"] = describe_initial_model(Path(card["training"]["initial_model"]))
    if args.window is not None:
        card["config"]["inference_window"] = args.window  # 0 = whole slices
    run = json.loads((run_dir / "run.json").read_text())
    spec = DatasetSpec.load(run["dataset"])
    # Built and scored beside the shipped folder, which is replaced only by a model that loads.
    staged = args.out.with_name(args.out.name + ".staged")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    shutil.copyfile(source / "weights.safetensors", staged / "weights.safetensors")
    write_json_atomic(staged / "card.json", card)
    load_model(staged)
    evaluated = evaluation_spec()
    scores = evaluate_model(staged, evaluated)  # through the path of vqseg segment
    card["model_card"] = model_card_section(card, scores, spec, run_dir, evaluated)
    write_json_atomic(staged / "card.json", card)
    load_model(staged)
    previous = args.out.with_name(args.out.name + ".previous")
    shutil.rmtree(previous, ignore_errors=True)
    if args.out.exists():
        args.out.rename(previous)
    staged.rename(args.out)
    shutil.rmtree(previous, ignore_errors=True)
    row = score_row(f"{DEFAULT_MODEL_NAME} ({args.which} of {run_dir.name})", scores, card["training"].get("iterations_done"),
                    card["config"].get("inference_window") or 0)
    write_report("lidc_default_model", [row], {"command": "python benchmarks/lidc_default_model.py " + " ".join(sys.argv[1:]),
                                               "per_case": scores["per_case"], "training": card["training"]})
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
