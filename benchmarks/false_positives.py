"""False positives: what a lung-lesion model marks on chest CT without any tumour, without an ROI.

Volumes: the example CTs of ../shared/data/ct (real CT, no tumour; 3 mm and its 30-slice crop) and
synthetic chests without a tumour (`vqseg synth --no-tumour`, two seeds). Each goes through the
path of `vqseg segment` without an ROI (the lungs' bounding box; findings that touch no lung are
removed, `lungs_only`), in-process. Per volume: mL and findings (26-connected components) kept,
and what the lung filter removed, so the table shows the volume with and without it.

    .venv/bin/python benchmarks/false_positives.py [--model-dir DIR] [--threads 2]
        # writes results/false_positives.json and .md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage  # noqa: E402

from benchmarks.report import write_report  # noqa: E402
from VQSegCore.infer.segment import SegmentRequest, segment_volume  # noqa: E402
from VQSegCore.model.persistence import load_model  # noqa: E402
from VQSegCore.models.locate import locate_model  # noqa: E402
from VQSegCore.synth import PhantomSpec, make_chest_ct  # noqa: E402

DEFAULT_CT = ROOT.parent / "shared" / "data" / "ct"
SYNTHETIC = dict(size_xy=(256, 256), n_slices=48, spacing=(1.4, 1.4, 3.0), tumour=False)
SYNTHETIC_SEEDS = (1, 2)


def volumes(ct_folder: Path):
    for name in ("example_ct.nii.gz", "example_ct_sm.nii.gz"):
        path = ct_folder / name
        if path.is_file():
            yield f"real CT: {name}", sitk.ReadImage(str(path))
    for seed in SYNTHETIC_SEEDS:
        yield f"synthetic chest, no tumour, seed {seed}", make_chest_ct(PhantomSpec(**SYNTHETIC, seed=seed)).image


def findings(labels: sitk.Image) -> int:
    return int(ndimage.label(sitk.GetArrayViewFromImage(labels) > 0, structure=np.ones((3, 3, 3), bool))[1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a model of the store or a shipped default (default: lung-lesion)")
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--ct", type=Path, default=DEFAULT_CT, help="folder of the example CTs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="false_positives", help="results file name")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = locate_model(args.model, args.model_dir)
    model, card = load_model(folder)

    rows = []
    for name, image in volumes(args.ct):
        started = time.perf_counter()
        result = segment_volume(model, card, image, SegmentRequest(device="cpu"))
        seconds = time.perf_counter() - started
        kept_ml = sum(c["ml"] for c in result.classes)
        outside = result.removed.get("outside_lungs", {"findings": 0, "ml": 0.0})
        rows.append({"volume": name, "size": "×".join(map(str, image.GetSize())),
                     "spacing mm": "×".join(f"{s:g}" for s in image.GetSpacing()), "region": result.region_source,
                     "marked mL": round(kept_ml, 2), "findings": findings(result.labels),
                     "without the lung filter mL": round(kept_ml + outside["ml"], 2),
                     "removed findings": outside["findings"], "seconds": round(seconds, 1)})
        print(rows[-1], flush=True)
    meta = {"model": str(folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder),
            "model_card_training": card.get("training", {}).get("iterations"),
            "synthetic": {**{k: list(v) if isinstance(v, tuple) else v for k, v in SYNTHETIC.items()}, "seeds": list(SYNTHETIC_SEEDS)},
            "threads": args.threads,
            "note": "No volume holds a tumour: every marked mL is a false positive. Path of vqseg segment without an ROI."}
    write_report(args.name, rows, meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
