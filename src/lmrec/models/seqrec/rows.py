"""SeqRec's training rows, and the side inputs (event types, time gaps) of the histories it scores.

SASRec-style training uses every prefix at once: a row holds ``max_len + 1`` consecutive training events of
one user; the network reads positions ``0..T-1`` and position ``t`` is trained to predict event ``t + 1``.
SASRec itself keeps one row per user (the last ``max_len + 1`` events), which drops everything older from
training when histories are longer than ``max_len``; ``windows="all"`` cuts each history into consecutive
windows instead (:func:`lmrec.data.ragged.window_bounds`), so that every training event is a target exactly
once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import WINDOWS, Ragged, window_bounds
from lmrec.data.schema import PAD
from lmrec.models.seqrec.features import context_ids

# the parameter name gap_buckets (a count) is the config's; the function is imported as to_buckets
from lmrec.models.seqrec.network import gap_buckets as to_buckets


def sequence_rows(dataset: Dataset, max_len: int, *, with_types: bool = False,
                  gap_buckets: int = 0, windows: str = "last", with_users: bool = False,
                  context: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Left-padded ``(rows, max_len + 1)`` training windows (see :func:`~lmrec.data.ragged.window_bounds`) of
    every user with at least two training events.

    Returns
    -------
    dict
        ``"items"`` (int64 item indices), and when asked ``"types"`` (event type + 1, 0 = padding),
        ``"gaps"`` (:func:`~lmrec.models.seqrec.network.gap_buckets`; the first event of a window has no gap),
        ``"users"`` (``(rows,)`` the user index of each window, for user features) and one ``(rows,
        max_len + 1)`` array per context feature (:func:`~lmrec.models.seqrec.features.context_ids`).
    """
    seqs = dataset.sequences
    width = max_len + 1
    row, end = window_bounds(seqs.lengths, max_len, windows)
    items = seqs.windows(row, end, width, PAD)
    rows: dict[str, np.ndarray] = {"items": items.astype(np.int64)}
    valid = items != PAD
    if with_types:
        types = dataset.type_sequences.windows(row, end, width).astype(np.int64) + 1
        rows["types"] = np.where(valid, types, 0)
    if gap_buckets or context:
        ts = dataset.timestamps.windows(row, end, width).astype(np.int64)
        if gap_buckets:
            rows["gaps"] = to_buckets(ts, gap_buckets, valid=valid)
        for name in context:
            rows[name] = context_ids(ts, name, valid)
    if with_users:
        rows["users"] = np.asarray(row, dtype=np.int64)
    return rows


def side_inputs_for(histories: Ragged, users: np.ndarray | None, max_len: int, known: Any, *,
                    with_types: bool, gap_buckets: int,
                    context: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Types, gap buckets and context ids for scoring ``histories`` (left-padded to ``max_len``).

    A raw history carries item indices only. Where a row's user is known and its history begins with that
    user's training sequence (``known``: anything with ``sequences``, ``type_sequences`` and ``timestamps``
    Raggeds, such as the training :class:`Dataset`), the training events' types and times are used;
    positions beyond them (events since training) get 0, the padding value, which contributes nothing.
    """
    out: dict[str, np.ndarray] = {}
    if not with_types and not gap_buckets and not context:
        return out
    n = len(histories)
    types = np.zeros((n, max_len), dtype=np.int64)
    stamps = np.zeros((n, max_len), dtype=np.int64)
    have = np.zeros((n, max_len), dtype=bool)
    if known is not None and users is not None:
        seqs, tseq, ts = known.sequences, known.type_sequences, known.timestamps
        for r in range(n):
            u = int(users[r])
            if u <= 0 or u >= len(seqs):
                continue
            h, s = histories[r], seqs[u]
            m = min(len(h), len(s))
            if m == 0 or not np.array_equal(h[:m], s[:m]):
                continue
            # history column j (of len(h)) sits at padded column max_len - len(h) + j
            first = max(0, len(h) - max_len)
            cols = np.arange(first, m)
            if len(cols) == 0:
                continue
            pos = max_len - len(h) + cols
            types[r, pos] = tseq[u][cols] + 1
            stamps[r, pos] = ts[u][cols]
            have[r, pos] = True
    if with_types:
        out["types"] = types
    if gap_buckets:
        g = to_buckets(stamps, gap_buckets, valid=have)
        out["gaps"] = g
    for name in context:
        out[name] = context_ids(stamps, name, have)
    return out


__all__ = ["WINDOWS", "sequence_rows", "side_inputs_for", "window_bounds"]
