"""`lmrec recommend` and `lmrec embed items` with `--nproc 2`: two torchrun processes each do their share of
the work, and the joined output is what one process writes (the same rows in the same order; the same
vectors)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from lmrec.models import create_model
from lmrec.models.export import merge_parts, part_path, shard_range
from lmrec.store import Store
from tests.serving.serving_helpers import ITEMS, make_events


def test_shard_ranges_cover_the_rows_in_order() -> None:
    for n in (0, 1, 7, 30):
        for world in (1, 2, 3, 4):
            spans = [shard_range(n, r, world) for r in range(world)]
            assert spans[0][0] == 0 and spans[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
            assert max(hi - lo for lo, hi in spans) - min(hi - lo for lo, hi in spans) <= 1


def test_merge_parts_keeps_one_csv_header(tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    part_path(out, 0, 2).write_text("a,b\n1,2\n")
    part_path(out, 1, 2).write_text("a,b\n3,4\n")
    merge_parts(out, 2)
    assert out.read_text() == "a,b\n1,2\n3,4\n" and not part_path(out, 0, 2).exists()


@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["parquet", "tsv"])
def test_two_processes_write_what_one_writes(tmp_path: Path, suffix: str) -> None:
    with Store(":memory:") as st:
        st.upsert_items(ITEMS)
        st.append_events(make_events())
        create_model("itemknn", k=20).fit(st.to_dataset()).save(tmp_path / "m")
    cmd = [sys.executable, "-m", "lmrec.entry", "recommend", str(tmp_path / "m"), "--k", "3",
           "--batch-size", "4"]
    one = subprocess.run([*cmd, "--out", str(tmp_path / f"one.{suffix}")], capture_output=True, text=True,
                         timeout=300)
    assert one.returncode == 0, one.stdout + one.stderr
    two = subprocess.run([*cmd, "--out", str(tmp_path / f"two.{suffix}"), "--nproc", "2"],
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout + two.stderr
    assert "2 processes" in two.stdout
    if suffix == "parquet":
        a, b = pl.read_parquet(tmp_path / "one.parquet"), pl.read_parquet(tmp_path / "two.parquet")
        assert a.height == 30 * 3 and a.equals(b)
    else:
        assert (tmp_path / "one.tsv").read_bytes() == (tmp_path / "two.tsv").read_bytes()
    assert not list(tmp_path.glob(".two*"))  # no part left behind


@pytest.mark.slow
def test_two_processes_embed_the_items_one_embeds(tmp_path: Path) -> None:
    """`lmrec embed items --nproc 2`: each process encodes its share into the cache, the first assembles every
    vector; the vectors equal one process's (float tolerance: batches are composed differently)."""
    import numpy as np

    with Store(tmp_path / "s.duckdb") as st:
        st.upsert_items(ITEMS)
        st.append_events(make_events())
    cmd = [sys.executable, "-m", "lmrec.entry", "embed", "items", "--store", str(tmp_path / "s.duckdb")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    one = subprocess.run([*cmd, "--cache", str(tmp_path / "c1.duckdb"), "--out", str(tmp_path / "one.npy")],
                         capture_output=True, text=True, timeout=600, env=env)
    assert one.returncode == 0, one.stdout + one.stderr
    two = subprocess.run([*cmd, "--cache", str(tmp_path / "c2.duckdb"), "--out", str(tmp_path / "two.npy"),
                          "--nproc", "2"], capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, two.stdout + two.stderr
    assert "2 processes encoded" in two.stdout
    a, b = np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy")
    assert a.shape == b.shape == (len(ITEMS) + 1, a.shape[1])
    np.testing.assert_allclose(a, b, atol=1e-4)
