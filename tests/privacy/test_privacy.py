"""Privacy, checked on real files: erasure leaves no byte behind, pseudonymous ids never reach a file, keyed
tombstones, the encrypted store, and key rotation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from lmrec.cli import app as cli
from lmrec.data.ragged import Ragged
from lmrec.models import create_model, load_model
from lmrec.models.erasure import PRIVACY_FILE, privacy_record
from lmrec.serving import ServingSettings, create_app
from lmrec.store import Store
from lmrec.store.duckdb_store import StoreKeyError
from lmrec.store.keys import KeyStore
from tests.serving.serving_helpers import ITEMS, HashingEncoder, make_events, run_server

USER = "zq-erase-me-7781"
PROFILE = "zq profile: collects vintage typewriters in Lisbon"
EVENT_IDS = [f"zq-ev-{i:04d}" for i in range(30)]
LIVE_IDS = [f"zq-live-{i}" for i in range(5)]


@pytest.fixture(autouse=True)
def _secrets(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The erasure secret lives in a file outside every folder a test scans (never beside the store)."""
    secret = tmp_path_factory.mktemp("secrets") / "erasure-secret"
    secret.write_text("test-erasure-secret-0123456789\n")
    monkeypatch.delenv("LMREC_SECRET", raising=False)
    monkeypatch.setenv("LMREC_SECRET_FILE", str(secret))
    for var in ("LMREC_PSEUDONYM_SECRET", "LMREC_PSEUDONYM_SECRET_FILE", "LMREC_STORE_KEY",
                "LMREC_STORE_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)


def _user_events() -> pl.DataFrame:
    items = ITEMS["item_id"].to_list()
    return pl.DataFrame({"event_id": EVENT_IDS, "user_id": [USER] * 30,
                         "item_id": [items[i % len(items)] for i in range(30)],
                         "timestamp": [2_000_000 + i for i in range(30)], "event_type": ["view"] * 30})


def _fill(store: Store) -> None:
    """The tiny catalogue, other users' events, and our user's 30 events and profile — through the same
    loader path an import takes, so pseudonyms (when on) apply."""
    from lmrec.data.source import Source, pseudonymised

    src = pseudonymised(Source("test", events=pl.concat([make_events(), _user_events()], how="diagonal"),
                               items=ITEMS, users=pl.DataFrame({"user_id": [USER], "profile": [PROFILE]})))
    store.upsert_items(ITEMS)
    store.append_events(src.events)
    assert src.users is not None
    store.upsert_users(src.users)


def _hits(root: Path, needles: list[str]) -> dict[str, list[str]]:
    """Every file under ``root`` whose raw bytes contain a needle: ``{needle: [files]}`` (misses left out)."""
    found: dict[str, list[str]] = {}
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files, f"nothing under {root}"
    for p in files:
        data = p.read_bytes()
        for n in needles:
            if n.encode() in data:
                found.setdefault(n, []).append(str(p.relative_to(root)))
    return found


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real server on a free port over a store file and a registry of two models (item-kNN, ALS) trained
    on our user's events; yields ``(url, data folder)`` and stops the server and closes the store at exit."""
    data = tmp_path / "data"
    store = Store(data / "lmrec.duckdb")
    _fill(store)
    ds = store.to_dataset()
    create_model("itemknn", k=20).fit(ds).save(data / "models" / "v1")
    create_model("als", factors=8, iterations=3).fit(ds).save(data / "models" / "v2")
    settings = ServingSettings(model_dir=data / "models" / "v1", store=str(store.path), dev_mode=True)
    app = create_app(settings, store=store, encoder=HashingEncoder())
    try:
        with run_server(app) as url:
            yield url, data
    finally:
        store.close()


def _live_and_erase(url: str) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=60) as c:
        events = [{"event_id": e, "user_id": USER, "item_id": "heat", "timestamp": 3_000_000 + i}
                  for i, e in enumerate(LIVE_IDS)]
        assert c.post("/v1/events", json={"events": events}).status_code == 200
        r = c.get(f"/v1/users/{USER}/recommendations")
        assert r.status_code == 200 and r.json()["strategy"] == "model", r.text
        erased = c.delete(f"/v1/users/{USER}")
        assert c.get(f"/v1/users/{USER}/recommendations").status_code == 404
        return erased


