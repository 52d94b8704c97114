"""A backup folder streamed as a tar (what a running service sends) and unpacked on the client's side."""

from __future__ import annotations

import tarfile
from pathlib import Path

import polars as pl
import pytest

from lmrec.store import Store
from lmrec.store.backup import archive, backup, restore, unpack, verify
from lmrec.store.keys import KeyStore


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, dict]:
    with Store(tmp_path / "s.duckdb") as st:
        st.upsert_items(pl.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"], "categories": [["x"], []]}))
        st.append_events(pl.DataFrame({"event_id": ["e1", "e2"], "user_id": ["u", "v"], "item_id": ["a", "b"],
                                       "timestamp": [1_600_000_000, 1_600_000_001], "event_type": "view"}))
        KeyStore(st).create("k", ["read"])
        models = tmp_path / "models" / "v1"
        models.mkdir(parents=True)
        (models / "model.json").write_text("{}")
        manifest = backup(st, tmp_path / "b", tmp_path / "models")
    return tmp_path / "b", manifest


def test_archive_and_unpack_round_trip(saved: tuple[Path, dict], tmp_path: Path) -> None:
    folder, manifest = saved
    out = tmp_path / "client" / "copy"
    assert unpack(archive(folder), out) == manifest
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == sorted(
        p.relative_to(folder) for p in folder.rglob("*"))
    assert all((out / p.relative_to(folder)).read_bytes() == p.read_bytes()
               for p in folder.rglob("*") if p.is_file())
    restore(out, tmp_path / "r.duckdb")  # what was downloaded restores
    with pytest.raises(FileExistsError):
        unpack(archive(folder), out)  # never into a folder that holds something


def test_a_cut_stream_or_a_changed_file_leaves_nothing(saved: tuple[Path, dict], tmp_path: Path) -> None:
    folder, _ = saved
    data = b"".join(archive(folder))
    out = tmp_path / "cut"
    for cut in (len(data) // 2, len(data) - 3 * tarfile.BLOCKSIZE, 700):
        with pytest.raises(ValueError, match="incomplete"):
            unpack([data[:cut]], out)
        assert not out.exists() and not (tmp_path / "cut.partial").exists()
    # a table whose rows differ from the manifest is refused by verify (and so by unpack)
    with Store(":memory:") as mem:
        mem.execute(f"COPY (SELECT * FROM read_parquet('{folder / 'events.parquet'}') LIMIT 1) "
                    f"TO '{tmp_path / 'one.parquet'}' (FORMAT PARQUET)")
    (folder / "events.parquet").write_bytes((tmp_path / "one.parquet").read_bytes())
    with pytest.raises(ValueError, match="events.parquet"):
        verify(folder)
    with pytest.raises(ValueError, match="does not match"):
        unpack(archive(folder), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
