"""The experiment tables: older stores gain them, answers join the events that follow them (on DuckDB and on a
real PostgreSQL server, so that replicas can run experiments), erasure and backups carry them."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from lmrec.store import Store, open_read
from lmrec.store.backup import backup, restore
from lmrec.store.experiments import ExperimentTable, has_tables

ARMS = [{"name": "a", "version": "v1", "share": 0.5}, {"name": "b", "version": "v2", "share": 0.5}]
T0 = 1_700_000_000


def _record(name: str = "exp", window_s: int = 3600) -> dict:
    return {"name": name, "salt": "s", "arms": ARMS, "window_s": window_s, "alpha": 0.05, "description": "d"}


def _events(rows: list[tuple[str, str, int, str, float | None]]) -> pl.DataFrame:
    return pl.DataFrame([{"event_id": f"e{i}", "user_id": u, "item_id": it, "timestamp": t, "event_type": et,
                          "value": v} for i, (u, it, t, et, v) in enumerate(rows)],
                        schema={"event_id": pl.String, "user_id": pl.String, "item_id": pl.String,
                                "timestamp": pl.Int64, "event_type": pl.String, "value": pl.Float64})


def test_a_store_written_before_the_tables_opens_and_gains_them(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    with Store(path) as st:
        st.append_events(_events([("u", "i", T0, "view", None)]))
    with open_read(path) as ro:  # read-only, no tables yet: empty answers instead of errors
        t = ExperimentTable(ro)
        assert not t.present and t.list() == [] and t.get("x") is None
        assert t.user_outcomes("x", 60).height == 0
    with Store(path) as st:
        t = ExperimentTable(st)  # a writable open creates them, as KeyStore does its tables
        assert has_tables(st) and t.present
        rec = t.create(_record())
        assert rec["arms"] == ARMS and rec["stopped_at"] is None and rec["window_s"] == 3600
        with pytest.raises(ValueError, match="exists"):
            t.create(_record())
        assert t.stop("exp")["stopped_at"] is not None
        assert t.stop("exp") is None and t.stop("nope") is None
        assert st.counts()["events"] == 1


@pytest.fixture(params=["duckdb", "postgresql"])
def target(request, tmp_path):
    return tmp_path / "s.duckdb" if request.param == "duckdb" else request.getfixturevalue("pg_url")


def test_outcomes_count_each_event_once_for_the_latest_answer_that_listed_it(target) -> None:
    with Store(target) as st:
        t = ExperimentTable(st)
        t.create(_record(window_s=100))
        t.record([
            ("l1", "exp", "a", "v1", "u1", T0 + 0.5, ["x", "y"]),
            ("l2", "exp", "a", "v1", "u1", T0 + 50, ["y", "z"]),
            ("l3", "exp", "b", "v2", "u2", T0, ["x"]),
            ("l4", "exp", "b", "v2", "u3", T0, ["x"]),
            ("l5", "other", "a", "v1", "u1", T0, ["x", "y", "z"]),
        ])
        st.append_events(_events([
            ("u1", "x", T0 + 10, "view", None),  # l1 (the only answer listing x before it)
            ("u1", "y", T0 + 60, "click", None),  # l2: the latest answer listing y
            ("u1", "y", T0 + 61, "purchase", 20.0),  # l2
            ("u1", "z", T0 + 40, "purchase", 5.0),  # before l2 listed z: not attributed
            ("u2", "x", T0 - 5, "purchase", 7.0),  # before the answer
            ("u2", "x", T0 + 101, "purchase", 7.0),  # after the window
            ("u2", "x", T0 + 100, "cart", None),  # the window's last second
            ("u3", "q", T0 + 1, "purchase", 9.0),  # not recommended
        ]))
        got = {r["user_id"]: r for r in t.user_outcomes("exp", 100).to_dicts()}
        assert got["u1"] == {"user_id": "u1", "arm": "a", "answers": 2, "clicked_answers": 2, "clicked": 1,
                             "carted": 0, "bought": 1, "revenue": 20.0}
        assert got["u2"] == {"user_id": "u2", "arm": "b", "answers": 1, "clicked_answers": 0, "clicked": 0,
                             "carted": 1, "bought": 0, "revenue": 0.0}
        assert got["u3"]["bought"] == 0 and got["u3"]["revenue"] == 0.0
        served = t.served_counts()
        assert served.filter(pl.col("experiment") == "exp")["answers"].sum() == 4

        st.delete_user("u1")  # an erasure takes the user's answers with it
        assert "u1" not in t.exposures("exp")["user_id"].to_list()
        assert t.exposures("other").height == 0


def test_backups_carry_experiments_and_their_answers(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as st:
        t = ExperimentTable(st)
        t.create(_record())
        t.record([("l1", "exp", "a", "v1", "u1", T0, ["x", "y"])])
        manifest = backup(st, tmp_path / "bk")
    assert {"experiments", "experiment_exposures"} <= set(manifest["tables"])
    restore(tmp_path / "bk", tmp_path / "restored.duckdb")
    with Store(tmp_path / "restored.duckdb") as st:
        t = ExperimentTable(st)
        assert t.get("exp")["arms"] == ARMS
        assert t.exposures("exp")["items"].to_list() == [["x", "y"]]
