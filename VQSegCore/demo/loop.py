"""The demo loop, in-process, in its own folder (its own model store and pool, never the user's).

1. Make synthetic chest CTs with a central tumour: 2 test cases, 3 to "correct", several unlabelled.
2. Segment the test cases with the default model inside an ROI around the tumour (the model's
   intended use), and score Dice against the phantom's truth.
3. Draft the 3 cases with the model and add them to a pool with their truth as the "correction";
   add the others as unlabelled cases.
4. Fine-tune within the time budget (semi-supervised, with the promotion gate).
5. Segment the test cases again with the fine-tuned version; report before/after and draw a figure.
Every number comes from this run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from VQSegCore.classes import LUNG_TUMOUR
from VQSegCore.demo.cases import DemoCase, make_case
from VQSegCore.demo.figure import draw_before_after
from VQSegCore.errors import InputError
from VQSegCore.io.write import write_label_map
from VQSegCore.metrics import dice_score
from VQSegCore.models.locate import DEFAULT_MODEL_NAME, shipped_models_dir
from VQSegCore.models.store import ModelStore

TEST_SEEDS = (9001, 9002)
CORRECTED_SEEDS = (9101, 9102, 9103)


@dataclass(frozen=True)
class DemoSettings:
    out: Path
    minutes: float = 2.5
    unlabelled: int = 4
    device: str = "auto"
    model_name: str = DEFAULT_MODEL_NAME
    base_model: Path | None = None  # a model folder to start from; None: the shipped default model
    lr: float | None = None  # fine-tuning peak learning rate; None: finetune()'s default


def run_demo(settings: DemoSettings, reporter, cancel) -> dict:
    from VQSegCore.finetune import finetune
    from VQSegCore.pool import Pool

    started = time.perf_counter()
    out = settings.out
    store = ModelStore(out / "home" / "models")
    base_version = _install_base_model(store, settings)
    base = store.path(settings.model_name, base_version)

    cases_dir = out / "cases"
    cases_dir.mkdir(parents=True, exist_ok=True)
    seeds = [("test", TEST_SEEDS), ("corrected", CORRECTED_SEEDS),
             ("unlabelled", tuple(9201 + i for i in range(settings.unlabelled)))]
    made: dict[str, list[DemoCase]] = {}
    total = sum(len(s) for _, s in seeds)
    for kind, kind_seeds in seeds:
        made[kind] = []
        for seed in kind_seeds:
            reporter.progress("phantoms", sum(map(len, made.values())), total)
            made[kind].append(make_case(cases_dir, f"{kind}-{seed}", seed))
            cancel.check()
    reporter.progress("phantoms", total, total)

    before = _segment_all(base, made["test"] + made["corrected"], out / "before", settings.device, reporter, cancel)

    pool, _ = Pool.open_or_create(out / "home" / "pools" / "demo", classes=LUNG_TUMOUR)
    draft_model = f"{settings.model_name}@{base_version}"
    for case in made["corrected"]:
        pool.add(case.image, label=case.label, draft=before[case.name]["path"], source_name=case.name, draft_model=draft_model)
    for case in made["unlabelled"]:
        pool.add(case.image, source_name=case.name)
    reporter.log(f"pool: {len(made['corrected'])} corrected and {len(made['unlabelled'])} unlabelled cases")

    tuned = finetune(pool.folder, model_name=settings.model_name, minutes=settings.minutes, device=settings.device,
                     reporter=reporter, cancel=cancel, store=store, **({"lr": settings.lr} if settings.lr is not None else {}))
    after_model = store.path(settings.model_name, tuned["version"])
    after = _segment_all(after_model, made["test"], out / "after", settings.device, reporter, cancel)

    figure = draw_before_after(made["test"][0], before[made["test"][0].name]["path"], after[made["test"][0].name]["path"],
                               out / "demo.png")
    rows = [{"case": case.name, "dice_before": before[case.name]["dice"], "dice_after": after[case.name]["dice"]}
            for case in made["test"]]
    return {
        "model": settings.model_name, "base_version": base_version, "new_version": tuned["version"],
        "promoted": tuned["promoted"], "gate": tuned["reason"], "finetune_iterations": tuned["iterations"],
        "finetune_s": round(tuned["elapsed_s"], 1), "held_out_dice": tuned["held_out_dice"],
        "parent_held_out_dice": tuned["parent_held_out_dice"], "test_cases": rows,
        "mean_dice_before": round(sum(r["dice_before"] for r in rows) / len(rows), 4),
        "mean_dice_after": round(sum(r["dice_after"] for r in rows) / len(rows), 4),
        "figure": str(figure), "report": tuned["report"], "pool": str(pool.folder), "store": str(store.root),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _install_base_model(store: ModelStore, settings: DemoSettings) -> str:
    """Copy the starting model into the demo's own store as its first, active version."""
    from VQSegCore.model import load_model

    folder = settings.base_model or shipped_models_dir() / settings.model_name
    if not (folder / "card.json").is_file():
        raise InputError(f"no model to start the demo from in {folder}",
                         "the default model ships in Resources/Models/lung-lesion; check the installation or pass --model-dir")
    model, card = load_model(folder)
    version = store.add_version(settings.model_name, model, training=card.get("training"), metrics=card.get("metrics"),
                                ood_reference=card.get("ood_reference"), status="promoted", reason=f"demo start: {folder}")
    store.activate(settings.model_name, version, reason="demo start")
    return version


def _segment_all(model_dir: Path, cases: list[DemoCase], folder: Path, device: str, reporter, cancel) -> dict:
    """Segment each case inside its ROI; write the label next to the others; Dice against the truth."""
    from VQSegCore.infer import SegmentRequest, segment_volume
    from VQSegCore.model import load_model

    model, card = load_model(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    results = {}
    for index, case in enumerate(cases):
        reporter.progress(f"segment ({folder.name})", index, len(cases))
        image = sitk.ReadImage(str(case.image))
        labels = segment_volume(model, card, image, SegmentRequest(roi=case.roi, device=device), cancel=cancel).labels
        path = write_label_map(labels, image, folder / f"{case.name}.nii.gz", LUNG_TUMOUR)
        truth = sitk.GetArrayViewFromImage(sitk.ReadImage(str(case.label))) > 0
        results[case.name] = {"path": Path(path), "dice": round(dice_score(sitk.GetArrayViewFromImage(labels) > 0, truth), 4)}
    reporter.progress(f"segment ({folder.name})", len(cases), len(cases))
    return results
