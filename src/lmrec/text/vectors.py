"""Cached text vectors: encode only what the cache lacks, and the item-vector functions models call.

The cache lives in a :class:`~lmrec.store.Store` (by default ``embeddings.duckdb`` under
:func:`lmrec.config.cache_dir`) and is keyed by (encoder name, revision, template, settings, dtype, text
hash). A run looks up every text with one query, encodes the missing ones in chunks and writes each chunk as
soon as it is done, so an interrupted run keeps its finished work and a second run encodes nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lmrec.config import cache_dir
from lmrec.data.dataset import Dataset
from lmrec.store.duckdb_store import Store
from lmrec.store.embeddings import (
    EmbeddingDimensionError,
    EmbeddingSpace,
    EmbeddingTable,
    StorageDtype,
    open_store,
    text_hashes,
)
from lmrec.text.encoders import Side, TextEncoder, get_encoder
from lmrec.text.templates import ItemTemplate, truncate_tokens

CACHE_FILE = "embeddings.duckdb"


def default_cache_path() -> Path:
    """``embeddings.duckdb`` under lmrec's cache directory (``$LMREC_CACHE_DIR`` or the user cache)."""
    return cache_dir() / CACHE_FILE


@dataclass
class EncodeStats:
    """What a cached encoding did."""

    n_texts: int = 0
    n_unique: int = 0
    n_cached: int = 0
    n_encoded: int = 0
    seconds: float = 0.0
    encode_seconds: float = 0.0

    @property
    def texts_per_second(self) -> float:
        """Encoding speed over the texts actually encoded."""
        return self.n_encoded / self.encode_seconds if self.encode_seconds > 0 else 0.0

    def __str__(self) -> str:
        rate = f", {self.texts_per_second:,.0f} texts/s" if self.n_encoded else ""
        return (f"{self.n_texts:,} texts ({self.n_unique:,} distinct): {self.n_cached:,} from the cache, "
                f"{self.n_encoded:,} encoded in {self.encode_seconds:.1f}s{rate}; {self.seconds:.2f}s in all")


@contextlib.contextmanager
def _opened(store: Store | str | Path | None) -> Iterator[Store]:
    """The given store, or a store file opened for this call and closed after it."""
    if isinstance(store, Store):
        yield store
        return
    opened = open_store(store if store is not None else default_cache_path())
    try:
        yield opened
    finally:
        opened.close()


def _progress_bar(total: int, description: str) -> tuple[Any, Callable[[int], None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}"),
                   TimeRemainingColumn())
    task = bar.add_task(description, total=total, rate="")
    start = time.perf_counter()
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        rate = done[0] / max(time.perf_counter() - start, 1e-9)
        bar.update(task, advance=n, rate=f"{rate:,.0f} texts/s")

    return bar, advance


def encode_cached(texts: Sequence[str], *, encoder: TextEncoder, store: Store | str | Path | None = None,
                  template: str = "", side: Side = "document", dtype: StorageDtype = "float32",
                  progress: bool | Callable[[int], None] = False, description: str = "encoding",
                  prepare: Callable[[list[str]], list[str]] | None = None,
                  encode_options: dict[str, Any] | None = None) -> tuple[np.ndarray, EncodeStats]:
    """Vectors for ``texts`` in order, encoding only the distinct texts the cache does not hold.

    Parameters
    ----------
    texts:
        The texts (already rendered; ``template`` only names how they were made, for the cache key).
    encoder:
        Any :class:`~lmrec.text.encoders.TextEncoder`.
    store:
        A store, a DuckDB file, or ``None`` for the default cache file.
    template:
        The canonical string of the template that made the texts.
    side:
        ``"document"`` for items, ``"query"`` for user texts (models with query/document prompts differ).
    dtype:
        Storage precision of the cache (``float16`` halves its size); the result is always float32.
    progress:
        ``True`` shows a Rich progress bar with texts/s; a callable receives the number of texts done per
        chunk.
    prepare:
        A deterministic function applied to the texts that miss the cache, just before encoding (token
        truncation). Texts are keyed by their hash *before* ``prepare``, so a warm run never calls it; what
        ``prepare`` depends on must be part of ``template`` or the encoder's identity.
    encode_options:
        Extra keyword arguments for ``encoder.encode`` (e.g. ``max_tokens``), under the same rule.

    Returns
    -------
    (vectors, stats):
        ``(len(texts), dim)`` float32 and an :class:`EncodeStats`.
    """
    t0 = time.perf_counter()
    texts = [t if isinstance(t, str) else "" for t in texts]
    stats = EncodeStats(n_texts=len(texts))
    settings_key = getattr(encoder, "settings_key", None)
    space = EmbeddingSpace(encoder.name, encoder.revision, template,
                           settings_key(side) if callable(settings_key) else side, dtype)
    hashes = text_hashes(texts)
    # Distinct texts: the first row of each hash, and every row's position in the distinct list.
    first: dict[str, int] = {}
    uniq_rows: list[int] = []
    inverse = np.empty(len(hashes), dtype=np.int64)
    for row, h in enumerate(hashes):
        j = first.get(h)
        if j is None:
            j = first[h] = len(uniq_rows)
            uniq_rows.append(row)
        inverse[row] = j
    uniq_hashes = list(first)
    stats.n_unique = len(uniq_hashes)
    # A store given as a path is opened only around each lookup and write, not while the model runs: DuckDB
    # locks a file per process, and other processes (a service, another run) share the default cache.
    with _opened(store) as st:
        table = EmbeddingTable(st)
        pos, cached = table.lookup(space, uniq_hashes)
        missing = np.setdiff1d(np.arange(len(uniq_hashes)), pos, assume_unique=True)
        dim = int(cached.shape[1]) if len(pos) else None
        if len(missing):
            dim = encoder.dim
            table.check_dim(space, dim)  # fail before encoding anything, not after
    stats.n_cached = len(pos)
    if dim is None:  # no texts at all
        dim = encoder.dim
    uniq_vecs = np.zeros((len(uniq_hashes), dim), dtype=np.float32)
    if len(pos):
        uniq_vecs[pos] = cached
    if len(missing):
        t_enc = time.perf_counter()
        todo = [texts[uniq_rows[i]] for i in missing]
        if prepare is not None:
            todo = prepare(todo)
        _encode_missing(encoder, store, space, todo, [uniq_hashes[i] for i in missing], missing, uniq_vecs,
                        side, progress, description, encode_options or {})
        stats.encode_seconds = time.perf_counter() - t_enc
        stats.n_encoded = len(missing)
    out = uniq_vecs[inverse]
    stats.seconds = time.perf_counter() - t0
    return out, stats


