"""Volume inference: ROI boxes, lung and body crop, slabs, clean-up, OOD score and the memory bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from helpers.images import GEOMETRIES, make_image
from helpers.paths import SHARED_DATA
from VQSegCore.errors import InputError
from VQSegCore.infer import CodeStatistics, IndexBox, RoiRequest, SegmentRequest, ood_score, reference_from_volumes, segment_volume
from VQSegCore.infer.body import body_box, crop_box, lung_box, lung_field, lung_mask, lung_plane_boxes
from VQSegCore.compute import autocast_dtype as resolve_precision
from VQSegCore.infer.engine import normalised_entropy
from VQSegCore.infer.postprocess import keep_components_touching, remove_small_components
from VQSegCore.model import VQSegConfig, build_model
from VQSegCore.io import Geometry
from VQSegCore.model.config import PreprocessingConfig
from VQSegCore.preprocess import model_grid_size, to_model_grid
from VQSegCore.synth import PhantomSpec, make_chest_ct

SMALL = VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16, preprocessing=PreprocessingConfig(spacing_mm=(2.0, 2.0)))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(SMALL).eval()


@pytest.fixture(scope="module")
def phantom():
    return make_chest_ct(PhantomSpec(size_xy=(96, 96), n_slices=20, spacing=(2.0, 2.0, 3.0), seed=2, tumour_diameter_mm=30))


# ---- ROI ---------------------------------------------------------------------------------------
def test_ijk_box_is_inclusive_and_clipped():
    image = make_image(GEOMETRIES["identity"], size=(20, 10, 6))
    box = IndexBox.from_request(image, RoiRequest("ijk", (2, 3, 1), (5, 4, 9)))
    assert box.start == (2, 3, 1) and box.stop == (6, 5, 6)  # k clipped to the image
    assert box.numpy_slices == (slice(1, 6), slice(3, 5), slice(2, 6))


def test_ras_and_lps_name_the_same_box_with_x_and_y_negated():
    image = make_image(GEOMETRIES["negative_axes"], size=(30, 30, 8))
    centre = np.asarray(image.TransformIndexToPhysicalPoint((10, 12, 4)))  # LPS
    half = np.array([2.0, 2.0, 3.0])
    lps = IndexBox.from_request(image, RoiRequest("lps", tuple(centre - half), tuple(centre + half)))
    flip = np.array([-1.0, -1.0, 1.0])
    ras = IndexBox.from_request(image, RoiRequest("ras", tuple((centre - half) * flip), tuple((centre + half) * flip)))
    assert lps == ras
    assert all(a <= c < b for a, c, b in zip(lps.start, (10, 12, 4), lps.stop))
    # voxel centres inside the box only: 2 mm at 0.78 mm spacing → 5 voxels across; 3 mm at 2.5 mm → 3
    assert lps.size == (5, 5, 3)


def test_oblique_box_keeps_the_voxels_whose_centres_it_covers():
    image = make_image(GEOMETRIES["oblique"], size=(16, 16, 8))
    corners = [image.TransformIndexToPhysicalPoint(index) for index in ((3, 4, 2), (9, 11, 5))]
    box = IndexBox.from_request(image, RoiRequest("lps", corners[0], corners[1]))
    assert all(a <= lo and hi < b for a, b, lo, hi in zip(box.start, box.stop, (3, 4, 2), (9, 11, 5)))


def test_box_outside_the_image_is_an_input_error():
    image = make_image(GEOMETRIES["identity"], size=(10, 10, 4))
    with pytest.raises(InputError, match="outside the image"):
        IndexBox.from_request(image, RoiRequest("lps", (100, 100, 100), (120, 120, 120)))
    with pytest.raises(InputError, match="whole numbers"):
        IndexBox.from_request(image, RoiRequest("ijk", (0.5, 0, 0), (3, 3, 3)))
    with pytest.raises(InputError, match="finite"):
        RoiRequest("ras", (float("nan"), 0, 0), (1, 1, 1))


# ---- crop ----------------------------------------------------------------------------------------
def test_lung_and_body_boxes_hold_the_tumour_and_drop_air(phantom):
    truth = sitk.GetArrayViewFromImage(phantom.label)
    body, source = crop_box(phantom.image, "body")
    lungs, lung_source = crop_box(phantom.image, "auto")
    assert (source, lung_source) == ("body", "lungs")
    assert lungs.voxels < body.voxels < np.prod(phantom.image.GetSize())
    for box in (body, lungs):
        inside = np.zeros(truth.shape, dtype=bool)
        inside[box.numpy_slices] = True
        assert truth.sum() > 0 and not np.any(truth[~inside])
    air = sitk.Image(40, 40, 8, sitk.sitkInt16) - 1000
    assert body_box(air) is None and lung_box(air) is None
    assert crop_box(air, "auto") == (IndexBox.whole(air), "whole image")
    assert crop_box(phantom.image, "none")[1] == "whole image"


def test_lung_box_of_a_real_ct_holds_every_lung_lobe():
    ct_path, seg_path = SHARED_DATA / "ct" / "example_ct_sm.nii.gz", SHARED_DATA / "ct" / "example_seg.nii.gz"
    if not ct_path.exists():
        pytest.skip(f"real CT not present at {ct_path}")
    ct, seg = sitk.ReadImage(str(ct_path)), sitk.GetArrayFromImage(sitk.ReadImage(str(seg_path)))
    box, source = crop_box(ct, "auto")
    assert source == "lungs" and box.voxels < 0.8 * np.prod(ct.GetSize())
    lobes = np.isin(seg, (10, 11, 12, 13, 14))  # the lung lobes of this (model-made) multi-organ label map
    inside = np.zeros(seg.shape, dtype=bool)
    inside[box.numpy_slices] = True
    assert lobes.sum() > 1000 and not np.any(lobes & ~inside)


# ---- the whole path ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["identity", "negative_axes", "oblique", "anisotropic_flipped_z"])
def test_outputs_lie_on_the_inputs_grid_bit_for_bit(model, name):
    image = make_image(GEOMETRIES[name], size=(24, 20, 9))
    result = segment_volume(model, {}, image, SegmentRequest(uncertainty="entropy", probabilities=True, device="cpu"))
    for output in (result.labels, result.uncertainty, result.probabilities):
        assert output.GetSize() == image.GetSize()
        assert output.GetSpacing() == image.GetSpacing() and output.GetOrigin() == image.GetOrigin()
        assert output.GetDirection() == image.GetDirection()
    uncertainty = sitk.GetArrayViewFromImage(result.uncertainty)
    assert uncertainty.min() >= 0.0 and uncertainty.max() <= 1.0 + 1e-6


def test_slabs_give_the_same_answer_as_one_pass(model, phantom):
    whole = segment_volume(model, {}, phantom.image, SegmentRequest(probabilities=True, slab_slices=0, crop="body", device="cpu"))
    slabs = segment_volume(model, {}, phantom.image, SegmentRequest(probabilities=True, slab_slices=6, crop="body", device="cpu"))
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(slabs.probabilities), sitk.GetArrayViewFromImage(whole.probabilities), atol=1e-5)
    assert whole.region_source == "body"


def test_lung_slabs_take_narrower_fields_near_apex_and_base(model):
    phantom = make_chest_ct(PhantomSpec(size_xy=(96, 96), n_slices=80, spacing=(3.5, 3.5, 3.0), seed=2, tumour_diameter_mm=30))
    region, source = crop_box(phantom.image, "lungs")
    ranges = [(start, min(region.size[2], start + 8)) for start in range(0, region.size[2], 8)]
    boxes = lung_plane_boxes(phantom.image, region, ranges)
    assert source == "lungs" and len(boxes) == len(ranges)
    areas = [box.size[0] * box.size[1] for box in boxes]
    assert max(areas) <= region.size[0] * region.size[1] and min(areas) < max(areas)
    assert all((box.start[2], box.stop[2]) == r for box, r in zip(boxes, ranges))
    result = segment_volume(model, {}, phantom.image, SegmentRequest(slab_slices=8, uncertainty="entropy", device="cpu"))
    assert result.region_source == "lungs" and result.labels.GetSize() == phantom.image.GetSize()
    assert any("without an ROI" in w and "lungs' bounding box" in w for w in result.warnings)
    assert set(result.report()["removed"]) == {"outside_lungs"}  # the lung filter ran
    # every voxel of the truth lies in a processed field (uncertainty > 0 there)
    truth = sitk.GetArrayViewFromImage(phantom.label) > 0
    assert np.all(sitk.GetArrayViewFromImage(result.uncertainty)[truth] > 0)


def test_roi_run_leaves_everything_outside_the_box_background(model, phantom):
    roi = RoiRequest("ijk", (30, 30, 5), (60, 60, 12))
    result = segment_volume(model, {}, phantom.image, SegmentRequest(roi=roi, uncertainty="entropy", device="cpu"))
    labels, uncertainty = sitk.GetArrayViewFromImage(result.labels), sitk.GetArrayViewFromImage(result.uncertainty)
    outside = np.ones(labels.shape, dtype=bool)
    outside[result.region.numpy_slices] = False
    assert result.region.size == (31, 31, 8) and result.region_source == "roi"
    assert not any("without an ROI" in w for w in result.warnings)
    assert not labels[outside].any() and not uncertainty[outside].any()
    assert uncertainty[~outside].max() > 0


def test_2p5d_model_in_slabs_matches_one_pass(phantom):
    config = VQSegConfig(unet_base_width=4, unet_depth=2, codebook_size=16,
                         preprocessing=PreprocessingConfig(spacing_mm=(2.0, 2.0), context_slices=1))
    torch.manual_seed(1)
    net = build_model(config).eval()
    whole = segment_volume(net, {}, phantom.image, SegmentRequest(probabilities=True, slab_slices=0, crop="body", device="cpu"))
    slabs = segment_volume(net, {}, phantom.image, SegmentRequest(probabilities=True, slab_slices=4, crop="body", device="cpu"))
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(slabs.probabilities), sitk.GetArrayViewFromImage(whole.probabilities), atol=1e-5)


def test_memory_bound_refuses_before_any_work(model):
    image = make_image(GEOMETRIES["identity"], size=(64, 64, 32))
    with pytest.raises(InputError, match="GB"):
        segment_volume(model, {}, image, SegmentRequest(memory_limit_gb=0.001, device="cpu"))


def test_memory_estimate_counts_the_upsampling_to_the_model_grid(model):
    """A coarse volume is upsampled to the model's spacing (here ~13x per in-plane axis): the estimate must see it."""
    image = make_image(dict(spacing=(19.5, 19.5, 19.5), origin=(0.0, 0.0, 0.0), direction=np.eye(3)), size=(64, 64, 8))
    spacing = model.config.preprocessing.spacing_mm
    assert model_grid_size(Geometry.of(image), spacing)[:2] == tuple(math.ceil(64 * 19.5 / s - 1e-6) for s in spacing)
    with pytest.raises(InputError, match=r"needs about 0\.\d GB, above the 0\.05 GB"):
        segment_volume(model, {}, image, SegmentRequest(memory_limit_gb=0.05, device="cpu", crop="none"))


