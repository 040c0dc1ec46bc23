"""Tests of the synthetic chest CT phantom (VQSegCore.synth)."""

import math
import time

import numpy as np
import pytest
import SimpleITK as sitk

from VQSegCore.synth import Phantom, PhantomSpec, make_chest_ct

SMALL = dict(size_xy=(96, 96), n_slices=40, spacing=(3.0, 3.0, 3.0))


def arrays(phantom: Phantom) -> tuple[np.ndarray, np.ndarray]:
    return sitk.GetArrayFromImage(phantom.image), sitk.GetArrayFromImage(phantom.label)


@pytest.fixture(scope="module")
def left_30mm() -> Phantom:
    return make_chest_ct(PhantomSpec(**SMALL, seed=7, tumour_diameter_mm=30, tumour_side="left"))


# ---------------------------------------------------------------------------------------------
# Determinism


def test_same_spec_gives_identical_arrays(left_30mm):
    again = make_chest_ct(PhantomSpec(**SMALL, seed=7, tumour_diameter_mm=30, tumour_side="left"))
    image, label = arrays(left_30mm)
    image2, label2 = arrays(again)
    assert np.array_equal(image, image2)
    assert np.array_equal(label, label2)
    assert again.tumour_centre_mm == left_30mm.tumour_centre_mm


def test_different_seeds_give_different_tumours_and_vessels():
    spec = dict(**SMALL, tumour_diameter_mm=30, tumour_side="left", noise_hu=0.0)
    image_a, label_a = arrays(make_chest_ct(PhantomSpec(**spec, seed=1)))
    image_b, label_b = arrays(make_chest_ct(PhantomSpec(**spec, seed=2)))
    assert not np.array_equal(label_a, label_b)
    # Without noise, what differs away from both tumours is the anatomy and the vessels.
    away = (label_a == 0) & (label_b == 0)
    assert np.count_nonzero(image_a[away] != image_b[away]) > 500


def test_seed_draws_diameter_and_side_when_not_given():
    drawn = [make_chest_ct(PhantomSpec(**SMALL, seed=s, noise_hu=0.0)) for s in range(4)]
    diameters = [p.tumour_diameter_mm for p in drawn]
    assert all(10.0 <= d <= 60.0 for d in diameters)
    assert len(set(diameters)) == len(diameters)


# ---------------------------------------------------------------------------------------------
# Geometry


def test_default_geometry_matches_spec_and_centres_the_volume(left_30mm):
    image, label = left_30mm.image, left_30mm.label
    assert image.GetSize() == (96, 96, 40)
    assert image.GetSpacing() == (3.0, 3.0, 3.0)
    assert image.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)
    assert image.GetPixelID() == sitk.sitkInt16
    assert label.GetPixelID() == sitk.sitkUInt8
    centre = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
    assert np.allclose(centre, 0.0, atol=1e-9)
    for get in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(label, get)() == getattr(image, get)()


def test_non_identity_direction_and_explicit_origin_are_kept():
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, -1.0)  # rotated about z, z flipped
    origin = (12.5, -40.0, 310.0)
    spec = PhantomSpec(size_xy=(96, 80), n_slices=36, spacing=(3.0, 3.2, 3.5), seed=3,
                       tumour_diameter_mm=25, direction=direction, origin=origin)
    phantom = make_chest_ct(spec)
    image, label = phantom.image, phantom.label
    assert image.GetSize() == (96, 80, 36)
    assert np.allclose(image.GetSpacing(), (3.0, 3.2, 3.5))
    assert np.allclose(image.GetDirection(), direction)
    assert np.allclose(image.GetOrigin(), origin)
    for get in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(label, get)() == getattr(image, get)()
    # The reported centre is a physical point in this geometry, inside the tumour.
    index = image.TransformPhysicalPointToIndex(phantom.tumour_centre_mm)
    assert label[index] == 1


