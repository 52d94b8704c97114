"""Training rows for next-item models, and a fast full-ranking validation.

SASRec-style training uses every prefix at once: a row holds ``max_len + 1`` consecutive training events of
one user; the network reads positions ``0..T-1`` and position ``t`` is trained to predict event ``t + 1``.
SASRec itself keeps one row per user (the last ``max_len + 1`` events), which drops everything older from
training when histories are longer than ``max_len``; ``windows="all"`` cuts each history into consecutive
windows instead, so that every training event is a target exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.schema import PAD

#: Training windows per history: "last" (SASRec: one per user) or "all" (see :func:`window_bounds`).
WINDOWS = ("last", "all")


def window_bounds(lengths: np.ndarray, max_len: int, windows: str = "last") -> tuple[np.ndarray, np.ndarray]:
    """``(row, end)`` of every training window: window ``i`` holds events ``max(0, end - max_len - 1)`` to
    ``end - 1`` of row ``row[i]``.

    ``"last"`` gives each row with at least two events its last window; ``"all"`` also the windows before it,
    ending ``max_len`` events apart (consecutive windows share one event, the input that predicts the first
    target of the next), down to a first window of at least two events. Newest windows come first per row.
    """
    if windows not in WINDOWS:
        raise ValueError(f"windows must be one of {WINDOWS}, got {windows!r}")
    lengths = np.asarray(lengths, dtype=np.int64)
    rows = np.flatnonzero(lengths >= 2)
    if windows == "last":
        return rows, lengths[rows]
    # windows of a row of length L end at L, L - m, L - 2m, ... while at least 2 events remain
    n_win = (lengths[rows] - 2) // max_len + 1
    row = np.repeat(rows, n_win)
    first = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(n_win, out=first[1:])
    k = np.arange(len(row)) - np.repeat(first[:-1], n_win)  # 0 = newest window
    return row, lengths[row] - k * max_len


def sequence_rows(dataset: Dataset, max_len: int, *, with_types: bool = False,
                  gap_buckets: int = 0, windows: str = "last") -> dict[str, np.ndarray]:
    """Left-padded ``(rows, max_len + 1)`` training windows (see :func:`window_bounds`) of every user with at
    least two training events.

    Returns
    -------
    dict
        ``"items"`` (int64 item indices), and when asked ``"types"`` (event type + 1, 0 = padding) and
        ``"gaps"`` (:func:`~lmrec.models.seqrec.network.gap_buckets`; the first event of a window has no gap).
    """
    from lmrec.models.seqrec.network import gap_buckets as to_buckets

    seqs = dataset.sequences
    width = max_len + 1
    row, end = window_bounds(seqs.lengths, max_len, windows)
    items = seqs.windows(row, end, width, PAD)
    rows: dict[str, np.ndarray] = {"items": items.astype(np.int64)}
    valid = items != PAD
    if with_types:
        types = dataset.type_sequences.windows(row, end, width).astype(np.int64) + 1
        rows["types"] = np.where(valid, types, 0)
    if gap_buckets:
        ts = dataset.timestamps.windows(row, end, width).astype(np.int64)
        rows["gaps"] = to_buckets(ts, gap_buckets, valid=valid)
    return rows


def side_inputs_for(histories: Ragged, users: np.ndarray | None, max_len: int, known: Any, *,
                    with_types: bool, gap_buckets: int) -> dict[str, np.ndarray]:
    """Types and gap buckets for scoring ``histories`` (left-padded to ``max_len``).

    A raw history carries item indices only. Where a row's user is known and its history begins with that
    user's training sequence (``known``: anything with ``sequences``, ``type_sequences`` and ``timestamps``
    Raggeds, such as the training :class:`Dataset`), the training events' types and times are used; positions
    beyond them (events
    since training) get 0, the padding value, which contributes nothing.
    """
    out: dict[str, np.ndarray] = {}
    if not with_types and not gap_buckets:
        return out
    from lmrec.models.seqrec.network import gap_buckets as to_buckets

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
    return out


def rank_eval_set(score_rows: Callable[[np.ndarray], torch.Tensor], histories: Ragged, targets: Ragged,
                  k: int = 10, batch_size: int = 256) -> dict[str, float]:
    """Full-ranking NDCG@k and HR@k with each row's history excluded (the validation used for early stopping).

    Parameters
    ----------
    score_rows:
        Maps row positions ``(b,)`` to scores ``(b, n_items + 1)`` (a tensor, any device).
    histories, targets:
        Per-row items to exclude and to find.
    """
    from lmrec.evaluation import metrics as M

    n = len(histories)
    ranked = np.zeros((n, k), dtype=np.int64)
    by_length = np.argsort(histories.lengths, kind="stable")  # similar lengths together: less padding
    for start in range(0, n, batch_size):
        rows = by_length[start:start + batch_size]
        s = score_rows(rows).float()
        s[:, PAD] = float("-inf")
        h = histories.take(rows)
        if len(h.values):
            r = torch.as_tensor(h.row_ids(), device=s.device)
            c = torch.as_tensor(h.values.astype(np.int64), device=s.device)
            ok = c < s.shape[1]
            s[r[ok], c[ok]] = float("-inf")
        ranked[rows] = torch.topk(s, k, dim=1).indices.cpu().numpy()
    hits, n_targets = M.hit_matrix(ranked, targets)
    evaluated = n_targets > 0
    if not evaluated.any():
        return {f"ndcg@{k}": 0.0, f"hr@{k}": 0.0}
    return {f"ndcg@{k}": float(M.ndcg(hits, n_targets, k)[evaluated].mean()),
            f"hr@{k}": float(M.hit_rate(hits, k)[evaluated].mean())}
