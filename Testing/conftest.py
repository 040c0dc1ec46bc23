"""Fixtures. Shared helpers (images, DICOM series, the CLI runner, pools and stores) live in Testing/helpers/."""

from __future__ import annotations

import locale
from pathlib import Path

import pytest

from helpers.cli_run import run_cli
from helpers.paths import SHARED_DATA


@pytest.fixture(autouse=True)
def _locale_kept():
    """GDCM (DICOM I/O) switches the process to the C locale; give every test the locale it started with."""
    saved = locale.setlocale(locale.LC_ALL)
    yield
    locale.setlocale(locale.LC_ALL, saved)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def real_ct_path() -> Path:
    path = SHARED_DATA / "ct" / "example_ct.nii.gz"
    if not path.exists():
        pytest.skip(f"real CT not present at {path}")
    return path
