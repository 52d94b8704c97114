"""Write every user's top-N recommendations to a file in batches (Parquet, CSV or TSV), raw ids throughout."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from lmrec.data.exposure import ExposurePolicy
from lmrec.models.base import Recommender, UnknownUserError, check_unknown_policy

FORMATS = ("parquet", "csv", "tsv")


def format_for(path: Path, fmt: str | None = None) -> str:
    """The output format: ``fmt`` or the file's extension (``.parquet``, ``.csv``, ``.tsv``/``.txt``)."""
    if fmt:
        if fmt not in FORMATS:
            raise ValueError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return fmt
    ext = path.suffix.lower().lstrip(".")
    if ext in ("parquet", "pq"):
        return "parquet"
    if ext == "csv":
        return "csv"
    if ext in ("tsv", "txt"):
        return "tsv"
    raise ValueError(f"cannot tell the output format of {path}: use .parquet, .csv or .tsv, or pass a format")


def read_user_file(path: Path) -> list[str]:
    """Raw user ids, one per line (blank lines and ``#`` comments skipped; a CSV's first column is used)."""
    users = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            users.append(line.split(",")[0].split("\t")[0].strip())
    if users and users[0].lower() in ("user_id", "user"):
        users = users[1:]
    return users


def write_recommendations(
    model: Recommender,
    users: Sequence[str] | None,
    k: int,
    out: str | Path,
    *,
    fmt: str | None = None,
    batch_size: int = 2048,
    exclude_seen: bool = True,
    histories: Sequence[Sequence[str]] | None = None,
    on_progress: Callable[[int], None] | None = None,
    unknown: str = "error",
    shard: tuple[int, int] | None = None,
    exposure: ExposurePolicy | None = None,
) -> int:
    """Top-``k`` items for each user, best first, written as they are computed.

    ``shard=(rank, world)``: write only this process's contiguous share of the users, to
    :func:`part_path` (``torchrun`` batch jobs; :func:`merge_parts` then joins the parts, in rank order, into
    exactly the file one process writes).

    ``users=None`` means every user the model knows. Parquet and CSV get one row per (user, rank):
    ``user_id``, ``rank`` (1 = best), ``item_id``, ``score``; TSV gets one line per user:
    ``user<TAB>item item ...``. Users the model has never seen are an error naming them before anything is
written, or get the popularity fallback with ``unknown="popular"`` (see
:data:`~lmrec.models.base.UNKNOWN_USER_POLICIES`). The file appears complete or not at
    all (written under a temporary name, then renamed). Returns the number of users written.

    ``histories`` (raw item ids per user, aligned with ``users``) replaces the model's training histories:
    the events to score from and, with ``exclude_seen``, the items left out. ``exposure`` re-ranks every
    list (a cap per category, a long-tail minimum: :mod:`lmrec.data.exposure`), as the service does.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    model._check_fitted()
    assert model.user_map is not None
    out = Path(out)
    kind = format_for(out, fmt)
    all_users = list(model.user_map.raw_ids) if users is None else [str(u) for u in users]
    if histories is not None and len(histories) != len(all_users):
        raise ValueError(f"{len(histories)} histories for {len(all_users)} users")
    check_unknown_policy(unknown)
    if unknown == "error":
        missing = [u for i, u in enumerate(all_users)
                   if u not in model.user_map and not (histories is not None and len(histories[i]))]
        if missing:
            raise UnknownUserError(missing, "pass --unknown popular (unknown='popular') for the most popular "
                                            "items")
    if shard is not None:
        lo, hi = shard_range(len(all_users), *shard)
        all_users = all_users[lo:hi]
        histories = None if histories is None else list(histories)[lo:hi]
        out = part_path(out, *shard)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    schema = pa.schema(
        [("user_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string()), ("score", pa.float32())]
    )
    writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
    try:
        with open(tmp, "wb") as fh:
            if kind == "parquet":
                writer = pq.ParquetWriter(fh, schema)
            elif kind == "csv":
                writer = pacsv.CSVWriter(fh, schema)
            for start in range(0, len(all_users), batch_size):
                chunk = all_users[start : start + batch_size]
                hist = None if histories is None else histories[start : start + batch_size]
                ids, scores = model.recommend(chunk, k=k, exclude_seen=exclude_seen, histories=hist,
                                               unknown=unknown, exposure=exposure)
                if kind == "tsv":
                    lines = [
                        f"{u}\t{' '.join(i for i in row if i)}\n" for u, row in zip(chunk, ids, strict=True)
                    ]
                    fh.write("".join(lines).encode())
                else:
                    valid = ids != ""
                    rows, ranks = np.nonzero(valid)
                    table = pa.table(
                        {
                            "user_id": pa.array(np.asarray(chunk, dtype=object)[rows], pa.string()),
                            "rank": pa.array((ranks + 1).astype(np.int32)),
                            "item_id": pa.array(ids[valid].astype(str), pa.string()),
                            "score": pa.array(scores[valid].astype(np.float32)),
                        },
                        schema=schema,
                    )
                    assert writer is not None
                    writer.write_table(table)
                if on_progress is not None:
                    on_progress(len(chunk))
            if writer is not None:
                writer.close()
                writer = None
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()
    return len(all_users)


def shard_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous rows ``[lo, hi)`` of ``n`` that process ``rank`` of ``world`` takes (sizes differ by at
    most one; concatenated in rank order they are ``0..n``)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is outside 0..{world - 1}")
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def part_path(out: str | Path, rank: int, world: int) -> Path:
    """Where process ``rank`` of ``world`` writes its part of ``out``."""
    out = Path(out)
    return out.with_name(f".{out.name}.part-{rank:05d}-of-{world:05d}")


def merge_parts(out: str | Path, world: int, fmt: str | None = None) -> Path:
    """Join the ``world`` parts of ``out`` in rank order into ``out`` (written under a temporary name, then
    renamed) and remove them: the rows one process writes, in the same order."""
    import pyarrow.parquet as pq

    out = Path(out)
    kind = format_for(out, fmt)
    parts = [part_path(out, r, world) for r in range(world)]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"parts missing: {', '.join(missing)}")
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "wb") as fh:
        if kind == "parquet":
            writer = None
            for p in parts:
                table = pq.read_table(p)
                if writer is None:
                    writer = pq.ParquetWriter(fh, table.schema)
                writer.write_table(table)
            assert writer is not None
            writer.close()
        else:
            for r, p in enumerate(parts):
                data = p.read_bytes()
                if kind == "csv" and r > 0:  # one header: the first part's
                    data = data.split(b"\n", 1)[1] if b"\n" in data else b""
                fh.write(data)
    os.replace(tmp, out)
    for p in parts:
        p.unlink()
    return out
