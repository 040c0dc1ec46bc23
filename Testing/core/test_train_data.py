"""Training data: the model-grid cache, the slice sampler, bad labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from VQSegCore.dataset_spec import DatasetSpec
from VQSegCore.errors import InputError
from VQSegCore.model.config import PreprocessingConfig
from VQSegCore.train.data import IGNORE_INDEX, CaseCache, SliceSampler, prepare_training_data
from helpers.toydata import make_dataset

PRE = PreprocessingConfig(spacing_mm=(3.0, 3.0))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


def test_cache_reads_back_without_recomputing_and_recomputes_on_new_preprocessing(dataset, tmp_path):
    spec = DatasetSpec.load(dataset)
    cache = CaseCache(tmp_path / "cache", PRE, spec.classes)
    labelled, unlabelled = prepare_training_data(spec, cache, include_labelled_as_unlabelled=False)
    assert cache.computed == 2 and len(labelled) == 1 and len(unlabelled) == 1
    first = labelled[0]
    assert first.image.dtype == np.float16 and first.image.shape == (16, 64, 64)
    assert isinstance(first.image, np.memmap) and first.label.dtype == np.uint8
    assert set(np.unique(first.label)) == {0, 1}

    again = CaseCache(tmp_path / "cache", PRE, spec.classes)
    labelled2, _ = prepare_training_data(spec, again)
    assert again.computed == 0
    np.testing.assert_array_equal(labelled2[0].image, first.image)

    other = CaseCache(tmp_path / "cache", PreprocessingConfig(spacing_mm=(6.0, 6.0)), spec.classes)
    labelled3, _ = prepare_training_data(spec, other)
    assert other.computed == 2 and labelled3[0].image.shape == (16, 32, 32)


def test_touching_the_image_recomputes(dataset, tmp_path):
    spec = DatasetSpec.load(dataset)
    case = spec.labelled("train")[0]
    cache = CaseCache(tmp_path / "cache", PRE, spec.classes)
    cache.prepare(case)
    stat = case.image.stat()
    import os
    os.utime(case.image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    cache.prepare(case)
    assert cache.computed == 2


def test_label_value_outside_class_table_names_the_case(dataset, tmp_path):
    folder = dataset.parent
    label = sitk.ReadImage(str(folder / "a-label.nii.gz"))
    array = sitk.GetArrayFromImage(label)
    array[0, 0, 0] = 7
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(label)
    sitk.WriteImage(bad, str(tmp_path / "bad-label.nii.gz"))
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps({"cases": [{"id": "weird-case", "image": str(folder / "a.nii.gz"), "label": str(tmp_path / "bad-label.nii.gz"), "split": "train"}]}))
    spec = DatasetSpec.load(spec_path)
    with pytest.raises(InputError, match="weird-case.*7"):
        prepare_training_data(spec, CaseCache(tmp_path / "cache", PRE, spec.classes))


def _sampler(dataset, tmp_path, seed=0, crop=32, fraction=0.5, context=0):
    spec = DatasetSpec.load(dataset)
    labelled, unlabelled = prepare_training_data(spec, CaseCache(tmp_path / "cache", PRE, spec.classes))
    return SliceSampler(labelled, unlabelled, crop_size=crop, size_multiple=8, rng=np.random.default_rng(seed),
                        context_slices=context, foreground_fraction=fraction)


def test_sampler_shapes_padding_and_determinism(dataset, tmp_path):
    sampler = _sampler(dataset, tmp_path)
    images, labels = sampler.labelled_batch(2)
    assert images.shape == (2, 1, 32, 32) and labels.shape == (2, 32, 32)
    assert str(images.dtype) == "torch.float32" and str(labels.dtype) == "torch.int64"
    assert sampler.unlabelled_batch(3).shape == (3, 1, 32, 32)

    big = _sampler(dataset, tmp_path, crop=80, context=1)
    images, labels = big.labelled_batch(4)
    assert images.shape == (4, 3, 80, 80)
    assert (labels[:, :8, :] == IGNORE_INDEX).all() and (labels[:, 8:72, 8:72] != IGNORE_INDEX).all()

    a, b = _sampler(dataset, tmp_path, seed=5), _sampler(dataset, tmp_path, seed=5)
    for _ in range(3):
        (xa, ya), (xb, yb) = a.labelled_batch(2), b.labelled_batch(2)
        assert (xa == xb).all() and (ya == yb).all()
        assert (a.unlabelled_batch(2) == b.unlabelled_batch(2)).all()
    c = _sampler(dataset, tmp_path, seed=6)
    assert not (c.labelled_batch(2)[0] == _sampler(dataset, tmp_path, seed=5).labelled_batch(2)[0]).all()


def test_crop_size_must_be_a_multiple(dataset, tmp_path):
    with pytest.raises(InputError, match="multiple"):
        _sampler(dataset, tmp_path, crop=36)


@pytest.mark.parametrize("fraction", [0.0, 1.0, 0.5])
def test_foreground_fraction_is_honoured(dataset, tmp_path, fraction):
    sampler = _sampler(dataset, tmp_path, fraction=fraction, crop=16)
    _, labels = sampler.labelled_batch(400)
    with_fg = ((labels > 0) & (labels != IGNORE_INDEX)).flatten(1).any(dim=1).float().mean().item()
    if fraction == 1.0:
        assert with_fg == 1.0
    elif fraction == 0.0:
        assert with_fg < 0.2
    else:
        assert 0.45 < with_fg < 0.7