def test_model_grid_size_matches_the_grid_to_model_grid_makes():
    preprocessing = PreprocessingConfig(spacing_mm=(0.8, 1.1))
    for name, geometry in GEOMETRIES.items():
        image = make_image(geometry, size=(13, 9, 5))
        assert model_grid_size(Geometry.of(image), preprocessing.spacing_mm) == to_model_grid(image, preprocessing).model.size, name


def test_vector_image_does_not_fit_the_model(model):
    image = sitk.Image([8, 8, 4], sitk.sitkVectorFloat32, 3)
    with pytest.raises(InputError, match="scalar"):
        segment_volume(model, {}, image, SegmentRequest(device="cpu"))


# ---- parts -------------------------------------------------------------------------------------
def test_small_components_are_removed_per_class():
    labels = np.zeros((6, 20, 20), dtype=np.uint8)
    labels[1:5, 2:10, 2:10] = 1  # 256 voxels
    labels[0, 15, 15] = 1  # a speck
    labels[3, 15:17, 15:17] = 2  # 4 voxels of another class
    cleaned, removed = remove_small_components(labels, (1.0, 1.0, 1.0), min_ml=0.01, values=(1, 2))  # 10 voxels
    assert removed == {1: 1, 2: 1}
    assert cleaned[0, 15, 15] == 0 and not (cleaned == 2).any() and (cleaned == 1).sum() == 256
    assert remove_small_components(labels, (1.0, 1.0, 1.0), 0.0, (1, 2))[0] is labels