def _encode_missing(encoder: TextEncoder, store: Store | str | Path | None, space: EmbeddingSpace,
                    texts: list[str],
                    hashes: list[str], rows: np.ndarray, out: np.ndarray, side: Side,
                    progress: bool | Callable[[int], None], description: str,
                    options: dict[str, Any]) -> None:
    """Encode texts longest first in chunks, writing each chunk to ``out[rows]`` and to the cache."""
    batch = int(getattr(getattr(encoder, "options", None), "batch_size", 64))
    chunk = max(batch * 16, 256)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    bar, advance = (_progress_bar(len(texts), description) if progress is True else
                    (None, progress if callable(progress) else None))
    with bar if bar is not None else contextlib.nullcontext():
        for start in range(0, len(texts), chunk):
            sel = order[start:start + chunk]
            vecs = np.asarray(encoder.encode([texts[i] for i in sel], side=side, **options), dtype=np.float32)
            if vecs.shape != (len(sel), out.shape[1]):
                raise EmbeddingDimensionError(f"encoder {encoder.name!r} returned shape {vecs.shape} for "
                                              f"{len(sel)} texts; expected (n, {out.shape[1]})")
            with _opened(store) as st:
                EmbeddingTable(st).put(space, [hashes[i] for i in sel], vecs)
            # Read back what the cache holds so a float16 cache gives the same values cold and warm.
            out[rows[sel]] = vecs.astype(space.np_dtype).astype(np.float32)
            if advance is not None:
                advance(len(sel))


def _resolve(encoder: TextEncoder | str | None) -> TextEncoder:
    return get_encoder(encoder) if encoder is None or isinstance(encoder, str) else encoder


def item_texts(items: pl.DataFrame, *, encoder: TextEncoder | str | None = None,
               template: ItemTemplate | str | None = None) -> list[str]:
    """The texts a template makes for an items table, token-truncated with the encoder's tokenizer."""
    enc = _resolve(encoder)
    tpl = ItemTemplate.parse(template)
    return tpl.render(items, getattr(enc, "tokenizer", None))


def embed_items(items: pl.DataFrame, *, encoder: TextEncoder | str | None = None,
                template: ItemTemplate | str | None = None, store: Store | str | Path | None = None,
                progress: bool | Callable[[int], None] = False,
                dtype: StorageDtype = "float32") -> tuple[np.ndarray, EncodeStats]:
    """Vectors of an items table's rows, in row order, through the cache, with what it cost."""
    enc = _resolve(encoder)
    tpl = ItemTemplate.parse(template)
    # Cache keys are the hashes of the full rendered texts (the template, with its token limit, and the
    # encoder with its tokenizer are in the key), so only texts that miss the cache are tokenized and cut.
    texts = tpl.render(items)
    max_tokens = tpl.max_tokens

    if getattr(enc, "supports_max_tokens", False):  # the model cuts while it tokenizes: one tokenizer pass
        return encode_cached(texts, encoder=enc, store=store, template=tpl.canonical(), side="document",
                             dtype=dtype, progress=progress, description="items",
                             encode_options={"max_tokens": max_tokens} if max_tokens else None)

    def cut(todo: list[str]) -> list[str]:
        tokenizer = getattr(enc, "tokenizer", None)  # loaded only when something is encoded
        return truncate_tokens(todo, tokenizer, max_tokens) if tokenizer is not None and max_tokens else todo

    return encode_cached(texts, encoder=enc, store=store, template=tpl.canonical(), side="document",
                         dtype=dtype, progress=progress, description="items", prepare=cut)


