"""Training rows for next-item models, and a fast full-ranking validation.

SASRec-style training uses every prefix at once: a user's last ``max_len + 1`` training events form one row;
the
network reads positions ``0..T-1`` and position ``t`` is trained to predict event ``t + 1``. One row per
user, so an
epoch is one pass over the users.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.schema import PAD


def sequence_rows(dataset: Dataset, max_len: int, *, with_types: bool = False,
                  gap_buckets: int = 0) -> dict[str, np.ndarray]:
    """Left-padded ``(users, max_len + 1)`` arrays of every user with at least two training events.

    Returns
    -------
    dict
        ``"items"`` (int64 item indices), and when asked ``"types"`` (event type + 1, 0 = padding) and
        ``"gaps"`` (:func:`~lmrec.models.seqrec.network.gap_buckets`).
    """
    from lmrec.models.seqrec.network import gap_buckets as to_buckets

    seqs = dataset.sequences
    users = np.flatnonzero(seqs.lengths >= 2)
    width = max_len + 1
    items = seqs.take(users).last(width, pad=PAD)
    rows: dict[str, np.ndarray] = {"items": items.astype(np.int64)}
    valid = items != PAD
    if with_types:
        types = dataset.type_sequences.take(users).last(width, pad=0).astype(np.int64) + 1
        rows["types"] = np.where(valid, types, 0)
    if gap_buckets:
        ts = dataset.timestamps.take(users).last(width, pad=0).astype(np.int64)
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