def test_findings_that_touch_no_field_are_removed_whole():
    labels = np.zeros((6, 20, 20), dtype=np.uint8)
    labels[1:5, 2:10, 2:10] = 1  # touches the field at one corner only: kept whole
    labels[2:4, 14:18, 14:18] = 1  # outside: removed
    labels[0, 0, 19] = 2  # another class, outside: removed
    labels[4, 10, 10] = 2  # another class, but part of the finding that touches the field: kept
    field = np.zeros(labels.shape, dtype=bool)
    field[1, 2, 2] = True
    cleaned, removed = keep_components_touching(labels, field, values=(1, 2))
    assert removed == 2
    assert (cleaned == 1).sum() == 256 and not cleaned[2:4, 14:18, 14:18].any() and cleaned[0, 0, 19] == 0 and cleaned[4, 10, 10] == 2
    with pytest.raises(ValueError, match="shape"):
        keep_components_touching(labels, field[:-1], values=(1,))


def test_lung_field_keeps_the_tumour_and_drops_findings_away_from_the_lungs(phantom):
    region, _ = crop_box(phantom.image, "lungs")
    field = lung_field(lung_mask(phantom.image), region, phantom.image.GetSpacing())
    assert field.shape == tuple(reversed(region.size)) and 0.2 < field.mean() < 0.8
    labels = (sitk.GetArrayFromImage(phantom.label)[region.numpy_slices] > 0).astype(np.uint8)
    tumour = int(labels.sum())
    labels[8:12, :3, :3] = 1  # at the region's corner, in the chest wall beyond the lungs
    cleaned, removed = keep_components_touching(labels, field, values=(1,))
    assert removed == 1 and int(cleaned.sum()) == tumour > 0  # the juxtapleural tumour stays whole
    # The margin decides: without it a tumour against the pleura would not count as the lungs'.
    assert lung_field(lung_mask(phantom.image), region, phantom.image.GetSpacing(), margin_mm=0.0).sum() < field.sum()


