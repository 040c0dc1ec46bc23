"""LIDC-IDRI nodule crops as CT in Hounsfield units, a patient split, and dataset specs.

The crop set (../shared/data/lidc, README there) stores 8-bit intensities of an undocumented
window and no pixel spacing. This module
- checks the linear map HU = slope * v + intercept against two tissue peaks found per case
  (lung parenchyma, soft tissue), and writes what it found (`python benchmarks/lidc_data.py`);
- converts every case once to int16 HU NIfTI with an assumed spacing (a cache outside the repo),
  so `vqseg train` and the shipped model's card see ordinary CT;
- splits patients into train/val by a hash of the patient id (stable, no file to keep).

    .venv/bin/python benchmarks/lidc_data.py            # intensity check → results/lidc_intensity.*
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from scipy.ndimage import gaussian_filter1d  # noqa: E402

from benchmarks.report import write_report  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lidc"
DEFAULT_CACHE = Path(__file__).resolve().parents[1] / "benchmarks" / "cache" / "lidc_hu"
HU_SLOPE, HU_INTERCEPT = 8.9, -1010.0
# Not recorded in the crop set: LIDC-IDRI's in-plane pixel spacing is mostly 0.6-0.8 mm and its
# slices mostly 1.25-2.5 mm apart. The model is 2.5D, so the slice spacing only scales mm metrics.
ASSUMED_SPACING_MM = (0.7, 0.7, 1.25)
VAL_FRACTION = 0.2
# Reference attenuation of the two peaks (HU): aerated lung parenchyma and soft tissue/blood.
LUNG_HU, SOFT_TISSUE_HU = -860.0, 40.0
# Independent checks of the map: subcutaneous/mediastinal fat, and air (outside the body, trachea),
# which a CT window starting near -1000 HU saturates at the lowest value.
FAT_HU, AIR_HU = -100.0, -1000.0
FAT_BAND_V = (80, 112)  # where a fat peak can lie between the lung and soft-tissue peaks


def patients(data: Path = DEFAULT_DATA) -> list[str]:
    return list(json.loads((data / "patients.json").read_text())["patients"])


def is_validation_patient(patient: str, fraction: float = VAL_FRACTION) -> bool:
    digest = hashlib.sha256(patient.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def cases_by_patient(data: Path = DEFAULT_DATA) -> dict[str, list[str]]:
    """patient → its case names (file stems such as LIDC-IDRI-0003_nodule-1), in file order."""
    grouped: dict[str, list[str]] = {}
    for path in sorted((data / "images").glob("*.nii.gz")):
        stem = path.name[: -len(".nii.gz")]
        grouped.setdefault(stem.split("_nodule-")[0], []).append(stem)
    return grouped


def to_hu(values: np.ndarray) -> np.ndarray:
    return np.round(values.astype(np.float32) * HU_SLOPE + HU_INTERCEPT).astype(np.int16)


def _with_geometry(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(ASSUMED_SPACING_MM)
    return image


def prepare(data: Path = DEFAULT_DATA, cache: Path = DEFAULT_CACHE) -> Path:
    """Write images (int16 HU) and labels with the assumed spacing into `cache` once; return it."""
    done = cache / "done.json"
    if done.is_file():
        return cache
    for kind in ("images", "labels"):
        (cache / kind).mkdir(parents=True, exist_ok=True)
    for path in sorted((data / "images").glob("*.nii.gz")):
        raw = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        sitk.WriteImage(_with_geometry(to_hu(raw)), str(cache / "images" / path.name), True)
        label = sitk.GetArrayFromImage(sitk.ReadImage(str(data / "labels" / path.name))).astype(np.uint8)
        sitk.WriteImage(_with_geometry(label), str(cache / "labels" / path.name), True)
    done.write_text(json.dumps({"hu": [HU_SLOPE, HU_INTERCEPT], "spacing_mm": ASSUMED_SPACING_MM}))
    return cache


def write_spec(path: Path, cache: Path, labelled: set[str], unlabelled: set[str], val: set[str],
               data: Path = DEFAULT_DATA, name: str | None = None, without_label: set[str] = frozenset()) -> Path:
    """A dataset spec: `labelled` patients with labels, `unlabelled` without, `val` as the val split.

    Cases in `without_label` (e.g. nodules with an empty consensus) are unlabelled in training and left
    out of the val split."""
    cases = []
    for patient, stems in cases_by_patient(data).items():
        for stem in stems:
            image = str(cache / "images" / f"{stem}.nii.gz")
            label = str(cache / "labels" / f"{stem}.nii.gz")
            if patient in val:
                if stem not in without_label:
                    cases.append({"id": stem, "image": image, "label": label, "split": "val"})
            elif patient in labelled and stem in without_label:
                cases.append({"id": stem, "image": image, "split": "train"})
            elif patient in labelled:
                cases.append({"id": stem, "image": image, "label": label, "split": "train"})
            elif patient in unlabelled:
                cases.append({"id": stem, "image": image, "split": "train"})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"name": name or path.stem, "cases": cases}, indent=1))
    return path


# ---- the intensity check --------------------------------------------------------------------
def tissue_peaks(values: np.ndarray) -> tuple[float | None, float | None]:
    """Histogram peaks of one case: the lung peak in v 3..60, the soft-tissue peak in v 80..160."""
    histogram = gaussian_filter1d(np.bincount(values.ravel(), minlength=256).astype(float), 2.0)
    peaks = []
    for low, high in ((3, 60), (80, 160)):
        window = histogram[low:high]
        index = int(np.argmax(window))
        # A real peak, not the window's rising edge, and not a trace (≥ 0.5% of the voxels per bin).
        interior = 0 < index < len(window) - 1
        peaks.append(float(low + index) if interior and window[index] >= 0.005 * values.size else None)
    return peaks[0], peaks[1]


# A fat peak must lie this many values (about 70 HU) below the case's soft-tissue peak: the fat band
# overlaps the lower soft-tissue values, where the soft-tissue peak itself would otherwise be found.
FAT_SEPARATION_V = 8


def fat_peak(values: np.ndarray, soft_tissue: float | None) -> float | None:
    """A histogram peak in the fat band (v 80..112) of one case, where the crop shows fat, else None.

    It must be a real local maximum holding >= 0.5% of the voxels per bin, so the falling flank of the
    lung does not count, and lie FAT_SEPARATION_V below the case's soft-tissue peak (which, when the
    case has none, is not known to be elsewhere: no fat peak then).
    """
    if soft_tissue is None:
        return None
    histogram = gaussian_filter1d(np.bincount(values.ravel(), minlength=256).astype(float), 2.0)
    low, high = FAT_BAND_V
    window = histogram[low:high]
    index = int(np.argmax(window))
    if 0 < index < len(window) - 1 and window[index] >= 0.005 * values.size and low + index <= soft_tissue - FAT_SEPARATION_V:
        return float(low + index)
    return None


def intensity_check(data: Path = DEFAULT_DATA) -> dict:
    lung, soft, fat, lowest, saturated = [], [], [], [], 0
    for path in sorted((data / "images").glob("*.nii.gz")):
        values = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        first, second = tissue_peaks(values)
        if first is not None:
            lung.append(first)
        if second is not None:
            soft.append(second)
        third = fat_peak(values, second)
        if third is not None:
            fat.append(third)
        lowest.append(int(values.min()))
        saturated += int(np.mean(values == 0) >= 0.01)  # >= 1% of the crop at the bottom of the window: air
    lung_v, soft_v = statistics.median(lung), statistics.median(soft)
    slope = (SOFT_TISSUE_HU - LUNG_HU) / (soft_v - lung_v)
    fitted_intercept = LUNG_HU - slope * lung_v

    def quartiles(values):
        q = np.percentile(values, [25, 50, 75])
        return [float(x) for x in q]

    return {
        "cases": len(list((data / "images").glob("*.nii.gz"))),
        "lung_peak_v": {"cases_with_peak": len(lung), "quartiles": quartiles(lung)},
        "soft_tissue_peak_v": {"cases_with_peak": len(soft), "quartiles": quartiles(soft)},
        "fat_peak_v": {"cases_with_peak": len(fat), "quartiles": quartiles(fat) if fat else None,
                       "hu_by_map": HU_SLOPE * statistics.median(fat) + HU_INTERCEPT if fat else None, "reference_hu": FAT_HU},
        "air": {"lowest_value_median": statistics.median(lowest), "cases_with_1pct_at_0": saturated,
                "hu_of_value_0": HU_INTERCEPT, "reference_hu": AIR_HU},
        "suggested_map": {"slope": HU_SLOPE, "intercept": HU_INTERCEPT,
                          "lung_peak_hu": HU_SLOPE * lung_v + HU_INTERCEPT,
                          "soft_tissue_peak_hu": HU_SLOPE * soft_v + HU_INTERCEPT},
        "map_through_reference_peaks": {"slope": slope, "intercept": fitted_intercept,
                                        "reference_hu": {"lung": LUNG_HU, "soft_tissue": SOFT_TISSUE_HU}},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--prepare", type=Path, metavar="CACHE", help="also write the HU cache here")
    args = parser.parse_args(argv)
    found = intensity_check(args.data)
    suggested, fitted = found["suggested_map"], found["map_through_reference_peaks"]
    rows = []
    for tissue, key, hu_key, reference in (("lung parenchyma", "lung_peak_v", "lung_peak_hu", LUNG_HU),
                                           ("soft tissue", "soft_tissue_peak_v", "soft_tissue_peak_hu", SOFT_TISSUE_HU)):
        low, median, high = found[key]["quartiles"]
        rows.append({"tissue": tissue, "peak v: median (IQR)": f"{median:.0f} ({low:.0f}-{high:.0f})",
                     "HU by the map": round(suggested[hu_key]), "reference HU": reference,
                     "cases with a peak": found[key]["cases_with_peak"]})
    fat = found["fat_peak_v"]
    if fat["quartiles"]:
        low, median, high = fat["quartiles"]
        rows.append({"tissue": "fat (independent check)", "peak v: median (IQR)": f"{median:.0f} ({low:.0f}-{high:.0f})",
                     "HU by the map": round(fat["hu_by_map"]), "reference HU": FAT_HU, "cases with a peak": fat["cases_with_peak"]})
    air = found["air"]
    rows.append({"tissue": "air (consistency only: the window's lowest value)", "peak v: median (IQR)": "0 (saturated)",
                 "HU by the map": round(air["hu_of_value_0"]), "reference HU": AIR_HU,
                 "cases with a peak": air["cases_with_1pct_at_0"]})
    found["note"] = (f"{found['cases']} cases. Map used: HU = {HU_SLOPE} v {HU_INTERCEPT:+.0f}. The map through the "
                     f"reference peaks would be HU = {fitted['slope']:.2f} v {fitted['intercept']:+.0f}. Fat and air are "
                     "independent of the fit: fat is a peak between lung and soft tissue, at least "
                     f"{FAT_SEPARATION_V} values below the case's own soft-tissue peak. Air is consistency only: "
                     "crops where at least 1% of the voxels sit at value 0 show that air saturates at the bottom of "
                     "the window, which the map puts at -1010 HU; it bounds the map's lower end, it does not test it.")
    write_report("lidc_intensity", rows, found)
    print(json.dumps(found, indent=1))
    if args.prepare:
        print("prepared", prepare(args.data, args.prepare))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
