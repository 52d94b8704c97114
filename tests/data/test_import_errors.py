"""Every bad import names the file, the row and the field; ids are capped as in the API; Ctrl-C: one line."""

from __future__ import annotations

import signal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from lmrec.cli import app


def _import(path: Path, tmp_path: Path, *extra: str) -> tuple[int, str]:
    out = CliRunner().invoke(app, ["data", "import", str(path), "--store", str(tmp_path / "s.duckdb"),
                                   *extra])
    return out.exit_code, " ".join(out.output.split())


@pytest.mark.parametrize(("name", "write", "row", "field"), [
    ("latin1.csv", lambda p: p.write_bytes(b"user_id,item_id,timestamp\nu1,i1,100\nu\xe9,i2,200\n"), 2,
     "user_id"),
    ("dup.csv", lambda p: p.write_text("user_id,item_id,item_id,timestamp\nu1,i1,i1,100\n"), 0, "item_id"),
    ("nested.parquet", lambda p: pq.write_table(pa.table({"user_id": [[1], [2]], "item_id": ["a", "b"],
                                                         "timestamp": [1, 2]}), p), 1, "user_id"),
    ("binary.parquet", lambda p: pq.write_table(pa.table({"user_id": ["u", "v"], "item_id": ["a", "b"],
                                                         "timestamp": [b"x", b"y"]}), p), 1, "timestamp"),
    ("typed.parquet", lambda p: pq.write_table(pa.table({"user_id": ["u", "v"], "item_id": ["a", "b"],
                                                        "timestamp": [True, False]}), p), 1, "timestamp"),
])
def test_a_bad_import_names_file_row_and_field(tmp_path: Path, name: str, write,  # noqa: ANN001
                                               row: int, field: str) -> None:
    path = tmp_path / name
    write(path)
    code, output = _import(path, tmp_path, "--strict")
    assert code == 1, output
    assert f"file {path}" in output or f"file {name}" in output, output
    assert f"row {row}, field '{field}'" in output, output
    assert "Traceback" not in output


def test_ids_longer_than_the_api_allows_are_not_imported(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"user_id": ["u", "v"], "item_id": ["i" * 10_000_000, "ok"],
                             "timestamp": [100, 200]}), path)
    code, output = _import(path, tmp_path)
    assert code == 0 and "item_id_too_long: 1" in output and "inserted 1 events" in output, output
    code, output = _import(path, tmp_path, "--strict")
    assert code == 1 and "row 1, field 'item_id'" in output and "256" in output, output


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    import lmrec.cli
    from lmrec import entry

    def interrupted() -> None:
        raise entry.Interrupted

    previous = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(lmrec.cli, "app", interrupted)
    try:
        with pytest.raises(SystemExit) as exit_info:
            entry.main()
    finally:
        signal.signal(signal.SIGINT, previous)
        entry._running = False
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "interrupted, nothing written\n"

    # Inside a command, friendly_errors turns it into the same line (a transaction in progress rolls back).
    from lmrec.cli.common import friendly_errors

    with pytest.raises(BaseException) as exc, friendly_errors():
        raise entry.Interrupted
    assert getattr(exc.value, "exit_code", None) == 130
