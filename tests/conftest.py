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


# ---------------------------------------------------------------------- PostgreSQL (tests/_postgres.py)
def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def pg_server():
    """The URL of a PostgreSQL server for this test session: ``LMREC_TEST_PG_URL``, or a throw-away server
    started here. Without a server the PostgreSQL tests skip, except in CI (``CI=true``), where that fails."""
    url = os.environ.get("LMREC_TEST_PG_URL")
    if url:
        yield url
        return
    from tests._postgres import TempPostgres

    try:
        server = TempPostgres()
    except (FileNotFoundError, ImportError) as exc:
        if _in_ci():
            pytest.fail(f"CI runs the PostgreSQL tests on a real server, and none could be started: {exc}")
        pytest.skip(f"no PostgreSQL server to test against: {exc}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server):
    """A new empty database on the session's server."""
    from tests._postgres import create_database

    return create_database(pg_server)