def test_default_origin_follows_a_non_identity_direction():
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    image = make_chest_ct(PhantomSpec(**SMALL, seed=1, tumour_diameter_mm=20, direction=direction)).image
    centre = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
    assert np.allclose(centre, 0.0, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# Intensities


def test_intensities_look_like_ct(left_30mm):
    image, label = arrays(left_30mm)
    nz, ny, nx = image.shape
    # The right lung (x below the middle, LPS), on the slices that cut the left-sided tumour.
    slices = np.unique(np.nonzero(label)[0])
    right_lung = image[slices][:, int(0.4 * ny):int(0.6 * ny), int(0.15 * nx):int(0.35 * nx)]
    assert -900 <= np.median(right_lung) <= -780
    corners = np.concatenate([image[:, :4, :4].ravel(), image[:, :4, -4:].ravel()])
    assert abs(np.median(corners) + 1000) <= 5
    assert abs(corners.mean() + 1000) <= 10
    assert 0 <= image[label == 1].mean() <= 80
    assert np.count_nonzero(image > 300) > 100


def test_noise_has_the_requested_std():
    quiet = make_chest_ct(PhantomSpec(**SMALL, seed=5, tumour_diameter_mm=20, noise_hu=0.0))
    noisy = make_chest_ct(PhantomSpec(**SMALL, seed=5, tumour_diameter_mm=20, noise_hu=20.0))
    difference = arrays(noisy)[0].astype(float) - arrays(quiet)[0]
    inside = arrays(quiet)[0] > -950  # away from the clipping at -1024
    assert 17.0 < difference[inside].std() < 23.0


# ---------------------------------------------------------------------------------------------
# The tumour


def test_label_is_one_connected_component(left_30mm):
    components = sitk.ConnectedComponent(left_30mm.label)
    assert sitk.GetArrayFromImage(components).max() == 1


@pytest.mark.parametrize("diameter", [10.0, 30.0, 60.0])
def test_equivalent_diameter_matches_nominal(diameter):
    phantom = make_chest_ct(PhantomSpec(**SMALL, seed=11, tumour_diameter_mm=diameter))
    voxels = np.count_nonzero(arrays(phantom)[1])
    equivalent = (6 * voxels * 27.0 / math.pi) ** (1 / 3)
    assert phantom.tumour_diameter_mm == diameter
    assert abs(equivalent / diameter - 1) <= 0.35
    components = sitk.ConnectedComponent(phantom.label)
    assert sitk.GetArrayFromImage(components).max() == 1


def test_volume_ml_is_label_voxels_times_voxel_volume(left_30mm):
    voxels = np.count_nonzero(arrays(left_30mm)[1])
    assert left_30mm.tumour_volume_ml == pytest.approx(voxels * 27.0 / 1000, rel=1e-12)


@pytest.mark.parametrize("side", ["left", "right"])
def test_tumour_lies_on_the_requested_side(side):
    phantom = make_chest_ct(PhantomSpec(**SMALL, seed=2, tumour_diameter_mm=30, tumour_side=side))
    x = np.nonzero(arrays(phantom)[1])[2]
    middle = (96 - 1) / 2
    # LPS: x increases towards the patient's left.
    assert (x > middle).all() if side == "left" else (x < middle).all()
    assert (phantom.tumour_centre_mm[0] > 0) == (side == "left")


@pytest.mark.parametrize("seed,side,diameter", [
    (7, "left", 30), (8, "right", 30), (9, "left", 10), (10, "right", 10), (30, "right", 10),
    (12, "left", 60), (13, "right", 60),
])
def test_tumour_abuts_the_mediastinum(seed, side, diameter):
    phantom = make_chest_ct(PhantomSpec(**SMALL, seed=seed, tumour_diameter_mm=diameter, tumour_side=side))
    image, label = arrays(phantom)
    solid = (image > -500) & (label == 0)  # non-aerated tissue that is not tumour
    step = 1 if side == "left" else -1  # LPS: the midline lies towards -x from the left lung
    z, y, x = np.nonzero(label)
    # The medial-most tumour voxel has solid tissue within 6 mm (2 voxels).
    medial = np.argmin(x * step)
    zz, yy, xx = z[medial], y[medial], x[medial]
    x_lo, x_hi = (xx - 2, xx + 1) if step > 0 else (xx, xx + 3)  # the medial side only
    assert solid[max(zz - 2, 0):zz + 3, max(yy - 2, 0):yy + 3, max(x_lo, 0):x_hi].any()
    # A fair share of the tumour's rows end medially directly against solid tissue.
    ends = {}
    for k in np.argsort(x * step)[::-1]:  # medial-most last, so it wins
        ends[(z[k], y[k])] = x[k]
    touching = [solid[zk, yk, xk - step] for (zk, yk), xk in ends.items()]
    assert np.mean(touching) >= 0.1
    # A central tumour: its medial surface is near the midline, not out at the chest wall.
    assert abs(phantom.image.TransformIndexToPhysicalPoint((int(xx), int(yy), int(zz)))[0]) < 60.0


def test_tumour_centre_is_inside_the_label(left_30mm):
    index = left_30mm.image.TransformPhysicalPointToIndex(left_30mm.tumour_centre_mm)
    assert left_30mm.label[index] == 1


# ---------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize("change,message", [
    (dict(size_xy=(0, 96)), "size_xy"),
    (dict(n_slices=0), "n_slices"),
    (dict(spacing=(-3.0, 3.0, 3.0)), "spacing"),
    (dict(spacing=(3.0, 0.0, 3.0)), "spacing"),
    (dict(tumour_diameter_mm=80.0), "tumour_diameter_mm"),
    (dict(tumour_diameter_mm=5.0), "tumour_diameter_mm"),
    (dict(direction=(1, 0, 0, 0, 2, 0, 0, 0, 1)), "orthonormal"),
    (dict(direction=(1, 0, 0, 0, 1, 0)), "direction"),
    (dict(tumour_side="middle"), "tumour_side"),
    (dict(n_slices=10, tumour_diameter_mm=60.0), "does not fit"),
    (dict(size_xy=(48, 48), spacing=(0.7, 0.7, 3.0)), "does not fit"),
])
def test_bad_specs_raise_value_error(change, message):
    with pytest.raises(ValueError, match=message):
        make_chest_ct(PhantomSpec(**{**SMALL, **change}))


