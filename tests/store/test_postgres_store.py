"""What only the PostgreSQL store has: a real unique index on event ids, several processes on one database,
change notices, shared rate buckets, and clear refusals for what does not apply (file encryption, backups)."""

from __future__ import annotations

import threading

import numpy as np
import polars as pl
import pytest

from lmrec.store import PostgresStore, Store, connect, is_store_file, open_read
from lmrec.store.audit import AuditEntry, AuditLog
from lmrec.store.backup import backup
from lmrec.store.duckdb_store import StoreKeyError
from lmrec.store.embeddings import EmbeddingSpace, EmbeddingTable
from lmrec.store.keys import KeyStore, recent_histories, user_events
from lmrec.store.postgres_store import redact, translate


def _ev(ids: list[str], user: str = "u", t0: int = 100) -> pl.DataFrame:
    return pl.DataFrame({"event_id": ids, "user_id": [user] * len(ids),
                         "item_id": [f"i{k}" for k in range(len(ids))],
                         "timestamp": [t0 + k for k in range(len(ids))]})


def test_url_picks_the_backend(pg_url, tmp_path):
    with connect(pg_url) as st:
        assert isinstance(st, PostgresStore) and st.backend == "postgresql"
    with connect(tmp_path / "a.duckdb") as st:
        assert type(st) is Store and st.backend == "duckdb"
    assert is_store_file(pg_url)
    with open_read(pg_url) as ro:  # a server: readers never need a snapshot copy
        assert ro.read_only and ro.counts()["events"] == 0
        with pytest.raises(Exception, match="read-only"):
            ro.execute("INSERT INTO meta VALUES ('x', '1')")


def test_event_id_has_a_unique_index_shared_by_every_connection(pg_url):
    with Store(pg_url) as a, Store(pg_url) as b:
        idx = a.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'events'")
        assert any("UNIQUE" in r[0] and "(event_id)" in r[0] for r in idx)
        assert a.append_events(_ev(["e1", "e2"])).events_inserted == 2
        res = b.append_events(_ev(["e2", "e3"]))  # another process's store: e2 is already there
        assert (res.events_inserted, res.events_already_present) == (1, 1)
        assert a.events()["event_id"].to_list() == ["e1", "e2", "e3"]