@pytest.mark.slow
def test_erasure_leaves_no_byte_behind(served: tuple[str, Path]) -> None:
    url, data = served
    needles = [USER, PROFILE, *EVENT_IDS, *LIVE_IDS]
    before = _hits(data, [USER, PROFILE, EVENT_IDS[0]])
    assert USER in before and PROFILE in before  # the scan does find them while they are there
    r = _live_and_erase(url)
    assert r.status_code == 200, r.text
    assert r.json()["events_deleted"] == 35 and r.json()["profile_deleted"]
    with httpx.Client(base_url=url, timeout=30) as c:
        audit = c.get("/v1/admin/audit", params={"route": "users"}).json()
    assert audit and all(USER not in json.dumps(a) for a in audit)
    # What every saved model records: the folders were patched, and they say they need retraining.
    for version in ("v1", "v2"):
        rec = privacy_record(data / "models" / version)
        assert rec["erased_users_trained_on"] == 1 and rec["retrain_needed"] is True
        assert USER not in load_model(data / "models" / version).user_map
    # The server is still up here; the bytes are already gone (the store was compacted at erasure).
    assert _hits(data, needles) == {}


@pytest.mark.slow
def test_forget_retrains_folders_trained_on_erased_users(served: tuple[str, Path]) -> None:
    url, data = served
    assert _live_and_erase(url).status_code == 200
    # The CLI opens the store itself, so it runs on a copy (the server holds the file).
    import shutil

    copy = data.parent / "copy"
    shutil.copytree(data, copy)
    res = CliRunner().invoke(cli, ["privacy", "forget", "--models-dir", str(copy / "models"), "--store",
                                   str(copy / "lmrec.duckdb"), "--retrain"])
    assert res.exit_code == 0, res.output
    assert "retrained" in res.output
    for version in ("v1", "v2"):
        rec = privacy_record(copy / "models" / version)
        assert rec["retrain_needed"] is False and "retrained_at" in rec
        assert len(load_model(copy / "models" / version).user_map) == 30  # the others, not the erased one
    status = CliRunner().invoke(cli, ["privacy", "status", "--models-dir", str(copy / "models"), "--store",
                                      str(copy / "lmrec.duckdb")])
    assert status.exit_code == 0 and "no" in status.output, status.output


@pytest.mark.slow
def test_pseudonymous_ids_never_reach_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMREC_PSEUDONYM_SECRET", "pseudonym-key-1")
    data = tmp_path / "data"
    store = Store(data / "lmrec.duckdb")
    _fill(store)
    create_model("itemknn", k=20).fit(store.to_dataset()).save(data / "models" / "v1")
    settings = ServingSettings(model_dir=data / "models" / "v1", store=str(store.path), dev_mode=True)
    app = create_app(settings, store=store, encoder=HashingEncoder())
    try:
        with run_server(app) as url, httpx.Client(base_url=url, timeout=60) as c:
            ev = [{"event_id": "zq-live-0", "user_id": USER, "item_id": "heat", "timestamp": 3_000_000}]
            assert c.post("/v1/events", json={"events": ev}).status_code == 200
            r = c.get(f"/v1/users/{USER}/recommendations")  # the API still takes the raw id
            assert r.status_code == 200 and r.json()["strategy"] == "model", r.text
            assert r.json()["user_id"] == USER
            store.execute("CHECKPOINT")
            assert _hits(data, [USER]) == {}  # before any erasure: no raw id in any file
            assert c.delete(f"/v1/users/{USER}").status_code == 200
            assert c.get(f"/v1/users/{USER}/recommendations").status_code == 404
        assert _hits(data, [USER, PROFILE, *EVENT_IDS]) == {}
    finally:
        store.close()
    res = CliRunner().invoke(cli, ["privacy", "pseudonym", USER])
    assert res.exit_code == 0 and "p_" in res.output


