"""`lmrec keys create|list|revoke` and `lmrec serve`'s input checks."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.store import Store
from lmrec.store.keys import KeyStore

runner = CliRunner()


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    db = str(tmp_path / "s.duckdb")
    out = runner.invoke(app, ["keys", "create", "ci", "--scope", "write", "--store", db])
    assert out.exit_code == 0, out.output
    key = out.output.split()[0]
    assert key.startswith("lmrec_")
    with Store(db) as st:
        record = KeyStore(st).verify(key)
        assert record is not None and record.scopes == ("write",) and record.name == "ci"
    listed = runner.invoke(app, ["keys", "list", "--store", db])
    assert listed.exit_code == 0 and record.key_id in listed.output and "active" in listed.output
    assert key.split("_")[2] not in listed.output
    assert runner.invoke(app, ["keys", "revoke", record.key_id, "--store", db]).exit_code == 0
    again = runner.invoke(app, ["keys", "revoke", record.key_id, "--store", db])
    assert again.exit_code == 1 and "no active key" in again.output
    bad = runner.invoke(app, ["keys", "create", "x", "--scope", "root", "--store", db])
    assert bad.exit_code == 1 and "scopes" in bad.output


def test_serve_refuses_a_folder_without_a_model(tmp_path: Path) -> None:
    out = runner.invoke(app, ["serve", str(tmp_path), "--store", str(tmp_path / "s.duckdb")])
    assert out.exit_code == 1 and "not a trained lmrec model folder" in " ".join(out.output.split())