# ---------------------------------------------------------------------------------------------
# Full size


@pytest.mark.slow
def test_full_size_volume_is_fast_and_plausible():
    start = time.perf_counter()
    phantom = make_chest_ct(PhantomSpec(seed=0))
    elapsed = time.perf_counter() - start
    assert elapsed < 15.0, f"512x512x300 took {elapsed:.1f} s"
    image, label = arrays(phantom)
    assert image.shape == label.shape == (300, 512, 512)
    assert phantom.image.GetSpacing() == (0.7, 0.7, 1.5)
    # The torso on the tumour's slice: about 300-350 mm wide and 200-250 mm deep.
    z = int(np.median(np.nonzero(label)[0]))
    body = image[z] > -500
    columns, rows = np.nonzero(body.any(axis=0))[0], np.nonzero(body.any(axis=1))[0]
    assert 300 <= (columns[-1] - columns[0] + 1) * 0.7 <= 350
    assert 200 <= (rows[-1] - rows[0] + 1) * 0.7 <= 250


def test_without_tumour_is_the_same_chest_with_an_empty_label(left_30mm):
    plain = make_chest_ct(PhantomSpec(**SMALL, seed=7, tumour_diameter_mm=30, tumour_side="left", tumour=False))
    image, label = arrays(left_30mm)
    image_plain, label_plain = arrays(plain)
    assert not label_plain.any() and plain.tumour_centre_mm is None and plain.tumour_volume_ml == 0.0
    changed = image != image_plain
    assert changed.any()  # the tumour was painted only in the other one
    # Only around the tumour: every changed voxel lies within the tumour's box grown by 3 voxels.
    zz, yy, xx = np.nonzero(label)
    grown = np.zeros_like(changed)
    grown[max(0, zz.min() - 3):zz.max() + 4, max(0, yy.min() - 3):yy.max() + 4, max(0, xx.min() - 3):xx.max() + 4] = True
    assert not (changed & ~grown).any()
