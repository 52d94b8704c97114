"""Shared fixtures. Real data comes from the built-in loader (cached after one fetch) or ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LMREC_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def ml100k():
    """The built-in MovieLens-100K as a Dataset."""
    from lmrec.data.loaders import load_dataset

    ds, _ = load_dataset("movielens-100k")
    return ds


@pytest.fixture(scope="session")
def ml_latest_small_path() -> Path:
    path = SHARED_DATA / "ml-latest-small"
    if not (path / "ratings.csv").exists():
        pytest.skip(f"MovieLens latest-small not found at {path} (set LMREC_SHARED_DATA)")
    return path