def test_tombstones_are_keyed_by_a_secret_kept_outside_the_store(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with Store(tmp_path / "s.duckdb") as st:
        keys = KeyStore(st)
        keys.mark_erased("alice")
        assert keys.is_erased("alice") and not keys.is_erased("bob")
        assert st.get_meta("erasure_salt") is None  # nothing in the store lets anyone test candidate ids
        stored = st.execute("SELECT user_hash FROM erased_users")[0][0]
        monkeypatch.setenv("LMREC_SECRET", "another-secret")
        assert not keys.is_erased("alice")  # without the secret the tombstone matches nothing
        assert "alice" not in stored


def test_the_default_erasure_secret_is_created_once_outside_the_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lmrec import privacy

    monkeypatch.delenv("LMREC_SECRET_FILE")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    first = privacy.erasure_secret()
    path = privacy.default_secret_path()
    assert path.is_file() and oct(path.stat().st_mode & 0o777) == "0o600"
    assert privacy.erasure_secret() == first and len(first) >= 32


def test_cli_erase_compacts_and_patches_folders(tmp_path: Path) -> None:
    store = Store(tmp_path / "lmrec.duckdb")
    _fill(store)
    create_model("itemknn", k=20).fit(store.to_dataset()).save(tmp_path / "models" / "v1")
    store.close()
    res = CliRunner().invoke(cli, ["data", "erase", USER, "--store", str(tmp_path / "lmrec.duckdb"),
                                   "--models-dir", str(tmp_path / "models")])
    assert res.exit_code == 0, res.output
    assert "30 events" in res.output and "1 model folder" in res.output
    assert _hits(tmp_path, [USER, PROFILE, *EVENT_IDS]) == {}
    assert (tmp_path / "models" / "v1" / PRIVACY_FILE).is_file()


def test_forget_users_drops_ids_and_histories_only() -> None:
    with Store(":memory:") as st:
        _fill(st)
        ds = st.to_dataset()
    m = create_model("itemknn", k=20).fit(ds)
    n_ids = len(m.user_map)
    before = m.recommend(["u1"], k=3)[0]
    assert m.forget_users([USER, "nobody"]) == 1
    assert USER not in m.user_map and len(m.user_map) == n_ids  # the indices of others do not move
    assert (m.recommend(["u1"], k=3)[0] == before).all()
    r = Ragged.from_lists([[1, 2], [3], [4, 5, 6]]).emptied([0, 2])
    assert r.to_lists() == [[], [3], []]
    assert np.array_equal(r.values, [3])


@pytest.mark.parametrize("rotate_twice", [False, True])
def test_pseudonym_rotation_rekeys_store_and_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    rotate_twice: bool) -> None:
    from lmrec.privacy import user_key

    keyfile = tmp_path / "pseudonym.keys"
    keyfile.write_text("key-one\n")
    monkeypatch.setenv("LMREC_PSEUDONYM_SECRET_FILE", str(keyfile))
    with Store(tmp_path / "lmrec.duckdb") as st:
        _fill(st)
        create_model("itemknn", k=20).fit(st.to_dataset()).save(tmp_path / "models" / "v1")
    old = user_key(USER)
    (tmp_path / "new.key").write_text("key-two\n")
    args = ["privacy", "rotate-pseudonyms", "--new-secret-file", str(tmp_path / "new.key"), "--store",
            str(tmp_path / "lmrec.duckdb"), "--models-dir", str(tmp_path / "models")]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    new = user_key(USER)  # the file now holds both keys: the chain maps the raw id to the new pseudonym
    assert new != old and keyfile.read_text().splitlines() == ["key-one", "key-two"]
    if rotate_twice:  # the same key again is refused, not applied twice
        assert CliRunner().invoke(cli, args).exit_code != 0
    with Store(tmp_path / "lmrec.duckdb") as st:
        assert st.execute("SELECT count(*) FROM events WHERE user_id = ?", [new])[0][0] == 30
        assert st.execute("SELECT count(*) FROM users WHERE user_id = ?", [new])[0][0] == 1
    assert new in load_model(tmp_path / "models" / "v1").user_map
    assert _hits(tmp_path, [old]) == {}


def test_encrypted_store_backup_and_key_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB's encryption: nothing readable on disk, the backup encrypted too, and a missing or wrong key is
    an error. This machine has no OpenSSL-backed httpfs for DuckDB 2.0, so the test opts in to DuckDB's
    built-in crypto (the variable says what that risks; docs/privacy.md)."""
    from lmrec.store.backup import backup, restore

    monkeypatch.setenv("LMREC_STORE_KEY", "store-key-1")
    monkeypatch.setenv("LMREC_STORE_ENCRYPTION_UNSAFE_MBEDTLS", "1")
    path = tmp_path / "enc.duckdb"
    with Store(path) as st:
        assert st.encrypted
        _fill(st)
        KeyStore(st).create("ops", ["admin"])
        manifest = backup(st, tmp_path / "bk")
        st.compact()
        counts = st.counts()
    assert manifest["encrypted"] is True
    assert _hits(tmp_path, [USER, PROFILE, "Toy Story"]) == {}
    restore(tmp_path / "bk", tmp_path / "restored.duckdb")
    with Store(tmp_path / "restored.duckdb") as st:
        assert st.encrypted and st.counts() == counts
    monkeypatch.setenv("LMREC_STORE_KEY", "wrong")
    with pytest.raises(StoreKeyError, match="key is wrong"):
        Store(path)
    monkeypatch.delenv("LMREC_STORE_KEY")
    with pytest.raises(StoreKeyError, match="encrypted"):
        Store(path)
    with pytest.raises(StoreKeyError, match="encrypted"):
        restore(tmp_path / "bk", tmp_path / "again.duckdb")
    assert not (tmp_path / "again.duckdb").exists()
    monkeypatch.setenv("LMREC_STORE_KEY", "store-key-1")
    monkeypatch.delenv("LMREC_STORE_ENCRYPTION_UNSAFE_MBEDTLS")
    with pytest.raises(StoreKeyError, match="httpfs"):  # writing needs real crypto, or the explicit opt-in
        Store(tmp_path / "new.duckdb")