def test_windows_far_from_the_lungs_are_skipped_without_changing_the_lungs(model, phantom):
    """Without an ROI the engine computes only windows that hold lung field; inside the field nothing changes."""
    request = dict(window=16, probabilities=True, slab_slices=8, device="cpu")
    skipping = segment_volume(model, {}, phantom.image, SegmentRequest(**request))
    everything = segment_volume(model, {}, phantom.image, SegmentRequest(**request, lungs_only=False))
    assert skipping.region == everything.region and skipping.region_source == "lungs"
    field = lung_field(lung_mask(phantom.image), skipping.region, phantom.image.GetSpacing())
    inside = sitk.GetArrayViewFromImage(skipping.probabilities)[skipping.region.numpy_slices][field]
    np.testing.assert_allclose(inside, sitk.GetArrayViewFromImage(everything.probabilities)[everything.region.numpy_slices][field],
                               atol=1e-5)
    assert skipping.codes.tokens < everything.codes.tokens  # fewer windows went through the model


def _codes(counts) -> CodeStatistics:
    return CodeStatistics(np.asarray(counts, dtype=np.int64), distance_sum=float(np.sum(counts)))


def test_ood_score_compares_code_usage_with_the_training_volumes():
    rng = np.random.default_rng(0)
    usual = np.r_[np.full(40, 1.0), np.zeros(24)]  # training volumes use codes 0..39
    training = [_codes(rng.multinomial(2000, usual / usual.sum())) for _ in range(6)]
    reference = reference_from_volumes(training)
    assert reference["volumes"] == 6 and sum(reference["histogram"]) == 12000
    typical = ood_score(_codes(rng.multinomial(3000, usual / usual.sum())), reference)
    assert typical.warning is None and typical.excess < reference["threshold"]
    other = np.r_[np.zeros(40), np.full(24, 1.0)]  # codes training never used
    odd = ood_score(_codes(rng.multinomial(3000, other / other.sum())), reference)
    assert odd.warning and "unlike the model's training data" in odd.warning and odd.ratio > 1
    # a small sample of the usual codes differs by chance; the expected divergence absorbs that
    small = ood_score(_codes(rng.multinomial(60, usual / usual.sum())), reference)
    assert small.divergence > typical.divergence and small.warning is None
    assert ood_score(_codes(rng.multinomial(100, usual / usual.sum())), None) is None
    with pytest.raises(ValueError):
        reference_from_volumes([])


