"""Impressions (list id and position) on a PostgreSQL store: kept by the service's small inserts and by
imports, left out of a user's sequence and the text coverage, as on DuckDB."""

from __future__ import annotations

import polars as pl

from lmrec.store import Store


def test_impressions_round_trip_on_postgres(pg_url: str) -> None:
    st = Store(pg_url)
    try:
        ev = pl.DataFrame({
            "event_id": ["e1", "i1", "i2", "e2"],
            "user_id": ["u1", "u1", "u1", "u1"],
            "item_id": ["a", "a", "b", "a"],
            "timestamp": [1, 2, 2, 3],
            "event_type": ["view", "impression", "impression", "click"],
            "value": [None, None, None, None],
            "list_id": [None, "L1", "L1", "L1"],
            "position": [None, 0, 1, 0],
        })
        st.append_events(ev)
        got = st.events().sort("event_id")
        assert got.filter(pl.col("event_type") == "impression")["position"].to_list() == [0, 1]
        assert got.filter(pl.col("event_id") == "e2")["list_id"].to_list() == ["L1"]
        seq = st.user_sequence("u1")
        assert seq["event_type"].to_list() == ["view", "click"]
        assert st.user_sequence("u1", impressions=True).height == 4
        assert st.user_sequence("u1", limit=1)["event_id"].to_list() == ["e2"]  # the newest interaction
        ds = st.to_dataset()
        assert ds.impressions.height == 2 and ds.sequences.lengths.tolist()[-1] == 2
    finally:
        st.close()
