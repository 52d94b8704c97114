"""Backups of a store and its model registry, taken while the service runs, and their restore.

A backup is a folder: one Parquet file per table (events, items, users, API keys, erasure tombstones, audit
log, online experiments and the answers they served, metadata), a copy of the model registry (``models/``)
and ``manifest.json`` with each table's row count and content hash. The tables are read in one DuckDB
transaction on a connection of their own, so the snapshot is consistent (MVCC) and writers are not stopped.
:func:`restore` rebuilds a store file from it, checks every count and hash against the manifest, and only
then moves the file into place.

A backup taken by a running service (``POST /v1/admin/backup``) lies on the service's machine; :func:`archive`
streams such a folder as an uncompressed tar (``GET /v1/admin/backups/{name}``) and :func:`unpack` writes that
stream into a new folder on the client's side and checks it with :func:`verify`, so that ``lmrec backup OUT
--url ...`` leaves the backup at ``OUT`` where the command runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lmrec.store.audit import AuditLog
from lmrec.store.duckdb_store import Store, StoreKeyError, parquet_encryption
from lmrec.store.experiments import ExperimentTable
from lmrec.store.keys import KeyStore

#: Tables a backup carries (those that exist in the store).
TABLES = ("events", "items", "users", "api_keys", "erased_users", "audit_log", "experiments",
          "experiment_exposures", "meta")
MANIFEST = "manifest.json"


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _columns(con: Any, table: str) -> list[str]:
    rows = con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                       "ORDER BY ordinal_position", [table]).fetchall()
    return [r[0] for r in rows]


def fingerprint(con: Any, table: str, columns: list[str] | None = None) -> dict[str, int | str]:
    """Row count and an order-independent content hash of a table (every column, or ``columns``)."""
    cols = ", ".join(f'"{c}"' for c in (columns or _columns(con, table)))
    rows = con.execute(f"SELECT count(*), coalesce(sum(hash({cols})::HUGEINT), 0) FROM {table}").fetchall()
    return {"rows": int(rows[0][0]), "hash": str(rows[0][1])}


def _refuse_other_backends(store: Store) -> None:
    if store.backend != "duckdb":
        raise NotImplementedError(
            f"lmrec backup copies a DuckDB store; this store is on {store.backend}: back it up with the "
            "server's own tools (pg_dump, or continuous archiving) and copy the models folder beside it")


def fingerprints(store: Store) -> dict[str, dict[str, int | str]]:
    """:func:`fingerprint` of every backed-up table the store has."""
    _refuse_other_backends(store)
    have = {r[0] for r in store.execute("SELECT table_name FROM information_schema.tables")}
    with store._lock:  # noqa: SLF001 - one statement sequence on the store's own connection
        return {t: fingerprint(store._con, t) for t in TABLES if t in have}  # noqa: SLF001


def backup(store: Store, out: str | Path, models_dir: str | Path | None = None) -> dict[str, Any]:
    """Write a consistent snapshot of ``store`` (and a copy of ``models_dir``) to the new folder ``out``.

    Safe while a service writes to the store: the tables are read in one read transaction on a separate
    connection. Returns the manifest. A PostgreSQL store is refused (``pg_dump`` backs it up).
    """
    _refuse_other_backends(store)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder for the backup")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    own = store.path != ":memory:"
    con = store.cursor() if own else None  # a connection of its own: its transaction does not stop writers
    try:
        def snapshot(c: Any) -> dict[str, Any]:
            have = {r[0] for r in c.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_catalog = current_database()").fetchall()}
            tables = {}
            for t in TABLES:
                if t not in have:
                    continue
                c.execute(f"COPY (SELECT * FROM {t}) TO {_literal(tmp / (t + '.parquet'))} "
                          f"(FORMAT PARQUET{encrypt})")
                tables[t] = fingerprint(c, t)
            return tables

        # An encrypted store's backup is encrypted too (set up outside the transaction: a failed LOAD
        # aborts it)
        if con is not None:
            encrypt, _ = parquet_encryption(con)
        else:
            with store._lock:  # noqa: SLF001
                encrypt, _ = parquet_encryption(store._con)  # noqa: SLF001
        if con is not None:
            con.execute("BEGIN TRANSACTION")
            try:
                tables = snapshot(con)
            finally:
                con.execute("ROLLBACK")
        else:
            with store._lock:  # noqa: SLF001 - an in-memory store has no second connection
                tables = snapshot(store._con)  # noqa: SLF001
    finally:
        if con is not None:
            con.close()
    models: list[str] = []
    if models_dir is not None and Path(models_dir).is_dir():
        for version in sorted(p for p in Path(models_dir).iterdir() if (p / "model.json").is_file()):
            shutil.copytree(version, tmp / "models" / version.name)
            models.append(version.name)
    manifest = {"format": 1, "created_at": time.time(), "store": str(store.path), "tables": tables,
                "models": models, "encrypted": store.encrypted}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return manifest


#: Bytes read from a file per chunk of an archive stream.
ARCHIVE_CHUNK = 1 << 20


def archive(folder: str | Path) -> Iterator[bytes]:
    """The backup ``folder`` as an uncompressed tar stream (member names relative to it), in chunks of at most
    about :data:`ARCHIVE_CHUNK` bytes: files are read piece by piece, never whole into memory. The manifest
    comes last, so a stream cut short never carries it."""
    root = Path(folder)
    read_manifest(root)  # only backups are streamed
    for path in sorted(root.rglob("*"), key=lambda p: (p == root / MANIFEST, p)):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            continue
        rel = path.relative_to(root).as_posix()
        info = tarfile.TarInfo(rel)
        info.mtime = int(path.stat().st_mtime)
        if path.is_dir():
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            yield info.tobuf(format=tarfile.PAX_FORMAT)
            continue
        info.size, info.mode = path.stat().st_size, 0o644
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        sent = 0
        with open(path, "rb") as fh:
            while sent < info.size and (chunk := fh.read(min(ARCHIVE_CHUNK, info.size - sent))):
                sent += len(chunk)
                yield chunk
        if sent != info.size:
            raise OSError(f"{path} changed size while it was archived")
        if info.size % tarfile.BLOCKSIZE:
            yield b"\0" * (tarfile.BLOCKSIZE - info.size % tarfile.BLOCKSIZE)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)  # end of archive


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterable of byte chunks (for :mod:`tarfile`'s stream mode)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._it)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n], self._buf = self._buf[:n], self._buf[n:]
        return n


def unpack(chunks: Iterable[bytes], out: str | Path) -> dict[str, Any]:
    """Write a tar stream made by :func:`archive` into the new folder ``out`` and :func:`verify` it; the
    folder appears only once the whole backup is there and checked. Returns its manifest."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder for the backup")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=io.BufferedReader(_ChunkReader(chunks)), mode="r|") as tar:
            tar.extractall(tmp, filter="data")  # refuses absolute paths, links out of tmp, devices
        manifest = verify(tmp)
    except (tarfile.TarError, FileNotFoundError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"the backup stream is incomplete or not an lmrec backup: {exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return manifest


def verify(folder: str | Path) -> dict[str, Any]:
    """Check a backup folder against its manifest: every table's Parquet file has the recorded row count and
    content hash (read by an in-memory DuckDB), and every model version is there. Returns the manifest."""
    import duckdb

    folder = Path(folder)
    manifest = read_manifest(folder)
    con = duckdb.connect(":memory:")
    try:
        for t, expected in manifest["tables"].items():
            file = folder / f"{t}.parquet"
            if not file.is_file():
                raise ValueError(f"the backup {folder} lacks {file.name}")
            con.execute(f"CREATE TABLE {t} AS SELECT * FROM read_parquet({_literal(file)})")
            got = fingerprint(con, t)
            if got != expected:
                raise ValueError(f"{file.name} of the backup {folder} does not match its manifest "
                                 f"({got['rows']:,} rows, hash {got['hash']}; expected "
                                 f"{expected['rows']:,} rows, hash {expected['hash']})")
    finally:
        con.close()
    missing = [v for v in manifest.get("models", []) if not (folder / "models" / v / "model.json").is_file()]
    if missing:
        raise ValueError(f"the backup {folder} lacks the model version(s) {missing}")
    return manifest


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not an lmrec backup (no {MANIFEST})")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def restore(folder: str | Path, store_path: str | Path, models_dir: str | Path | None = None,
            force: bool = False) -> dict[str, Any]:
    """Rebuild the store ``store_path`` (and ``models_dir``) from a backup; every table's rows and hash are
    checked against the manifest before the file is moved into place. Returns the manifest."""
    folder, target = Path(folder), Path(store_path)
    manifest = read_manifest(folder)
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; restore into a new file, or pass --force to replace it "
                              "(stop the service that uses it first)")
    tmp = target.with_name(target.name + ".restoring")
    for p in (tmp, Path(str(tmp) + ".wal")):
        p.unlink(missing_ok=True)
    with Store(tmp) as st:
        KeyStore(st)
        AuditLog(st)
        ExperimentTable(st)
        if manifest.get("encrypted") and not st.encrypted:
            raise StoreKeyError("this backup is encrypted: set LMREC_STORE_KEY (or LMREC_STORE_KEY_FILE) to "
                                "the key of the store it was taken from")
        with st._lock:  # noqa: SLF001
            con = st._con  # noqa: SLF001
            _, decrypt = parquet_encryption(con) if manifest.get("encrypted") else ("", "")
            con.execute("BEGIN TRANSACTION")
            try:
                backed_up: dict[str, list[str]] = {}
                for t in manifest["tables"]:
                    source = f"read_parquet({_literal(folder / (t + '.parquet'))}{decrypt})"
                    con.execute(f"DELETE FROM {t}")
                    con.execute(f"INSERT INTO {t} BY NAME SELECT * FROM {source}")
                    # A backup of an older store lacks columns added since (events' list_id, position):
                    # they restore empty, and the backup's hash covers the columns it has.
                    backed_up[t] = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
                got = {t: fingerprint(con, t, backed_up[t]) for t in manifest["tables"]}
                if got != manifest["tables"]:
                    bad = [t for t in manifest["tables"] if got.get(t) != manifest["tables"][t]]
                    raise ValueError(f"the restored tables {bad} do not match the backup's manifest")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
    if models_dir is not None and manifest.get("models"):
        dest = Path(models_dir)
        for version in manifest["models"]:
            if (dest / version).exists():
                if not force:
                    raise FileExistsError(f"{dest / version} exists; pass --force to replace it")
                shutil.rmtree(dest / version)
            shutil.copytree(folder / "models" / version, dest / version)
    with contextlib.suppress(FileNotFoundError):
        Path(str(target) + ".wal").unlink()
    os.replace(tmp, target)
    return manifest
