"""Reader-level scoring of the LIDC benchmark: which readers are scored, against which reference."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import lidc_readers  # noqa: E402


def _masks(*boxes):
    """Four readers' masks on an 8x8 grid; a box (y0, y1, x0, x1) per reader, None where a reader marked nothing."""
    out = []
    for box in boxes:
        mask = np.zeros((1, 8, 8), bool)
        if box is not None:
            mask[0, box[0]:box[1], box[2]:box[3]] = True
        out.append(mask)
    return out


def test_one_reader_only_is_not_scored_and_two_readers_are_not_either():
    assert lidc_readers.reader_score(_masks((0, 4, 0, 4), None, None, None)) is None
    # With two readers, each one's others hold a single mark: an empty >= 2-of-3 consensus.
    assert lidc_readers.reader_score(_masks((0, 4, 0, 4), (0, 4, 0, 4), None, None)) is None


def test_three_agreeing_readers_score_one_and_a_non_marking_reader_is_left_out():
    masks = _masks((0, 4, 0, 4), (0, 4, 0, 4), (0, 4, 0, 4), None)
    assert lidc_readers.references(masks).keys() == {0, 1, 2}
    assert lidc_readers.reader_score(masks) == 1.0
    assert lidc_readers.reader_score_with_misses(masks) == 0.75  # the fourth reader's miss counted as 0


def test_reader_and_paired_model_scores_use_the_other_three_as_reference():
    big, small = (0, 4, 0, 4), (0, 2, 0, 4)  # 16 and 8 voxels
    masks = _masks(big, big, big, small)
    refs = lidc_readers.references(masks)
    # Readers 0-2: two of their others drew `big` -> reference big; reader 3's others all drew big.
    assert all(ref.sum() == 16 for ref in refs.values())
    # Reader score: three readers at Dice 1, reader 3 at 2*8/(8+16).
    assert lidc_readers.reader_score(masks) == pytest.approx((3 * 1.0 + 16 / 24) / 4)
    prediction = _masks(small, None, None, None)[0]
    assert lidc_readers.paired_model_score(prediction, masks) == pytest.approx(16 / 24)
    assert lidc_readers.paired_model_score(prediction, _masks(big, None, None, None)) is None