def test_concurrent_writers_store_each_id_once(pg_url):
    stores = [Store(pg_url) for _ in range(4)]
    ids = [f"e{k}" for k in range(300)]
    inserted = [0] * len(stores)

    def write(n: int) -> None:
        for start in range(0, len(ids), 50):
            inserted[n] += stores[n].append_events(_ev(ids[start:start + 50], t0=start)).events_inserted

    threads = [threading.Thread(target=write, args=(n,)) for n in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sum(inserted) == len(ids) and stores[0].counts()["events"] == len(ids)
    for st in stores:
        st.close()


def test_translation_of_duckdb_spellings():
    assert translate("SELECT 1 WHERE a = ? AND b LIKE '5%'") == "SELECT 1 WHERE a = %s AND b LIKE '5%%'"
    assert translate("ALTER TABLE t ADD COLUMN x DOUBLE") == "ALTER TABLE t ADD COLUMN x DOUBLE PRECISION"
    assert (translate("INSERT OR IGNORE INTO t (a) VALUES (?)")
            == "INSERT INTO t (a) VALUES (%s) ON CONFLICT DO NOTHING")
    assert translate("SELECT v FROM t ORDER BY rowid") == "SELECT v FROM t ORDER BY rid"
    assert redact("postgresql://me:secret@db:5432/x") == "postgresql://me:***@db:5432/x"


def test_literal_percent_signs_survive_with_and_without_parameters(pg_url):
    with Store(pg_url) as st:
        assert st.execute("SELECT '5%'") == [("5%",)]
        assert st.execute("SELECT '5%' || ?", ["x"]) == [("5%x",)]
        assert st.query("SELECT '5%' AS p")["p"].to_list() == ["5%"]


def test_keys_tombstones_audit_and_embeddings(pg_url):
    with Store(pg_url) as st:
        st.append_events(_ev(["a1", "a2", "a3"], user="ann"))
        keys = KeyStore(st)
        full, rec = keys.create("ops", ["write"], rate_limit=3.0)
        assert keys.verify(full) == rec and rec.allows("read") and not rec.allows("admin")
        assert keys.revoke(rec.key_id) and keys.verify(full) is None and not keys.revoke(rec.key_id)
        assert user_events(st, "ann", 2) == [("i1", "view"), ("i2", "view")]
        assert recent_histories(st, 5, 5) == {"ann": [("i0", "view"), ("i1", "view"), ("i2", "view")]}
        removed = keys.erase_user("ann")
        assert removed["events"] == 3 and keys.is_erased("ann") and not keys.is_erased("bob")
        assert st.counts()["events"] == 0
        log = AuditLog(st)
        log.append([AuditEntry("POST", "/v1/events", key_id="k1", status=200, count=3),
                     AuditEntry("DELETE", "/v1/users/x", key_id="k2", status=200)])
        assert [e["key_id"] for e in log.query(route="events")] == ["k1"]
        assert [e["route"] for e in log.query()] == ["/v1/users/x", "/v1/events"]  # newest first
        table, space = EmbeddingTable(st), EmbeddingSpace("enc", "r1")
        vecs = np.arange(8, dtype=np.float32).reshape(2, 4)
        assert table.put(space, ["h1", "h2"], vecs) == 2 and table.put(space, ["h1"], vecs[:1]) == 0
        pos, got = table.lookup(space, ["h9", "h2"])
        assert pos.tolist() == [1] and np.array_equal(got, vecs[1:])
        assert table.spaces()["n_vectors"].to_list() == [2]


def test_notices_reach_another_connection(pg_url):
    with Store(pg_url) as writer, Store(pg_url) as reader:
        got: list[dict] = []
        ready, done = threading.Event(), threading.Event()

        def listen() -> None:
            for notice in reader.listen():
                ready.set()
                if notice is not None:
                    got.append(notice)
                    if notice["kind"] == "events":
                        done.set()
                        return

        t = threading.Thread(target=listen, daemon=True)
        t.start()
        # the listener yields None once a second while idle: it is listening once it has yielded
        assert ready.wait(30)
        writer.append_events(_ev(["n1", "n2"], user="zoe"))
        assert done.wait(30)
        assert got[-1] == {"kind": "events", "ids": ["zoe"]}


def test_rate_bucket_is_shared_between_connections(pg_url):
    with Store(pg_url) as a, Store(pg_url) as b:
        # a rate of one token per hour: the two tokens of the bucket are all there is during the test
        rate = 1 / 3600
        waits = [a.take_token("k", rate, 2), b.take_token("k", rate, 2), a.take_token("k", rate, 2),
                 b.take_token("k", rate, 2)]
        assert waits[:2] == [0.0, 0.0] and all(w > 0 for w in waits[2:])
        assert a.take_token("other", rate, 2) == 0.0


def test_a_job_runs_in_one_process_at_a_time(pg_url, tmp_path):
    with Store(pg_url) as a, Store(pg_url) as b:
        with a.exclusive("job") as first:
            assert first
            with b.exclusive("job") as second, b.exclusive("other") as other:
                assert not second and other  # another process holds "job"; "other" is free
        with b.exclusive("job") as after:  # released when the holder's block ended
            assert after
    with Store(tmp_path / "s.duckdb") as d, d.exclusive("job") as alone:  # one writer: its own
        assert alone


def test_what_does_not_apply_is_refused_by_name(pg_url, tmp_path, monkeypatch):
    with Store(pg_url) as st, pytest.raises(NotImplementedError, match="pg_dump"):
        backup(st, tmp_path / "b")
    monkeypatch.setenv("LMREC_STORE_KEY", "k" * 32)
    with pytest.raises(StoreKeyError, match="does not apply to a PostgreSQL store"):
        Store(pg_url)


def test_compact_rewrites_the_user_tables(pg_url):
    with Store(pg_url) as st:
        st.append_events(_ev([f"c{k}" for k in range(2000)], user="gone"))
        st.delete_user("gone")
        sizes = st.compact()
        assert sizes["bytes_after"] < sizes["bytes_before"] and st.counts()["events"] == 0


def test_pseudonym_rotation_rekeys_events_and_users(pg_url):
    with Store(pg_url) as st:
        st.append_events(_ev(["r1", "r2"], user="alice"))
        st.upsert_users(pl.DataFrame({"user_id": ["alice"], "profile": ["likes jazz"]}))
        assert st.rekey_users(lambda u: f"p-{u}", "rotation-1") == 1
        assert st.rekey_users(lambda u: f"q-{u}", "rotation-1") == 0  # done already: left alone
        assert set(st.events()["user_id"]) == {"p-alice"}
        assert st.users()["user_id"].to_list() == ["p-alice"]
        assert st.get_meta("pseudonym_rotations") == ["rotation-1"]


def test_replicas_starting_together_create_the_schema_without_a_race(pg_url: str) -> None:
    """Several processes opening a fresh database at once each run ``CREATE TABLE IF NOT EXISTS`` for the
    store, keys, tombstones and audit log; PostgreSQL fails such twins ("duplicate key ... pg_type") unless
    schema statements take turns (the kill drill's two replicas hit it)."""
    from lmrec.store.keys import KeyStore

    n = 6
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait(30)
            st = Store(pg_url)
            try:
                KeyStore(st)
                AuditLog(st)
            finally:
                st.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with Store(pg_url) as st:
        assert st.execute("SELECT count(*) FROM erased_users") == [(0,)]
