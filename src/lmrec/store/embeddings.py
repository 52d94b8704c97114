"""The embedding cache's tables: text vectors keyed by (encoder, revision, template, settings, dtype,
text hash).

A *space* is one (encoder name, revision, template, settings, storage dtype): vectors of one space are
comparable with each other and with nothing else. Each space records its dimension on first write; writing
or importing vectors of another size is an :class:`EmbeddingDimensionError`.

Vectors are stored as little-endian BLOBs (float32 or float16) and read back for many texts with one join,
whose Arrow result is turned into one numpy array without a Python loop.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa

from lmrec.store.duckdb_store import Store

StorageDtype = Literal["float32", "float16"]

_DDL = [
    """CREATE TABLE IF NOT EXISTS embedding_spaces (
        space_id VARCHAR PRIMARY KEY, encoder VARCHAR NOT NULL, revision VARCHAR NOT NULL,
        template VARCHAR NOT NULL, settings VARCHAR NOT NULL, dtype VARCHAR NOT NULL, dim INTEGER NOT NULL,
        created_at TIMESTAMP DEFAULT current_timestamp)""",
    """CREATE TABLE IF NOT EXISTS embeddings (
        space_id VARCHAR NOT NULL, text_hash VARCHAR NOT NULL, vector BLOB NOT NULL,
        PRIMARY KEY (space_id, text_hash))""",
]


class EmbeddingDimensionError(ValueError):
    """Vectors whose size differs from the size their embedding space was created with."""


@dataclass(frozen=True)
class EmbeddingSpace:
    """Which vectors: the encoder that made them, from which text template, with which settings."""

    encoder: str
    revision: str
    template: str = ""
    settings: str = ""
    dtype: StorageDtype = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"embedding dtype must be 'float32' or 'float16', got {self.dtype!r}")

    @property
    def space_id(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True, ensure_ascii=False).encode()
        return hashlib.blake2b(blob, digest_size=16).hexdigest()

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype("<f4") if self.dtype == "float32" else np.dtype("<f2")


def text_hashes(texts: Sequence[str]) -> list[str]:
    """A 128-bit BLAKE2b hex digest of each text's UTF-8 bytes (stable across processes and versions)."""
    blake = hashlib.blake2b
    return [blake(t.encode("utf-8"), digest_size=16).hexdigest() for t in texts]


def open_store(store: Store | str | Path, *, wait_s: float = 30.0) -> Store:
    """Open a store file, waiting up to ``wait_s`` while another process holds DuckDB's write lock."""
    if isinstance(store, Store):
        return store
    import duckdb

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return Store(store)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise RuntimeError(f"cannot open the embedding cache {store}: {exc}") from exc
            time.sleep(0.2)


