"""Online experiments in the store: their definitions, the answers each arm served, and the per-user outcomes
that follow those answers.

Two tables, created when missing (a store written before them opens as before and gains them on its first
writable open):

* ``experiments``: one row per experiment: name, salt, arms (JSON: name, model version, share), the
  attribution window, alpha, a description, when it was created and stopped.
* ``experiment_exposures``: one row per answer served inside an experiment: its list id (the id the service
  returns with the answer), the experiment, arm and model version, the user, when (epoch seconds) and the
  recommended item ids in rank order. Rows are only inserted; an erasure deletes a user's rows
  (:meth:`lmrec.store.duckdb_store.Store.delete_user`).

:func:`user_outcomes` joins answers to the events that follow them: an event counts for the latest answer of
the same user, in the same experiment, that listed its item and was served at most ``window_s`` seconds
before it (last touch, so that an event never counts twice). Views and clicks are clicks; ``cart`` is an
add-to-cart; ``purchase`` a conversion, whose ``value`` is revenue.

The SQL is written once for both stores (DuckDB and PostgreSQL, :mod:`lmrec.store.postgres_store`): it keeps
to spellings both accept (``array_position`` rather than DuckDB's ``list_contains``, an ordered
``array_agg(…)[1]`` rather than ``min_by``, explicit ``GROUP BY`` columns).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import polars as pl

from lmrec.store.duckdb_store import Store

DDL = [
    """CREATE TABLE IF NOT EXISTS experiments (
        name VARCHAR PRIMARY KEY, salt VARCHAR NOT NULL, arms VARCHAR NOT NULL, window_s BIGINT NOT NULL,
        alpha DOUBLE NOT NULL, description VARCHAR, created_at DOUBLE NOT NULL, stopped_at DOUBLE)""",
    """CREATE TABLE IF NOT EXISTS experiment_exposures (
        list_id VARCHAR NOT NULL, experiment VARCHAR NOT NULL, arm VARCHAR NOT NULL,
        model_version VARCHAR NOT NULL, user_id VARCHAR NOT NULL, served_at DOUBLE NOT NULL,
        items VARCHAR[] NOT NULL)""",
]
TABLES = ("experiments", "experiment_exposures")

#: Event types that count as a click on a recommended item, an add-to-cart, a conversion.
CLICK_TYPES: tuple[str, ...] = ("view", "click")
CART_TYPES: tuple[str, ...] = ("cart",)
PURCHASE_TYPES: tuple[str, ...] = ("purchase",)

_COLUMNS = ("name", "salt", "arms", "window_s", "alpha", "description", "created_at", "stopped_at")


def has_tables(store: Store) -> bool:
    """Whether the store has the experiment tables (a read-only snapshot of an older store may not)."""
    have = {r[0] for r in store.execute("SELECT table_name FROM information_schema.tables")}
    return all(t in have for t in TABLES)


class ExperimentTable:
    """The experiment tables of a store.

    Parameters
    ----------
    store:
        An open store; the tables are created when missing unless it is read-only.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        if not store.read_only:
            for ddl in DDL:
                store.execute(ddl)
        self.present = has_tables(store)

    # ------------------------------------------------------------------ definitions
    def create(self, record: dict[str, Any]) -> dict[str, Any]:
        """Insert an experiment (``record``: the fields of :data:`_COLUMNS`, ``arms`` a list of dicts);
        ``ValueError`` when the name is taken."""
        if self.get(record["name"]) is not None:
            raise ValueError(f"an experiment named {record['name']!r} exists; choose another name")
        row = {**record, "created_at": record.get("created_at") or time.time(), "stopped_at": None}
        self.store.execute(
            f"INSERT INTO experiments ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
            [json.dumps(row["arms"]) if k == "arms" else row.get(k) for k in _COLUMNS])
        self.store.notify("experiments", name=record["name"])  # other replicas route by it at once
        out = self.get(record["name"])
        assert out is not None
        return out

    def get(self, name: str) -> dict[str, Any] | None:
        if not self.present:
            return None
        rows = self.store.execute(f"SELECT {', '.join(_COLUMNS)} FROM experiments WHERE name = ?", [name])
        return _record(rows[0]) if rows else None

    def list(self) -> list[dict[str, Any]]:
        """Every experiment, oldest first."""
        if not self.present:
            return []
        rows = self.store.execute(f"SELECT {', '.join(_COLUMNS)} FROM experiments ORDER BY created_at, name")
        return [_record(r) for r in rows]

    def stop(self, name: str, at: float | None = None) -> dict[str, Any] | None:
        """Stop a running experiment (its users go back to the active model); ``None`` when no running
        experiment has this name."""
        rows = self.store.execute("UPDATE experiments SET stopped_at = ? WHERE name = ? "
                                  "AND stopped_at IS NULL RETURNING name", [at or time.time(), name])
        if rows:
            self.store.notify("experiments", name=name)
        return self.get(name) if rows else None

    # ------------------------------------------------------------------ answers
    def record(self, rows: list[tuple[str, str, str, str, str, float, list[str]]]) -> None:
        """Insert answers ``(list_id, experiment, arm, model_version, user_id, served_at, items)``."""
        if not rows:
            return
        frame = pl.DataFrame(rows, schema={"list_id": pl.String, "experiment": pl.String, "arm": pl.String,
                                           "model_version": pl.String, "user_id": pl.String,
                                           "served_at": pl.Float64, "items": pl.List(pl.String)},
                             orient="row")
        with self.store._lock:  # noqa: SLF001 (registering a frame is this layer's business)
            self.store._register("_lmrec_exposures", frame)  # noqa: SLF001
            try:
                self.store._con.execute("INSERT INTO experiment_exposures SELECT * FROM _lmrec_exposures")  # noqa: SLF001
            finally:
                self.store._unregister("_lmrec_exposures")  # noqa: SLF001

    def exposures(self, experiment: str) -> pl.DataFrame:
        """The answers of one experiment, in the order served (those served at one instant by list id)."""
        return self.store.query(
            "SELECT list_id, arm, model_version, user_id, served_at, items FROM experiment_exposures "
            "WHERE experiment = ? ORDER BY served_at, list_id", [experiment])

    def user_outcomes(self, experiment: str, window_s: int) -> pl.DataFrame:
        """One row per exposed user of ``experiment``: ``user_id, arm, answers, clicked_answers, clicked,
        carted, bought, revenue`` (flags 0/1), from the events that follow the answers (module doc)."""
        if not self.present:
            return pl.DataFrame(schema={"user_id": pl.String, "arm": pl.String, "answers": pl.Int64,
                                        "clicked_answers": pl.Int64, "clicked": pl.Int64, "carted": pl.Int64,
                                        "bought": pl.Int64, "revenue": pl.Float64})
        clicks, carts, buys = (", ".join(f"'{t}'" for t in ts) for ts in (CLICK_TYPES, CART_TYPES,
                                                                          PURCHASE_TYPES))
        return self.store.query(
            f"""WITH x AS (
                    SELECT list_id, arm, user_id, served_at, items FROM experiment_exposures
                    WHERE experiment = ?),
                ev AS (  -- the events that can follow an answer: exposed users', from the first answer on
                    SELECT event_id, user_id, item_id, timestamp, event_type, value FROM events
                    WHERE timestamp >= (SELECT floor(min(served_at)) FROM x)
                      AND user_id IN (SELECT DISTINCT user_id FROM x)),
                hits AS (
                    SELECT x.list_id, x.user_id, e.event_type, e.value,
                           row_number() OVER (PARTITION BY e.event_id
                                              ORDER BY x.served_at DESC, x.list_id) AS r
                    FROM x JOIN ev e ON e.user_id = x.user_id
                         AND e.timestamp >= floor(x.served_at) AND e.timestamp <= x.served_at + ?
                         AND coalesce(array_position(x.items, e.item_id), 0) > 0),
                per_list AS (
                    SELECT list_id,
                           max(CASE WHEN event_type IN ({clicks}) THEN 1 ELSE 0 END) AS clicked,
                           max(CASE WHEN event_type IN ({carts}) THEN 1 ELSE 0 END) AS carted,
                           max(CASE WHEN event_type IN ({buys}) THEN 1 ELSE 0 END) AS bought,
                           sum(CASE WHEN event_type IN ({buys}) THEN coalesce(value, 0) ELSE 0 END) AS revenue
                    FROM hits WHERE r = 1 GROUP BY list_id),
                users AS (
                    SELECT user_id, (array_agg(arm ORDER BY served_at, list_id))[1] AS arm,
                           count(*) AS answers
                    FROM x GROUP BY user_id)
            SELECT u.user_id, u.arm, u.answers,
                   coalesce(sum(p.clicked), 0)::BIGINT AS clicked_answers,
                   coalesce(max(p.clicked), 0)::BIGINT AS clicked,
                   coalesce(max(p.carted), 0)::BIGINT AS carted,
                   coalesce(max(p.bought), 0)::BIGINT AS bought,
                   coalesce(sum(p.revenue), 0)::DOUBLE AS revenue
            FROM users u LEFT JOIN x ON x.user_id = u.user_id LEFT JOIN per_list p ON p.list_id = x.list_id
            GROUP BY u.user_id, u.arm, u.answers ORDER BY u.user_id""",
            [experiment, int(window_s)])

    def served_counts(self) -> pl.DataFrame:
        """Answers per experiment, arm and model version."""
        if not self.present:
            return pl.DataFrame(schema={"experiment": pl.String, "arm": pl.String, "model_version": pl.String,
                                        "answers": pl.Int64, "users": pl.Int64,
                                        "first": pl.Float64, "last": pl.Float64})
        return self.store.query(
            "SELECT experiment, arm, model_version, count(*) AS answers, count(DISTINCT user_id) AS users, "
            "min(served_at) AS first, max(served_at) AS last FROM experiment_exposures "
            "GROUP BY experiment, arm, model_version ORDER BY experiment, arm")

    def exposures_per_hour(self, since: float) -> pl.DataFrame:
        """Answers served in experiments per hour since ``since`` (epoch seconds)."""
        if not self.present:
            return pl.DataFrame(schema={"hour": pl.Float64, "answers": pl.Int64})
        return self.store.query(
            "SELECT floor(served_at / 3600) * 3600 AS hour, count(*) AS answers FROM experiment_exposures "
            "WHERE served_at >= ? GROUP BY 1 ORDER BY hour", [since])


def _record(row: tuple[Any, ...]) -> dict[str, Any]:
    d = dict(zip(_COLUMNS, row, strict=True))
    d["arms"] = json.loads(d["arms"])
    return d


def iso(ts: float | None) -> str | None:
    """Epoch seconds as an ISO-8601 UTC string."""
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")