def test_entropy_and_precision_rules():
    assert normalised_entropy(np.array([[1.0], [0.0]]))[0] == pytest.approx(0.0, abs=1e-5)
    assert normalised_entropy(np.full((4, 1), 0.25))[0] == pytest.approx(1.0, abs=1e-5)
    assert resolve_precision("fp32", torch.device("cpu")) is None
    assert resolve_precision("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision("fp16", torch.device("cpu"))


def test_nan_voxels_are_segmented_as_background_and_reported(model):
    array = np.random.default_rng(0).normal(0, 100, (6, 32, 32)).astype(np.float32)
    clean = sitk.GetImageFromArray(array)
    array[2, 5:9, 5:9] = np.nan
    array[4, 0, 0] = np.inf
    dirty = sitk.GetImageFromArray(array)
    request = SegmentRequest(device="cpu", crop="none", window=0, probabilities=True)
    result = segment_volume(model, {}, dirty, request)
    nan_warnings = [w for w in result.warnings if "without an ROI" not in w]
    assert len(nan_warnings) == 1 and "17 voxels in 2 slice(s)" in nan_warnings[0]
    assert result.report()["warnings"] == result.warnings
    probabilities = sitk.GetArrayViewFromImage(result.probabilities)
    assert np.isfinite(probabilities).all()
    # slices without NaN are as they would be without any
    reference = sitk.GetArrayFromImage(segment_volume(model, {}, clean, request).probabilities)  # a copy: the image is temporary
    np.testing.assert_allclose(probabilities[[0, 1, 3, 5]], reference[[0, 1, 3, 5]], atol=1e-5)
    assert not any("not a number" in w for w in segment_volume(model, {}, clean, request).warnings)


def test_one_owner_decides_the_device():
    from VQSegCore.compute import resolve_device, wants_cuda

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device"):
            wants_cuda("cuda")
        assert resolve_device("auto", index=3) == torch.device("cpu")  # a rank's GPU index means nothing on the CPU


def test_the_lung_filter_in_the_segment_path_equals_filtering_the_whole_region(model, phantom):
    """segment_volume filters only the box around the findings; the answer is that of the whole region."""
    kept = segment_volume(model, {}, phantom.image, SegmentRequest(window=0, device="cpu"))
    raw = segment_volume(model, {}, phantom.image, SegmentRequest(window=0, device="cpu", lungs_only=False))
    labels = sitk.GetArrayFromImage(raw.labels)[raw.region.numpy_slices]
    assert labels.any()  # the random model marks something: the filter has work to do
    expected, removed = keep_components_touching(labels, lung_field(lung_mask(phantom.image), raw.region, phantom.image.GetSpacing()), (1,))
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(kept.labels)[kept.region.numpy_slices], expected)
    assert kept.removed["outside_lungs"]["findings"] == removed