class EmbeddingTable:
    """The embedding cache inside a :class:`~lmrec.store.Store`.

    Parameters
    ----------
    store:
        The store whose DuckDB file holds the ``embedding_spaces`` and ``embeddings`` tables (created if
        missing).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        with store._lock:
            for ddl in _DDL:
                store._con.execute(ddl)

    # ------------------------------------------------------------------ spaces
    def dim(self, space: EmbeddingSpace) -> int | None:
        """The recorded dimension of a space, ``None`` when it holds nothing yet."""
        rows = self.store.execute("SELECT dim FROM embedding_spaces WHERE space_id = ?", [space.space_id])
        return int(rows[0][0]) if rows else None

    def check_dim(self, space: EmbeddingSpace, dim: int) -> None:
        """Raise :class:`EmbeddingDimensionError` when ``space`` already holds vectors of another size."""
        self._ensure_space(space, dim, create=False)

    def _ensure_space(self, space: EmbeddingSpace, dim: int, create: bool = True) -> None:
        known = self.dim(space)
        if known is None and not create:
            return
        if known is None:
            self.store.execute(
                "INSERT INTO embedding_spaces (space_id, encoder, revision, template, settings, dtype, dim) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [space.space_id, space.encoder, space.revision, space.template, space.settings, space.dtype,
                 dim])
        elif known != dim:
            raise EmbeddingDimensionError(
                f"vectors of dimension {dim} do not fit the cached embeddings of encoder {space.encoder!r} "
                f"(revision {space.revision}), which have dimension {known}. Two models share that name and "
                "revision, or the file comes from another model: give the encoder its own name, or clear the "
                "space with `EmbeddingTable.delete_space(...)`.")

    def spaces(self) -> pl.DataFrame:
        """Every space with its vector count."""
        return self.store.query(
            "SELECT s.space_id, s.encoder, s.revision, s.template, s.settings, s.dtype, s.dim, "
            "count(e.text_hash) AS n_vectors, s.created_at FROM embedding_spaces s "
            "LEFT JOIN embeddings e USING (space_id) "
            "GROUP BY s.space_id, s.encoder, s.revision, s.template, s.settings, s.dtype, s.dim, "
            "s.created_at "
            "ORDER BY s.created_at")

    def count(self, space: EmbeddingSpace) -> int:
        rows = self.store.execute("SELECT count(*) FROM embeddings WHERE space_id = ?", [space.space_id])
        return int(rows[0][0])

    def delete_space(self, space: EmbeddingSpace) -> int:
        """Remove a space and its vectors; returns how many vectors were removed."""
        def run() -> int:
            con, key = self.store._con, [space.space_id]
            n = con.execute("DELETE FROM embeddings WHERE space_id = ?", key).fetchall()
            con.execute("DELETE FROM embedding_spaces WHERE space_id = ?", key).fetchall()
            return int(n[0][0])

        return int(self.store.transaction(run))

    def forget_texts(self, texts: Sequence[str]) -> int:
        """Remove the cached vectors of these texts in every space (an erased user's profile); returns how
        many rows went."""
        hashes = text_hashes([t for t in texts if t])
        if not hashes:
            return 0
        marks = ", ".join("?" * len(hashes))
        rows = self.store.execute(f"DELETE FROM embeddings WHERE text_hash IN ({marks})", hashes)
        return int(rows[0][0]) if rows else 0

    # ------------------------------------------------------------------ reads and writes
    def lookup(self, space: EmbeddingSpace, hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Cached vectors of the given text hashes, with one query.

        Returns
        -------
        (positions, vectors):
            ``positions`` (int64) index into ``hashes``; ``vectors`` is ``(len(positions), dim)`` float32.
            Hashes not in the cache are absent from ``positions``.
        """
        dim = self.dim(space)
        if dim is None or len(hashes) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros((0, dim or 0), dtype=np.float32)
        query = pa.table({"pos": pa.array(np.arange(len(hashes), dtype=np.int64)),
                          "text_hash": pa.array(hashes, type=pa.string())})
        store = self.store
        with store._lock:
            store._register("_lmrec_emb_query", query)
            try:
                found = store.query_arrow(
                    "SELECT q.pos, e.vector FROM _lmrec_emb_query q JOIN embeddings e "
                    "ON e.space_id = ? AND e.text_hash = q.text_hash", [space.space_id])
            finally:
                store._unregister("_lmrec_emb_query")
        pos = found.column("pos").to_numpy().astype(np.int64)
        return pos, _blobs_to_array(found.column("vector"), dim, space.np_dtype)

    def put(self, space: EmbeddingSpace, hashes: Sequence[str], vectors: np.ndarray) -> int:
        """Store vectors (converted to the space's dtype) for text hashes, keeping any already stored.

        Raises
        ------
        EmbeddingDimensionError
            When the vectors' size differs from the space's recorded dimension.
        """
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or len(vectors) != len(hashes):
            raise ValueError(f"expected {len(hashes)} vectors as a 2-d array, got shape {vectors.shape}")
        if len(hashes) == 0:
            return 0
        dim = int(vectors.shape[1])
        data = np.ascontiguousarray(vectors, dtype=space.np_dtype)
        width = dim * space.np_dtype.itemsize
        offsets = np.arange(len(hashes) + 1, dtype=np.int32) * width
        blobs = pa.Array.from_buffers(pa.binary(), len(hashes), [None, pa.py_buffer(offsets),
                                                                   pa.py_buffer(data.tobytes())])
        batch = pa.table({"text_hash": pa.array(hashes, type=pa.string()), "vector": blobs})
        store = self.store

        def run() -> int:
            self._ensure_space(space, dim)
            store._register("_lmrec_emb_batch", batch)
            try:
                before = store._con.execute("SELECT count(*) FROM embeddings WHERE space_id = ?",
                                            [space.space_id]).fetchall()[0][0]
                store._con.execute(
                    "INSERT INTO embeddings SELECT DISTINCT ON (text_hash) ?, text_hash, vector "
                    "FROM _lmrec_emb_batch ON CONFLICT DO NOTHING", [space.space_id]).fetchall()
                after = store._con.execute("SELECT count(*) FROM embeddings WHERE space_id = ?",
                                           [space.space_id]).fetchall()[0][0]
            finally:
                store._unregister("_lmrec_emb_batch")
            return int(after - before)

        return int(store.transaction(run))

    def all(self, space: EmbeddingSpace) -> tuple[list[str], np.ndarray]:
        """Every (text hash, vector) of a space, ordered by hash."""
        dim = self.dim(space)
        if dim is None:
            return [], np.zeros((0, 0), dtype=np.float32)
        table = self.store.query_arrow(
            "SELECT text_hash, vector FROM embeddings WHERE space_id = ? ORDER BY text_hash",
            [space.space_id])
        vectors = _blobs_to_array(table.column("vector"), dim, space.np_dtype)
        return table.column("text_hash").to_pylist(), vectors

    # ------------------------------------------------------------------ export / import
    def export(self, space: EmbeddingSpace, path: str | Path) -> Path:
        """Write a space to ``.parquet`` (hash + vector columns, space in the file metadata) or ``.npy``
        (the vectors, with a ``.json`` file beside it holding the space and the hashes in row order)."""
        path = Path(path)
        hashes, vecs = self.all(space)
        if not hashes:
            raise ValueError(f"nothing cached for encoder {space.encoder!r} (revision {space.revision}) "
                             "with this template")
        meta = {**asdict(space), "dim": int(vecs.shape[1]), "format": "lmrec-embeddings-1"}
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".npy":
            np.save(path, vecs.astype(space.np_dtype), allow_pickle=False)
            path.with_suffix(".json").write_text(json.dumps({**meta, "text_hashes": hashes}))
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            flat = pa.array(vecs.astype(space.np_dtype).ravel())
            table = pa.table({"text_hash": pa.array(hashes, type=pa.string()),
                              "vector": pa.FixedSizeListArray.from_arrays(flat, vecs.shape[1])})
            table = table.replace_schema_metadata({"lmrec": json.dumps(meta)})
            pq.write_table(table, path)
        else:
            raise ValueError(f"{path}: export to .parquet or .npy")
        return path

    def import_(self, path: str | Path, space: EmbeddingSpace | None = None) -> tuple[EmbeddingSpace, int]:
        """Read a file written by :meth:`export` into its space (or into ``space``, checking the dimension).

        Returns the space and the number of vectors that were new.
        """
        path = Path(path)
        if path.suffix == ".npy":
            side = path.with_suffix(".json")
            if not side.exists():
                raise FileNotFoundError(f"{side}: the .json file describing {path.name} is missing")
            meta = json.loads(side.read_text())
            vecs = np.load(path, allow_pickle=False)
            hashes = list(meta["text_hashes"])
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            raw = (table.schema.metadata or {}).get(b"lmrec")
            if raw is None:
                raise ValueError(f"{path} is not an lmrec embeddings export (no 'lmrec' metadata)")
            meta = json.loads(raw)
            col = table.column("vector").combine_chunks()
            vecs = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), -1)
            hashes = table.column("text_hash").to_pylist()
        else:
            raise ValueError(f"{path}: import from .parquet or .npy")
        if vecs.ndim != 2 or vecs.shape[1] != int(meta["dim"]) or len(vecs) != len(hashes):
            raise EmbeddingDimensionError(f"{path}: vectors of shape {vecs.shape} do not match the declared "
                                          f"dimension {meta['dim']} and {len(hashes)} hashes")
        target = space or EmbeddingSpace(meta["encoder"], meta["revision"], meta["template"],
                                         meta["settings"], meta["dtype"])
        return target, self.put(target, hashes, vecs)


def _blobs_to_array(column: pa.ChunkedArray | pa.Array, dim: int, dtype: np.dtype) -> np.ndarray:
    """Equal-length BLOBs to a ``(n, dim)`` float32 array, straight from the Arrow buffers."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    if n == 0:
        return np.zeros((0, dim), dtype=np.float32)
    width = dim * dtype.itemsize
    if arr.null_count:
        raise ValueError("the embedding cache holds a NULL vector")
    # Binary arrays keep int32 offsets (int64 for large_binary) in buffer 1 and the bytes in buffer 2.
    off_type = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=off_type)[arr.offset: arr.offset + n + 1]
    if not np.all(np.diff(offsets) == width):
        bad = int(np.flatnonzero(np.diff(offsets) != width)[0])
        got = int(offsets[bad + 1] - offsets[bad]) // dtype.itemsize
        raise EmbeddingDimensionError(f"a cached vector has {got} values where its space has dimension {dim}")
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    return data.view(dtype).reshape(n, dim).astype(np.float32)


def describe(space: EmbeddingSpace) -> dict[str, Any]:
    """A space as a plain dict (for reports and checkpoint metadata)."""
    return {**asdict(space), "space_id": space.space_id}
