"""VQSegCore.preprocess: the volume ↔ model slice grid mapping (docs/architecture.md §3.2)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.images import GEOMETRIES, make_image
from VQSegCore.model.config import PreprocessingConfig
from VQSegCore.preprocess import (
    crop_from_padding,
    from_model_grid,
    intensity_transform,
    label_to_model_grid,
    pad_to_multiple,
    probabilities_to_label,
    slice_stack,
    to_model_grid,
)
from VQSegCore.synth import PhantomSpec, make_chest_ct

PERMUTED = ("negative_axes", "anisotropic_flipped_z")
OBLIQUE = ("oblique", "oblique_negative")
# x and y index axes swapped, z reversed: a permutation that is not a diagonal.
SWAPPED = dict(spacing=(0.8, 1.1, 2.0), origin=(5.0, -7.5, 30.0), direction=np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]))


def geometry_tuple(image: sitk.Image) -> tuple:
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def ball_label(geometry: dict, size=(40, 36, 12), radius_mm=9.0) -> sitk.Image:
    """A ball label centred in the volume (physically), on the given geometry."""
    image = make_image(geometry, size=size, dtype=np.uint8)
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in size]))
    k, j, i = np.indices(tuple(reversed(size)), dtype=float)
    direction = np.asarray(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    index = np.stack([i, j, k], axis=-1)
    physical = index @ direction.T + np.asarray(image.GetOrigin())
    inside = np.linalg.norm(physical - centre, axis=-1) <= radius_mm
    label = sitk.GetImageFromArray(inside.astype(np.uint8) * 2)
    label.CopyInformation(image)
    return label


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


# ---- geometry round trips ------------------------------------------------------------------
@pytest.mark.parametrize("name", [*PERMUTED, *OBLIQUE, "identity"])
@pytest.mark.parametrize("same_spacing", [True, False])
def test_label_round_trip_keeps_geometry_bit_for_bit(name, same_spacing):
    geometry = GEOMETRIES[name]
    label = ball_label(geometry)
    spacing = geometry["spacing"][:2] if same_spacing else (1.2, 1.2)
    grid = to_model_grid(label, PreprocessingConfig(spacing_mm=spacing))
    on_model = label_to_model_grid(label, grid)
    assert on_model.shape == grid.array.shape
    back = from_model_grid(on_model, grid, kind="label")
    assert geometry_tuple(back) == geometry_tuple(label)
    original, returned = sitk.GetArrayFromImage(label), sitk.GetArrayFromImage(back)
    if name in OBLIQUE:
        assert grid.reorientation == "resampled" and grid.notes
        assert dice(original, returned) > 0.85
    elif same_spacing:
        assert not grid.resampled_in_plane
        np.testing.assert_array_equal(returned, original)
    else:
        assert grid.resampled_in_plane
        assert dice(original, returned) > 0.85


def test_permutation_matches_dicom_orient_and_inverts_exactly():
    image = make_image(SWAPPED, size=(13, 10, 6))
    preprocessing = PreprocessingConfig(spacing_mm=(1.1, 0.8))  # the canonical x is the stored y
    grid = to_model_grid(image, preprocessing)
    assert grid.reorientation == "permuted" and not grid.resampled_in_plane
    oriented = sitk.DICOMOrient(image, "LPS")
    values = sitk.GetArrayFromImage(oriented)
    np.testing.assert_array_equal(grid.array, intensity_transform(values, preprocessing).apply(values))
    assert grid.model.spacing == oriented.GetSpacing()
    np.testing.assert_allclose(grid.model.origin, oriented.GetOrigin(), atol=1e-9)
    labels = sitk.GetArrayFromImage(image).astype(np.int64) % 7
    label_image = sitk.GetImageFromArray(labels.astype(np.uint8))
    label_image.CopyInformation(image)
    back = from_model_grid(label_to_model_grid(label_image, grid), grid, kind="label")
    assert geometry_tuple(back) == geometry_tuple(image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), labels)


def test_probabilities_back_to_original():
    label = ball_label(GEOMETRIES["negative_axes"])
    grid = to_model_grid(label, PreprocessingConfig(spacing_mm=(1.0, 1.0)))
    on_model = label_to_model_grid(label, grid)
    probabilities = np.stack([on_model == 0, on_model == 2]).astype(np.float32)
    soft = from_model_grid(probabilities, grid, kind="probabilities")
    assert geometry_tuple(soft) == geometry_tuple(label)
    assert soft.GetNumberOfComponentsPerPixel() == 2
    hard = probabilities_to_label(probabilities, grid, labels=(0, 2))
    assert geometry_tuple(hard) == geometry_tuple(label)
    argmax = np.array((0, 2), dtype=np.uint8)[np.argmax(sitk.GetArrayFromImage(soft), axis=-1)]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(hard), argmax)
    assert dice(sitk.GetArrayFromImage(hard), sitk.GetArrayFromImage(label)) > 0.9
    with pytest.raises(ValueError):
        from_model_grid(probabilities[:, :-1], grid, kind="probabilities")
    # a softmax: background need not be resampled, the answer is the same
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, *grid.array.shape)).astype(np.float32)
    softmax = np.exp(logits) / np.exp(logits).sum(axis=0, keepdims=True)
    full = sitk.GetArrayFromImage(probabilities_to_label(softmax, grid, labels=(0, 1, 2)))
    fast = sitk.GetArrayFromImage(probabilities_to_label(softmax, grid, labels=(0, 1, 2), sums_to_one=True))
    assert grid.resampled_in_plane and (full != fast).mean() < 1e-4
    with pytest.raises(ValueError):
        from_model_grid(on_model, grid, kind="mask")


# ---- orientation ---------------------------------------------------------------------------
def _as_ras_stored(lps: sitk.Image) -> sitk.Image:
    """The same anatomy stored with direction diag(-1, -1, 1): x and y index axes reversed."""
    ras = sitk.GetImageFromArray(sitk.GetArrayFromImage(lps)[:, ::-1, ::-1].copy())
    ras.SetSpacing(lps.GetSpacing())
    ras.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    nx, ny, _ = lps.GetSize()
    ras.SetOrigin(lps.TransformIndexToPhysicalPoint((nx - 1, ny - 1, 0)))
    return ras


@pytest.mark.parametrize("spacing_mm", [(0.75, 0.75), (1.0, 1.25)])
def test_same_anatomy_in_any_storage_gives_same_model_input_and_marker_lands_on_the_left(spacing_mm):
    lps = sitk.Image([24, 20, 4], sitk.sitkInt16) - 1000
    lps.SetSpacing((0.75, 0.75, 2.0))
    lps.SetOrigin((-8.0, -7.0, 0.0))
    # Larger LPS x = patient left. One marker per slice, so each slice's maximum is its marker.
    left_point, right_point = (6.25, 0.5, 2.0), (-4.25, -2.5, 4.0)
    for point in (left_point, right_point):
        lps[lps.TransformPhysicalPointToIndex(point)] = 400
    ras = _as_ras_stored(lps)
    assert ras.TransformPhysicalPointToIndex(left_point)[0] < ras.TransformPhysicalPointToIndex(right_point)[0]
    preprocessing = PreprocessingConfig(spacing_mm=spacing_mm)
    grid_lps, grid_ras = to_model_grid(lps, preprocessing), to_model_grid(ras, preprocessing)
    assert grid_ras.reorientation == "permuted" and grid_lps.reorientation == "none"
    np.testing.assert_array_equal(grid_ras.array, grid_lps.array)
    assert grid_ras.model == grid_lps.model
    found_x = []
    for point in (left_point, right_point):
        expected = (np.asarray(point) - grid_ras.model.origin) / grid_ras.model.spacing  # (x, y, z)
        z = int(round(expected[2]))
        y, x = np.unravel_index(np.argmax(grid_ras.array[z]), grid_ras.array[z].shape)
        assert abs(x - expected[0]) <= 0.75 and abs(y - expected[1]) <= 0.75, (point, (x, y), expected)
        found_x.append(x)
    assert found_x[0] > found_x[1]  # patient left → larger x index


def test_real_ct_ras_and_lps_give_the_same_model_grid(real_ct_path):
    ras = sitk.ReadImage(str(real_ct_path))
    assert np.allclose(np.asarray(ras.GetDirection()).reshape(3, 3), np.diag([-1.0, -1.0, 1.0]))
    lps = sitk.DICOMOrient(ras, "LPS")
    preprocessing = PreprocessingConfig(spacing_mm=(2.0, 2.0))
    grid_ras, grid_lps = to_model_grid(ras, preprocessing), to_model_grid(lps, preprocessing)
    np.testing.assert_array_equal(grid_ras.array, grid_lps.array)
    np.testing.assert_allclose(grid_ras.model.origin, grid_lps.model.origin, atol=1e-6)
    assert grid_ras.array.dtype == np.float32 and 0.0 <= grid_ras.array.min() <= grid_ras.array.max() <= 1.0


# ---- resampling accuracy -------------------------------------------------------------------
@pytest.mark.parametrize("anti_alias", [True, False])
def test_sphere_keeps_its_physical_radius(anti_alias):
    radius = 12.0
    size = (64, 64, 9)
    image = sitk.Image(list(size), sitk.sitkInt16)
    image.SetSpacing((0.7, 0.7, 2.0))
    image.SetOrigin((-22.05, -21.7, -8.0))
    centre = np.array([0.3, -0.4, 0.0])
    k, j, i = np.indices(tuple(reversed(size)), dtype=float)
    physical = np.stack([i, j, k], axis=-1) * image.GetSpacing() + image.GetOrigin()
    array = np.where(np.linalg.norm(physical - centre, axis=-1) <= radius, 400, -1000).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.7, 2.0))
    image.SetOrigin((-22.05, -21.7, -8.0))
    grid = to_model_grid(image, PreprocessingConfig(spacing_mm=(1.0, 1.0)), anti_alias=anti_alias)
    assert grid.resampled_in_plane and grid.anti_aliased == anti_alias
    assert grid.array.shape == (9, 45, 45)  # ceil(64 * 0.7 / 1.0)
    middle = grid.array[4]  # z = 0 mm: through the centre
    inside = middle >= 0.5
    measured = np.sqrt(inside.sum() / np.pi) * 1.0
    assert abs(measured - radius) < 0.5, measured
    ys, xs = np.nonzero(inside)
    centroid = np.array([xs.mean(), ys.mean()]) * 1.0 + grid.model.origin[:2]
    np.testing.assert_allclose(centroid, centre[:2], atol=0.5)


def test_phantom_tumour_survives_the_round_trip():
    phantom = make_chest_ct(PhantomSpec(size_xy=(256, 256), n_slices=30, spacing=(0.7, 0.7, 3.0), tumour_diameter_mm=30, seed=1))
    grid = to_model_grid(phantom.image, PreprocessingConfig(spacing_mm=(1.0, 1.0)))
    assert grid.array.shape == (30, 180, 180)
    on_model = label_to_model_grid(phantom.label, grid)
    assert 0.9 < on_model.sum() * 3.0 / 1000 / phantom.tumour_volume_ml < 1.1
    back = from_model_grid(on_model, grid, kind="label")
    assert geometry_tuple(back) == geometry_tuple(phantom.label)
    assert dice(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(phantom.label)) > 0.9


# ---- intensities ---------------------------------------------------------------------------
def test_ct_window():
    values = np.array([-3000, -1000, -300, 400, 3000], dtype=np.int16)
    out = intensity_transform(values, PreprocessingConfig()).apply(values)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)
    grid = to_model_grid(make_image(GEOMETRIES["identity"]), PreprocessingConfig())
    assert grid.array.dtype == np.float32 and grid.background_value == 0.0


def test_mri_z_score():
    rng = np.random.default_rng(3)
    volume = rng.gamma(2.0, 150.0, size=(6, 40, 40)).astype(np.float32)
    volume[0, 0, 0] = 1e6  # an outlier the percentile clip must remove
    preprocessing = PreprocessingConfig(modality="mri", mri_percentiles=(1.0, 99.0))
    out = intensity_transform(volume, preprocessing).apply(volume)
    assert out.dtype == np.float32
    assert abs(float(out.mean())) < 1e-3
    assert abs(float(out.std()) - 1.0) < 1e-3
    assert out.max() < 5.0


# ---- 2.5D and padding ----------------------------------------------------------------------
def test_slice_stack_order_and_edges():
    volume = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 3, 4), dtype=np.float32)
    assert slice_stack(volume, 2, 2)[:, 0, 0].tolist() == [0, 1, 2, 3, 4]
    assert slice_stack(volume, 0, 2)[:, 0, 0].tolist() == [0, 0, 0, 1, 2]
    assert slice_stack(volume, 4, 1)[:, 0, 0].tolist() == [3, 4, 4]
    assert slice_stack(volume, 3, 0).shape == (1, 3, 4)
    with pytest.raises(IndexError):
        slice_stack(volume, 5, 1)


def test_pad_to_multiple_round_trip():
    rng = np.random.default_rng(0)
    array = rng.random((3, 45, 50)).astype(np.float32)
    padded, padding = pad_to_multiple(array, 16)
    assert padded.shape == (3, 48, 64)
    assert padded[:, : padding.before[0]].max(initial=0.0) == 0.0 and padded[..., -padding.after[1] :].max() == 0.0
    np.testing.assert_array_equal(crop_from_padding(padded, padding), array)
    probabilities = np.stack([padded, padded])  # [C, z, H, W] from the network crops the same way
    np.testing.assert_array_equal(crop_from_padding(probabilities, padding)[1], array)
    same, nothing = pad_to_multiple(np.zeros((32, 16)), 16)
    assert same.shape == (32, 16) and crop_from_padding(same, nothing).shape == (32, 16)
