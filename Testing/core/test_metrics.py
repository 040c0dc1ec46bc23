"""Metrics: Dice/Jaccard on constructed boxes, HD95/ASD in mm on anisotropic and oblique grids, empty masks, summaries."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.images import GEOMETRIES
from VQSegCore.classes import ClassTable, SegmentClass
from VQSegCore.metrics import (
    ClassMetrics,
    binary_metrics,
    image_metrics,
    summarize,
    surface_distances_mm,
    union_box,
    unexpected_values,
    volume_metrics,
)

TWO_CLASSES = ClassTable((
    SegmentClass(1, "tumour", "Tumour", (1.0, 0.0, 0.0)),
    SegmentClass(3, "node", "Lymph node", (0.0, 1.0, 0.0)),
))


def box(shape, z, y, x) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[z[0]:z[1], y[0]:y[1], x[0]:x[1]] = True
    return mask


def plate(shape=(12, 20, 20), z=3, y=(5, 15), x=(5, 15)) -> np.ndarray:
    """One slice thick: every voxel is a surface voxel, so distances are easy to work out by hand."""
    return box(shape, (z, z + 1), y, x)


def image(array: np.ndarray, geometry: dict) -> sitk.Image:
    result = sitk.GetImageFromArray(array.astype(np.uint8))
    result.SetSpacing(geometry["spacing"])
    result.SetOrigin(geometry["origin"])
    result.SetDirection(tuple(np.asarray(geometry["direction"], dtype=float).ravel()))
    return result


# ---- Dice and Jaccard ---------------------------------------------------------------------------

def test_half_overlapping_boxes_give_dice_half_and_jaccard_third():
    label = box((10, 20, 30), (0, 10), (0, 10), (0, 10))
    prediction = box((10, 20, 30), (0, 10), (0, 10), (5, 15))  # 500 of 1000 voxels shared
    result = binary_metrics(prediction, label, (1.0, 1.0, 1.0))
    assert result.status == "ok"
    assert result.dice == pytest.approx(0.5) and result.jaccard == pytest.approx(1 / 3)


def test_box_inside_box():
    label = box((12, 12, 12), (1, 11), (1, 11), (1, 11))  # 1000 voxels
    prediction = box((12, 12, 12), (3, 8), (3, 8), (3, 8))  # 125 voxels, all inside
    result = binary_metrics(prediction, label, (2.0, 1.0, 0.5))
    assert result.dice == pytest.approx(250 / 1125) and result.jaccard == pytest.approx(125 / 1000)
    assert (result.label_voxels, result.prediction_voxels) == (1000, 125)
    assert result.label_ml == pytest.approx(1000 * 2.0 * 1.0 * 0.5 / 1000)
    assert result.prediction_ml == pytest.approx(125 * 1.0 / 1000)


def test_identical_masks_are_perfect():
    label = box((8, 9, 10), (2, 6), (2, 7), (1, 9))
    result = binary_metrics(label, label, (3.0, 0.8, 0.8))
    assert (result.status, result.dice, result.jaccard, result.hd95_mm, result.asd_mm) == ("ok", 1.0, 1.0, 0.0, 0.0)


# ---- distances in millimetres ------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 2, 3])
def test_plates_offset_along_z_are_k_slices_apart(k):
    label = plate(z=3)
    prediction = plate(z=3 + k)
    result = binary_metrics(prediction, label, (5.0, 0.7, 0.9))  # [z, y, x]: 5 mm slices
    assert result.hd95_mm == pytest.approx(5.0 * k) and result.asd_mm == pytest.approx(5.0 * k)
    assert result.dice == 0.0 and result.status == "ok"


@pytest.mark.parametrize("k", [1, 2])
def test_flat_boxes_offset_along_z_give_hd95_of_k_slices(k):
    # The whole bottom face of each box (over 40 % of its surface) lies k slices from the other box.
    label = box((16, 30, 30), (4, 8), (5, 25), (5, 25))
    prediction = np.roll(label, k, axis=0)
    assert binary_metrics(prediction, label, (5.0, 0.7, 0.7)).hd95_mm == pytest.approx(5.0 * k)


@pytest.mark.parametrize("axis, spacing_mm", [(2, 0.7), (1, 0.9)])
def test_in_plane_shift_by_one_voxel_uses_that_axis_spacing(axis, spacing_mm):
    # A 10 × 10 plate moved one voxel: one column of 10 voxels out of 100 is one voxel away, the rest 0 mm,
    # in both directions. HD95 = one voxel (10 % > 5 % of the distances), ASD = spacing / 10.
    label = plate()
    prediction = np.roll(label, 1, axis=axis)
    result = binary_metrics(prediction, label, (5.0, 0.9, 0.7))
    assert result.hd95_mm == pytest.approx(spacing_mm)
    assert result.asd_mm == pytest.approx(spacing_mm / 10)


def _brute_force_hd95_asd(prediction: sitk.Image, label: sitk.Image) -> tuple[float, float]:
    """Reference for single-slice masks (all voxels are surface voxels), in physical LPS millimetres."""
    def points(img):
        return np.array([img.TransformIndexToPhysicalPoint([int(i) for i in index[::-1]])
                         for index in np.argwhere(sitk.GetArrayFromImage(img) > 0)])

    p, q = points(prediction), points(label)
    distances = np.linalg.norm(p[:, None, :] - q[None, :, :], axis=2)
    p_to_q, q_to_p = distances.min(axis=1), distances.min(axis=0)
    hd95 = max(np.percentile(p_to_q, 95), np.percentile(q_to_p, 95))
    return float(hd95), float(np.concatenate([p_to_q, q_to_p]).mean())


@pytest.mark.parametrize("name", ["oblique", "anisotropic_flipped_z", "oblique_negative", "negative_axes"])
def test_distances_on_real_scanner_geometries_match_physical_space(name):
    # An irregular one-slice blob and a copy moved by (2, 1, 3) voxels along (z, y, x): every axis
    # contributes, so a swapped spacing order or an ignored spacing gives other millimetres.
    shape = (10, 24, 24)
    zz, yy, xx = np.ogrid[:1, :24, :24]
    blob = ((yy - 10) ** 2 / 30 + (xx - 9) ** 2 / 12 <= 1) | ((yy - 14 <= 0) & (xx - 13 >= 0) & (xx < 17) & (yy > 7))
    label_array = np.zeros(shape, np.uint8)
    label_array[3] = blob[0]
    prediction_array = np.roll(label_array, (2, 1, 3), axis=(0, 1, 2))
    label, prediction = image(label_array, GEOMETRIES[name]), image(prediction_array, GEOMETRIES[name])

    result = image_metrics(prediction, label, ClassTable((SegmentClass(1, "tumour", "Tumour", (1, 0, 0)),)))["tumour"]
    hd95, asd = _brute_force_hd95_asd(prediction, label)
    assert result.hd95_mm == pytest.approx(hd95, rel=1e-5)
    assert result.asd_mm == pytest.approx(asd, rel=1e-5)
    assert result.asd_mm > 0


def test_image_metrics_reverses_simpleitk_spacing():
    # SimpleITK spacing is (x, y, z); 5 mm slices must be applied to the z axis of the [z, y, x] array.
    geometry = GEOMETRIES["anisotropic_flipped_z"]  # spacing (0.6, 0.6, 5.0)
    label = plate(z=2)
    result = image_metrics(image(plate(z=4), geometry), image(label, geometry), ClassTable((SegmentClass(1, "t", "T", (1, 0, 0)),)))["t"]
    assert result.hd95_mm == pytest.approx(10.0) and result.asd_mm == pytest.approx(10.0)
    assert result.label_ml == pytest.approx(100 * 0.6 * 0.6 * 5.0 / 1000)


# ---- empty masks --------------------------------------------------------------------------------

def test_both_empty_is_a_perfect_score():
    empty = np.zeros((5, 6, 7), bool)
    result = binary_metrics(empty, empty, (1.0, 1.0, 1.0))
    assert (result.status, result.dice, result.jaccard, result.hd95_mm, result.asd_mm) == ("both_empty", 1.0, 1.0, 0.0, 0.0)
    assert result.label_voxels == result.prediction_voxels == 0


def test_empty_prediction_is_a_miss_without_distance():
    label = box((5, 6, 7), (1, 3), (1, 3), (1, 3))
    result = binary_metrics(np.zeros_like(label), label, (1.0, 1.0, 1.0))
    assert (result.status, result.dice, result.jaccard) == ("missed", 0.0, 0.0)
    assert math.isnan(result.hd95_mm) and math.isnan(result.asd_mm)
    assert result.label_voxels == 8 and result.prediction_voxels == 0


def test_prediction_without_label_is_a_false_positive_without_distance():
    prediction = box((5, 6, 7), (1, 3), (1, 3), (1, 3))
    result = binary_metrics(prediction, np.zeros_like(prediction), (1.0, 1.0, 1.0))
    assert (result.status, result.dice, result.jaccard) == ("false_positive", 0.0, 0.0)
    assert math.isnan(result.hd95_mm) and math.isnan(result.asd_mm)
    assert result.prediction_ml == pytest.approx(0.008)


# ---- cropping -----------------------------------------------------------------------------------

def test_union_box_grows_by_the_margin_and_stops_at_the_border():
    a = box((10, 10, 10), (0, 2), (4, 5), (6, 9))
    b = box((10, 10, 10), (1, 3), (5, 6), (8, 10))
    assert union_box(a, b, 2) == (slice(0, 5), slice(2, 8), slice(4, 10))
    assert union_box(a, b, 0) == (slice(0, 3), slice(4, 6), slice(6, 10))
    assert union_box(np.zeros((3, 3, 3), bool), np.zeros((3, 3, 3), bool), 2) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cropping_does_not_change_distances(seed):
    # Random blobs, some touching the volume's faces, scored with and without the crop.
    rng = np.random.default_rng(seed)
    shape = (20, 40, 40)
    label = np.zeros(shape, bool)
    prediction = np.zeros(shape, bool)
    for mask in (label, prediction):
        for _ in range(4):
            centre = rng.integers(0, shape)
            radius = rng.uniform(2, 7)
            zz, yy, xx = np.ogrid[:shape[0], :shape[1], :shape[2]]
            mask |= ((zz - centre[0]) * 2.5) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius ** 2
    spacing = (2.5, 0.8, 1.1)
    cropped = binary_metrics(prediction, label, spacing)
    padded = [np.pad(mask, 5) for mask in (prediction, label)]
    assert (cropped.hd95_mm, cropped.asd_mm) == pytest.approx(surface_distances_mm(*padded, spacing), rel=1e-6)
    assert (cropped.hd95_mm, cropped.asd_mm) == pytest.approx(surface_distances_mm(prediction, label, spacing), rel=1e-6)


def test_large_volume_is_fast():
    # 512 × 512 × 300 at 0.7 × 0.7 × 1.5 mm with a 5 cm tumour: the crop keeps this well under a second
    # (without it MONAI works on the whole volume, about 5 s on 2 cores).
    shape = (300, 512, 512)
    zz, yy, xx = np.ogrid[-20:21, -38:39, -38:39]
    ball = (zz * 1.5) ** 2 + (yy * 0.7) ** 2 + (xx * 0.7) ** 2 <= 25.0 ** 2
    label = np.zeros(shape, np.uint8)
    prediction = np.zeros(shape, np.uint8)
    label[130:171, 218:295, 162:239] = ball
    prediction[132:173, 220:297, 162:239] = ball
    classes = ClassTable((SegmentClass(1, "tumour", "Tumour", (1, 0, 0)),))
    # Warm up on the full volume: in a long test run the first call also pays for imports and for
    # faulting in fresh pages of these 80 MB arrays (measured up to 3.4 s), which is not what is timed.
    volume_metrics(prediction, label, (1.5, 0.7, 0.7), classes)
    started = time.perf_counter()
    result = volume_metrics(prediction, label, (1.5, 0.7, 0.7), classes)["tumour"]
    seconds = time.perf_counter() - started
    assert result.status == "ok" and 0.8 < result.dice < 1.0 and result.hd95_mm > 0
    assert seconds < 3.0, f"took {seconds:.1f} s"


# ---- label maps and summaries -------------------------------------------------------------------

def test_volume_metrics_scores_each_class_of_the_table():
    label = np.zeros((6, 10, 10), np.uint8)
    prediction = np.zeros_like(label)
    label[1:3, 1:5, 1:5] = 1
    prediction[1:3, 1:5, 1:5] = 1
    label[4:6, 6:9, 6:9] = 3  # the node is missed
    results = volume_metrics(prediction, label, (1.0, 1.0, 1.0), TWO_CLASSES)
    assert list(results) == ["tumour", "node"]
    assert results["tumour"].dice == 1.0 and results["node"].status == "missed"


def test_values_outside_the_class_table_are_refused():
    label = np.zeros((3, 4, 4), np.int16)
    label[0, 0, 0], label[1, 1, 1], label[2, 2, 2] = 1, 7, -2
    assert unexpected_values(label, TWO_CLASSES) == [-2, 7]
    assert unexpected_values(np.zeros((2, 2, 2), np.uint8), TWO_CLASSES) == []
    with pytest.raises(ValueError, match=r"label values \[-2, 7\]"):
        volume_metrics(np.zeros_like(label), label, (1.0, 1.0, 1.0), TWO_CLASSES)


def _scores(status, dice, hd95, asd) -> ClassMetrics:
    return ClassMetrics(status, dice, dice, hd95, asd, 10, 10, 0.01, 0.01)


def test_summary_counts_failures_and_leaves_undefined_distances_out():
    volumes = [
        {"tumour": _scores("ok", 0.8, 4.0, 1.0), "node": _scores("ok", 0.6, 2.0, 1.0)},
        {"tumour": _scores("ok", 0.6, 6.0, 3.0), "node": _scores("false_positive", 0.0, math.nan, math.nan)},
        {"tumour": _scores("missed", 0.0, math.nan, math.nan), "node": _scores("both_empty", 1.0, 0.0, 0.0)},
    ]
    summary = summarize(volumes, TWO_CLASSES)
    tumour, node = summary["classes"]["tumour"], summary["classes"]["node"]
    assert summary["volumes"] == 3
    assert tumour["dice"]["mean"] == pytest.approx(1.4 / 3)  # the miss counts as Dice 0
    assert tumour["dice"]["median"] == pytest.approx(0.6) and tumour["dice"]["n"] == 3
    assert tumour["hd95_mm"] == pytest.approx({"mean": 5.0, "median": 5.0, "std": 1.0, "n": 2})  # not 0 mm for the miss
    assert tumour["asd_mm"]["mean"] == pytest.approx(2.0)
    assert (tumour["missed"], tumour["false_positive"], tumour["both_empty"], tumour["ok"], tumour["failures"]) == (1, 0, 0, 2, 1)
    assert (node["missed"], node["false_positive"], node["both_empty"], node["failures"]) == (0, 1, 1, 1)
    assert node["hd95_mm"]["mean"] == pytest.approx(1.0) and node["hd95_mm"]["n"] == 2
    overall = summary["mean_over_classes"]
    assert overall["dice"] == pytest.approx((1.4 / 3 + 1.6 / 3) / 2)
    assert overall["hd95_mm"] == pytest.approx((5.0 + 1.0) / 2)
    assert overall["failures"] == 2 and overall["missed"] == 1 and overall["false_positive"] == 1


def test_summary_of_only_misses_has_no_distance():
    summary = summarize([{"tumour": _scores("missed", 0.0, math.nan, math.nan)}], ClassTable((SegmentClass(1, "tumour", "T", (1, 0, 0)),)))
    assert summary["classes"]["tumour"]["hd95_mm"]["n"] == 0
    assert math.isnan(summary["classes"]["tumour"]["hd95_mm"]["mean"])
    assert math.isnan(summary["mean_over_classes"]["hd95_mm"])
