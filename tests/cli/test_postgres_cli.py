"""The CLI on a PostgreSQL store: ``--store postgresql://…`` and ``LMREC_STORE`` reach the same commands."""

from __future__ import annotations

from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.store import Store
from lmrec.store.keys import KeyStore

runner = CliRunner()


def test_keys_and_stats_on_a_postgresql_store(pg_url, tmp_path):
    (tmp_path / "ev.csv").write_text("user_id,item_id,timestamp\n" + "".join(
        f"u{k % 3},i{k % 5},{1_600_000_000 + k}\n" for k in range(20)))
    done = runner.invoke(app, ["data", "import", str(tmp_path / "ev.csv"), "--store", pg_url])
    assert done.exit_code == 0, done.output
    made = runner.invoke(app, ["keys", "create", "ops", "--scope", "admin", "--store", pg_url])
    assert made.exit_code == 0, made.output
    with Store(pg_url) as st:
        (key,) = KeyStore(st).list()
        assert key.name == "ops" and key.active and st.counts()["events"] == 20
    gone = runner.invoke(app, ["keys", "revoke", key.key_id, "--store", pg_url])
    assert gone.exit_code == 0, gone.output
    listed = runner.invoke(app, ["keys", "list", "--store", pg_url])
    assert listed.exit_code == 0 and key.key_id in " ".join(listed.output.split()), listed.output
    with Store(pg_url) as st:
        assert not KeyStore(st).get(key.key_id).active