def encode_items(items: pl.DataFrame, *, encoder: TextEncoder | str | None = None,
                 template: ItemTemplate | str | None = None,
                 store: Store | str | Path | None = None) -> np.ndarray:
    """Vectors of an items table's rows, in the given order (e.g. new items arriving at the service).

    Parameters
    ----------
    items:
        Rows with items-table columns (``item_id``, ``title``, ``description``, ``categories``,
        ``attributes``); missing columns count as empty.
    encoder:
        An encoder, a model name, or ``None`` for the default.
    template:
        An :class:`~lmrec.text.templates.ItemTemplate`, its string form, or ``None`` for the default.
    store:
        The cache: a store, a DuckDB file, or ``None`` for the default cache file.

    Returns
    -------
    np.ndarray
        ``(items.height, dim)`` float32.
    """
    return embed_items(items, encoder=encoder, template=template, store=store)[0]


def item_vectors(dataset: Dataset, *, encoder: TextEncoder | str | None = None,
                 template: ItemTemplate | str | None = None, store: Store | str | Path | None = None,
                 progress: bool = True, dtype: StorageDtype = "float32") -> np.ndarray:
    """Text vectors of every item of a dataset, by item index.

    Parameters
    ----------
    dataset:
        Its ``items`` table (one row per item, in index order) provides the text.
    encoder, template, store:
        As in :func:`encode_items`.
    progress:
        Show a progress bar while encoding (nothing is shown when every vector is cached).
    dtype:
        Storage precision of the cache; the result is float32 either way.

    Returns
    -------
    np.ndarray
        ``(dataset.item_map.size, dim)`` float32; row 0 (padding) is zeros, row ``i`` is item index ``i``.
    """
    vecs, _ = embed_dataset_items(dataset, encoder=encoder, template=template, store=store, progress=progress,
                                  dtype=dtype)
    return vecs


def embed_dataset_items(dataset: Dataset, *, encoder: TextEncoder | str | None = None,
                        template: ItemTemplate | str | None = None, store: Store | str | Path | None = None,
                        progress: bool | Callable[[int], None] = True,
                        dtype: StorageDtype = "float32") -> tuple[np.ndarray, EncodeStats]:
    """:func:`item_vectors` with the :class:`EncodeStats` of the run."""
    items = dataset.items.sort("item_idx")
    if items.height != len(dataset.item_map):
        raise ValueError(f"dataset {dataset.name!r} has {items.height} item rows for "
                         f"{len(dataset.item_map)} ids")
    vecs, stats = embed_items(items, encoder=encoder, template=template, store=store, progress=progress,
                              dtype=dtype)
    out = np.zeros((dataset.item_map.size, vecs.shape[1]), dtype=np.float32)
    out[items["item_idx"].to_numpy()] = vecs
    return out, stats


def encode_texts(texts: Sequence[str], *, encoder: TextEncoder | str | None = None, side: Side = "query",
                 store: Store | str | Path | None = None, kind: str = "text",
                 progress: bool | Callable[[int], None] = False) -> np.ndarray:
    """Cached vectors of free texts (user profiles, history texts, search queries); ``kind`` names the
    text family in the cache key (e.g. ``"user-history:last10"``)."""
    return encode_cached(texts, encoder=_resolve(encoder), store=store, template=kind, side=side,
                         progress=progress, description=kind)[0]


def item_vectors_key(*, encoder: TextEncoder | str | None = None, template: ItemTemplate | str | None = None,
                     dtype: StorageDtype = "float32") -> dict[str, str]:
    """What identifies the item vectors :func:`item_vectors` returns with these arguments: encoder name and
    revision, template, settings and the cache space id. A model checkpoint stores it, so a loaded model can
    tell whether the vectors it is given come from the same encoder and text."""
    enc = _resolve(encoder)
    tpl = ItemTemplate.parse(template)
    settings_key = getattr(enc, "settings_key", None)
    space = EmbeddingSpace(enc.name, enc.revision, tpl.canonical(),
                           settings_key("document") if callable(settings_key) else "document", dtype)
    return {"encoder": space.encoder, "revision": space.revision, "template": space.template,
            "settings": space.settings, "dtype": space.dtype, "space_id": space.space_id}
