"""A tiny phantom dataset (64×64×16 at 3 mm) and its spec, shared by the training tests."""

from __future__ import annotations

import json
from pathlib import Path

import SimpleITK as sitk

from VQSegCore.synth import PhantomSpec, make_chest_ct

DEFAULT_SPLITS = (("a", "train", True), ("b", "train", False), ("c", "val", True))


def make_dataset(folder: Path, splits=DEFAULT_SPLITS) -> Path:
    """Write one phantom per (case id, split, labelled) and a spec naming them; return the spec path."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for seed, (case_id, split, labelled) in enumerate(splits):
        phantom = make_chest_ct(PhantomSpec(size_xy=(64, 64), n_slices=16, spacing=(3, 3, 4), seed=seed, tumour_diameter_mm=30))
        sitk.WriteImage(phantom.image, str(folder / f"{case_id}.nii.gz"))
        entry = {"id": case_id, "image": f"{case_id}.nii.gz", "split": split}
        if labelled:
            sitk.WriteImage(phantom.label, str(folder / f"{case_id}-label.nii.gz"))
            entry["label"] = f"{case_id}-label.nii.gz"
        cases.append(entry)
    spec = folder / "spec.json"
    spec.write_text(json.dumps({"cases": cases}))
    return spec
