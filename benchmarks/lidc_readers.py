"""Reader-level agreement in the LIDC crops: one radiologist against the others, and a model against the same references.

Each case's `readers/` file holds the four radiologists' masks as bits (value = sum of 2^r over the
readers r who marked the voxel); `labels/` is the consensus, >= 2 of 4. For reader k, the reference
is the consensus of the other three (>= 2 of 3). A case is scored at reader level when at least one
reader marked the nodule and the other three agree on a non-empty reference, i.e. when at least three
readers marked it. Its reader score is the mean over those readers of Dice(reader k, others of k);
a model's paired score is the mean of Dice(model, others of k) over the same readers, so both are
judged against the same references. A reader who did not mark a nodule that three others marked is
left out of its reader score (that is how the published reader figure is taken); the model has no such
excuse, its misses count. `reader_score_with_misses` counts such a reader as Dice 0, the stricter bar.
Cases that only one reader marked have an empty consensus: there the reference says "no nodule",
whatever the image shows.

    .venv/bin/python benchmarks/lidc_readers.py      # results/lidc_readers.json and .md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from benchmarks import lidc_data  # noqa: E402
from benchmarks.report import write_report  # noqa: E402
from VQSegCore.atomic import write_json_atomic  # noqa: E402

READERS = 4
AGREEMENT_FILE = "reader_agreement.json"


def reader_masks(stem: str, data: Path = lidc_data.DEFAULT_DATA) -> list[np.ndarray]:
    """The four readers' masks of a case, [z, y, x] booleans."""
    bits = sitk.GetArrayFromImage(sitk.ReadImage(str(data / "readers" / f"{stem}.nii.gz"))).astype(np.uint8)
    return [((bits >> k) & 1).astype(bool) for k in range(READERS)]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def others_consensus(masks: list[np.ndarray], k: int) -> np.ndarray:
    """The consensus of the readers other than k: marked by at least two of the three."""
    return sum(m.astype(np.uint8) for j, m in enumerate(masks) if j != k) >= 2


def references(masks: list[np.ndarray]) -> dict[int, np.ndarray]:
    """reader k → the consensus of the other three, for the readers scored at reader level."""
    out = {}
    for k, mask in enumerate(masks):
        others = others_consensus(masks, k)
        if mask.any() and others.any():
            out[k] = others
    return out


def reader_score(masks: list[np.ndarray]) -> float | None:
    """Mean Dice of each scored reader against the others; None when the case is not scored at reader level."""
    refs = references(masks)
    return float(np.mean([dice(masks[k], ref) for k, ref in refs.items()])) if refs else None


def reader_score_with_misses(masks: list[np.ndarray]) -> float | None:
    """As reader_score, with the readers who did not mark the nodule counted (Dice 0 against the others)."""
    if not references(masks):
        return None
    pairs = [(mask, others_consensus(masks, k)) for k, mask in enumerate(masks)]
    return float(np.mean([dice(mask, others) for mask, others in pairs if others.any()]))


def paired_model_score(prediction: np.ndarray, masks: list[np.ndarray]) -> float | None:
    """The model's mean Dice against the same references as `reader_score`."""
    refs = references(masks)
    return float(np.mean([dice(prediction, ref) for ref in refs.values()])) if refs else None


def agreement(data: Path = lidc_data.DEFAULT_DATA, cache: Path = lidc_data.DEFAULT_CACHE) -> dict[str, dict]:
    """case → readers who marked it, consensus voxels and the reader score; computed once into the cache."""
    path = cache / AGREEMENT_FILE
    if path.is_file():
        table = json.loads(path.read_text())
        if all("reader_score_with_misses" in v for v in table.values()):  # written by this version
            return table
    table = {}
    for stems in lidc_data.cases_by_patient(data).values():
        for stem in stems:
            masks = reader_masks(stem, data)
            table[stem] = {"readers_marked": int(sum(m.any() for m in masks)),
                           "consensus_voxels": int((sum(m.astype(np.uint8) for m in masks) >= 2).sum()),
                           "reader_score": reader_score(masks), "reader_score_with_misses": reader_score_with_misses(masks)}
    cache.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, table)
    return table


def summary(scores: list[float]) -> dict:
    return {"Dice mean": round(float(np.mean(scores)), 4) if scores else None,
            "Dice median": round(float(np.median(scores)), 4) if scores else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=lidc_data.DEFAULT_DATA)
    args = parser.parse_args(argv)
    table = agreement(args.data)
    rows = []
    for group, keep in (("all patients", lambda p: True), ("validation patients", lidc_data.is_validation_patient),
                        ("training patients", lambda p: not lidc_data.is_validation_patient(p))):
        cases = {s: v for s, v in table.items() if keep(s.split("_nodule-")[0])}
        scored = [v["reader_score"] for v in cases.values() if v["reader_score"] is not None]
        strict = [v["reader_score_with_misses"] for v in cases.values() if v["reader_score"] is not None]
        rows.append({"patients": group, "nodules": len(cases),
                     "empty consensus (one reader)": sum(v["consensus_voxels"] == 0 for v in cases.values()),
                     "scored at reader level (>= 3 readers)": len(scored), **summary(scored),
                     "Dice mean, readers who missed it counted": round(float(np.mean(strict)), 4) if strict else None})
    write_report("lidc_readers", rows, {"command": "python benchmarks/lidc_readers.py " + " ".join(argv or sys.argv[1:])})
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
