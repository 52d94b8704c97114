"""The SeqRec networks: item representations and a causal sequence encoder.

Two ``nn.Module``\\ s that other models build on (the multi-task heads use the same encoder):

* :class:`ItemEncoder` turns item indices into vectors ``(…, d)``. By ``NetworkConfig.item_repr`` a vector
  comes from an id embedding table (``"id"``), from the item's cached language-model text vector through a
  learned adapter (``"text"``: works for items never seen in training), or from both (``"fused"``: the id part
  is gated by the item's training frequency, so text carries the long tail and ids refine the head).
* :class:`SequenceEncoder` reads a user's last ``T`` events, left-padded (newest event in the last column),
  and returns one hidden state per position ``(B, T, d)``: a causal pre-LN Transformer in the SASRec line
  (Kang & McAuley, 2018) or a GRU/LSTM. Position ``t``'s state sees events ``0..t`` only, so it predicts event
  ``t + 1``; scores are dot products with :class:`ItemEncoder` outputs (input and output vectors are shared).

Optional side inputs per event: its type (view, cart, purchase…), the log-scale bucket of the time since
the previous event (:func:`gap_buckets`) and its context (hour of day, day of week). Both use index 0 for
padding. Optional side features (:mod:`lmrec.models.seqrec.features`): item features (category, brand, price
bucket…) add a pooled embedding to every item vector, on the input and the output side alike; user features
add a pooled user embedding to every input position.

Networks take tensors already on their device; conversion and ``.to(device)`` belong to the estimator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmrec.data.schema import PAD
from lmrec.models.seqrec.features import CONTEXT_FEATURES

ITEM_REPRS = ("id", "text", "fused")
ENCODERS = ("transformer", "gru", "lstm")
TEXT_ADAPTERS = ("whiten", "pca", "none")
POP_PRIORS = ("none", "fixed", "user")
FUSE_GATES = ("count", "learned", "none", "residual")
#: Ridge penalty of the text → log-popularity regression that gives new items their prior.
RIDGE_PRIOR = 1.0


@dataclass(frozen=True)
class NetworkConfig:
    """Everything needed to build the networks (sizes come from the dataset, the rest from the model config).

    Parameters
    ----------
    n_items:
        Catalogue size without padding; item indices run ``1..n_items`` and ``0`` is :data:`PAD`.
    d_model:
        Width of item vectors and hidden states.
    max_len:
        Longest input sequence (learned positions are ``max_len`` long).
    encoder:
        ``"transformer"`` (causal self-attention), ``"gru"`` or ``"lstm"``.
    n_layers, n_heads, dropout:
        Depth, attention heads (Transformer only) and dropout of the encoder.
    ff_mult:
        Width of the Transformer's feed-forward layer as a multiple of ``d_model`` (SASRec uses 1, GPT 4).
    item_repr:
        ``"id"``, ``"text"`` or ``"fused"`` (see the module docstring).
    text_dim:
        Width of the cached text vectors (0 when ``item_repr == "id"``).
    text_adapter:
        ``"whiten"`` (PCA whitening fitted on the training catalogue: zero mean, identity covariance — raw
        sentence vectors are anisotropic), ``"pca"`` (centred projection on the top components) or
        ``"none"`` (centring only), followed by an MLP to ``d_model``.
    text_reduced_dim:
        Components kept by the whitening/PCA projection (capped by ``text_dim``).
    adapter_hidden:
        Hidden width of the adapter MLP.
    fuse_pivot:
        ``"fused"`` only: training count at which the id part's initial gate is 0.5; items with fewer events
        lean on text. The gate ``sigmoid(a * (log1p(count) - log1p(pivot)))`` is learned (``a`` and the
        shift).
    output_gate_lift:
        ``"fused"`` only: the output side (the item table targets are scored against, in training and
        when scoring) lifts every trained item's id gate ``g`` to ``g + output_gate_lift · (1 − g)``; the
        input side keeps ``g``. 0: one table for both sides; 1: targets use the whole id part of every trained
        item (what an id model learns of a rare item as a target, co-occurrence, is then not shrunk by its
        gate) while rare items as inputs still lean on text. The output side's id dropout follows the lifted
        gate (at 1: ``id_dropout_min`` for every item).
    id_dropout:
        ``"fused"`` only: in training, drop an item's id part with probability ``id_dropout * (1 - gate)``, so
        rare items are often represented by text alone and the adapter learns to carry them.
    id_dropout_min:
        ``"fused"`` only: a floor on that probability for every item, head included, so that text alone also
        ranks well against head items (what items never seen in training need).
    pop_prior:
        The popularity prior added to every score, ``β · log(1 + count)`` (logit adjustment, Menon et al.,
        ICLR 2021): ``"none"``; ``"fixed"`` (``β = pop_prior_weight``), so item vectors need not encode how
        popular an item is and learn what it is; ``"user"`` (``β = pop_prior_weight + w·h``, learned from the
        hidden state), so a user whose history is niche can get a weaker prior than a blockbuster fan.
    pop_prior_weight:
        The fixed ``β``, or the starting ``β`` of ``"user"``.
    n_types:
        Number of event types (0: no type input). Types are fed shifted by one so that 0 stays padding.
    n_gap_buckets:
        Number of time-gap buckets including padding and "first event" (0: no gap input); see
        :func:`gap_buckets`.
    n_item_feature_ids, n_user_feature_ids:
        Rows of the shared embedding table of the item (user) side features, padding included (0: none); see
        :class:`~lmrec.models.seqrec.features.FeatureSet`.
    context_features:
        Comma-separated context features of each input event (``"hour,weekday"``; ``""``: none).
    """

    n_items: int
    d_model: int = 64
    max_len: int = 200
    encoder: str = "transformer"
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    ff_mult: int = 4
    item_repr: str = "id"
    text_dim: int = 0
    text_adapter: str = "whiten"
    text_reduced_dim: int = 128
    adapter_hidden: int = 256
    fuse_pivot: float = 5.0
    fuse_gate: str = "count"
    output_gate_lift: float = 0.0
    id_dropout: float = 0.0
    id_dropout_min: float = 0.0
    pop_prior: str = "none"
    pop_prior_weight: float = 1.0
    n_types: int = 0
    n_gap_buckets: int = 0
    n_item_feature_ids: int = 0
    n_user_feature_ids: int = 0
    context_features: str = ""

    def __post_init__(self) -> None:
        if self.n_items < 1:
            raise ValueError(f"n_items must be positive, got {self.n_items}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.item_repr not in ITEM_REPRS:
            raise ValueError(f"item_repr must be one of {ITEM_REPRS}, got {self.item_repr!r}")
        if self.text_adapter not in TEXT_ADAPTERS:
            raise ValueError(f"text_adapter must be one of {TEXT_ADAPTERS}, got {self.text_adapter!r}")
        if self.item_repr != "id" and self.text_dim <= 0:
            raise ValueError(f"item_repr={self.item_repr!r} needs text vectors (text_dim > 0)")
        if self.fuse_gate not in FUSE_GATES:
            raise ValueError(f"fuse_gate must be one of {FUSE_GATES}, got {self.fuse_gate!r}")
        if not 0.0 <= self.output_gate_lift <= 1.0:
            raise ValueError(f"output_gate_lift must lie in [0, 1], got {self.output_gate_lift}")
        if self.pop_prior not in POP_PRIORS:
            raise ValueError(f"pop_prior must be one of {POP_PRIORS}, got {self.pop_prior!r}")
        if self.encoder == "transformer" and self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")

    @property
    def uses_text(self) -> bool:
        return self.item_repr in ("text", "fused")

    @property
    def uses_ids(self) -> bool:
        return self.item_repr in ("id", "fused")

    @property
    def uses_item_features(self) -> bool:
        return self.n_item_feature_ids > 0

    @property
    def represents_unseen(self) -> bool:
        """Whether items without training events have a vector of their own (text or side features)."""
        return self.uses_text or self.uses_item_features

    @property
    def contexts(self) -> tuple[str, ...]:
        return tuple(c for c in self.context_features.split(",") if c)


# ------------------------------------------------------------------------------------------ side inputs
def gap_buckets(timestamps: np.ndarray, n_buckets: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Log-scale buckets of the time since the previous event, for left-padded ``(B, T)`` timestamps.

    Bucket 0 is padding, 1 marks an event with no predecessor in the window, and a gap of ``g`` seconds goes
    to ``2 + floor(log2(1 + g))`` capped at ``n_buckets - 1``: a session click and a return after a month
    land far apart, and 28 buckets cover one second to four years.

    Parameters
    ----------
    timestamps:
        ``(B, T)`` integer seconds, left-padded.
    n_buckets:
        Total buckets including padding (at least 3).
    valid:
        ``(B, T)`` bool, True where there is an event; by default every position of a row from its first
        non-zero timestamp on (pass it when real timestamps can be 0).
    """
    if n_buckets < 3:
        raise ValueError("n_buckets must be at least 3 (padding, first event, one gap bucket)")
    ts = np.asarray(timestamps, dtype=np.int64)
    if valid is None:
        valid = np.cumsum(ts != 0, axis=1) > 0
    gaps = np.zeros_like(ts)
    gaps[:, 1:] = np.maximum(ts[:, 1:] - ts[:, :-1], 0)
    out = 2 + np.floor(np.log2(1.0 + gaps)).astype(np.int64)
    first = valid.copy()
    first[:, 1:] &= ~valid[:, :-1]  # an event whose left neighbour is padding has no gap
    out = np.minimum(out, n_buckets - 1)
    out[first] = 1
    out[~valid] = 0
    return out


# ------------------------------------------------------------------------------------------ side features
FeatureArrays = tuple[np.ndarray, np.ndarray]


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` with the CPU mask drawn as ``uniform >= p`` instead of ``bernoulli_``.

    The same function (inverted dropout, every element kept with probability ``1 − p`` and scaled by
    ``1 / (1 − p)``), but ``bernoulli_`` draws each element on its own on CPU: it was a fifth of a fused
    SeqRec step on the Amazon Office set (the text adapter's ``(items, hidden)`` block every step), about
    three times the cost of the mask below. On other devices :func:`torch.nn.functional.dropout` (fused
    kernels) runs unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return F.dropout(x, self.p, self.training)
        if self.p >= 1.0:
            return x * 0.0
        return x * torch.rand_like(x).ge_(self.p).div_(1.0 - self.p)


class FeatureEmbedding(nn.Module):
    """Rows (items or users) → the pooled embedding of their side features ``(…, d)``.

    ``ids`` ``(n_rows, width)`` holds each row's feature value ids in one shared table (0 = no value) and
    ``weights`` the pooling weights (``1 / values`` of each feature): several categories are averaged, the
    features summed. Both are buffers, saved with the weights; a row index beyond them (a user added since)
    has no features.
    """

    def __init__(self, n_ids: int, d: int, arrays: FeatureArrays | None, n_rows: int) -> None:
        super().__init__()
        ids, w = arrays if arrays is not None else (np.zeros((n_rows, 1)), np.zeros((n_rows, 1)))
        ids_t = torch.as_tensor(np.asarray(ids), dtype=torch.long)
        w_t = torch.as_tensor(np.asarray(w), dtype=torch.float32)
        if ids_t.ndim != 2 or ids_t.shape != w_t.shape or ids_t.shape[0] != n_rows:
            raise ValueError(f"feature ids and weights must both have shape ({n_rows}, width), got "
                             f"{tuple(ids_t.shape)} and {tuple(w_t.shape)}")
        if ids_t.numel() and (int(ids_t.min()) < 0 or int(ids_t.max()) >= n_ids):
            raise ValueError(f"feature ids must lie in 0..{n_ids - 1}")
        self.register_buffer("ids", ids_t.clone())
        self.register_buffer("weights", w_t.clone())
        self.emb = nn.Embedding(n_ids, d, padding_idx=PAD)
        nn.init.normal_(self.emb.weight, std=d ** -0.5)
        with torch.no_grad():
            self.emb.weight[PAD].zero_()

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        rows = torch.where(rows < self.ids.shape[0], rows, torch.zeros_like(rows))
        e = self.emb(self.ids[rows])  # (…, width, d)
        return (e * self.weights[rows].unsqueeze(-1)).sum(-2)  # (…, d)

    @torch.no_grad()
    def set_rows(self, rows: np.ndarray, arrays: FeatureArrays) -> None:
        """Replace the features of ``rows`` (growing the table when they lie beyond it)."""
        rows_t = torch.as_tensor(np.asarray(rows), dtype=torch.long, device=self.ids.device)
        ids = torch.as_tensor(np.asarray(arrays[0]), dtype=torch.long, device=self.ids.device)
        w = torch.as_tensor(np.asarray(arrays[1]), dtype=torch.float32, device=self.ids.device)
        if ids.shape[1:] != self.ids.shape[1:] or w.shape != ids.shape or len(ids) != len(rows_t):
            raise ValueError(f"expected ({len(rows_t)}, {self.ids.shape[1]}) feature ids and weights, got "
                             f"{tuple(ids.shape)} and {tuple(w.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.emb.num_embeddings):
            raise ValueError(f"feature ids must lie in 0..{self.emb.num_embeddings - 1}")
        need = int(rows_t.max()) + 1 if len(rows_t) else 0
        if need > self.ids.shape[0]:
            extra = need - self.ids.shape[0]
            self.ids = torch.cat([self.ids, self.ids.new_zeros(extra, self.ids.shape[1])])
            self.weights = torch.cat([self.weights, self.weights.new_zeros(extra, self.weights.shape[1])])
        self.ids[rows_t] = ids
        self.weights[rows_t] = w


#: Largest reduced text table (items × reduced dimensions) an :class:`ItemEncoder` keeps between steps
#: (64M numbers: 256 MB); larger catalogues project the rows a step needs instead.
REDUCED_TEXT_ENTRIES = 1 << 26


# ------------------------------------------------------------------------------------------ items
def principal_axes(centred: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` variances ``(k,)`` and axes ``(D, k)`` (columns, largest first) of ``(n, D)`` centred
    rows (the eigen-decomposition of their covariance)."""
    cov = centred.T @ centred / max(1, centred.shape[0] - 1)
    eigval, eigvec = torch.linalg.eigh(cov)  # ascending
    return eigval.flip(0)[:k], eigvec.flip(1)[:, :k]


def text_item_factors(text_vectors: np.ndarray, dim: int, fit_rows: np.ndarray | None = None) -> np.ndarray:
    """Items' coordinates on the top ``dim`` principal axes of their text vectors: ``(n_rows, k)`` float32,
    ``k = min(dim, text dimensions)``, from ``(n_rows, D)`` text vectors whose row 0 is padding (kept zero).

    The mean and the axes are fitted on the rows ``fit_rows`` marks (a boolean mask over every row, padding
    included; e.g. the items with training events), all item rows when ``None``; every item is projected.
    Items with similar texts get nearby coordinates: what an id table that starts from them
    (``id_init="text"`` or ``"svd+text"`` for id items) knows before its first step.
    """
    x = torch.as_tensor(np.asarray(text_vectors), dtype=torch.float64)
    rows = torch.ones(x.shape[0], dtype=torch.bool) if fit_rows is None else torch.as_tensor(fit_rows).clone()
    rows[PAD] = False
    if int(rows.sum()) < 2:
        rows = torch.arange(x.shape[0]) != PAD
    mean = x[rows].mean(0)
    _, axes = principal_axes(x[rows] - mean, min(dim, x.shape[1]))
    out = ((x - mean) @ axes).float()
    out[PAD] = 0.0
    return out.numpy()


class TextAdapter(nn.Module):
    """Frozen text vectors → (fixed whitening/PCA) → learned MLP → ``d_model``.

    The projection is fitted once on the training catalogue (:meth:`fit`) and stored as buffers, so it is
    saved with the weights and applies unchanged to items added later.
    """

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.kind = cfg.text_adapter
        k = cfg.text_dim if cfg.text_adapter == "none" else min(cfg.text_reduced_dim, cfg.text_dim)
        self.register_buffer("mean", torch.zeros(cfg.text_dim))
        self.register_buffer("proj", torch.eye(cfg.text_dim)[:, :k].clone())  # (D, k)
        self.mlp = nn.Sequential(
            nn.Linear(k, cfg.adapter_hidden),
            nn.GELU(),
            Dropout(cfg.dropout),
            nn.Linear(cfg.adapter_hidden, cfg.d_model),
        )
        # A linear path next to the MLP keeps the whitened geometry available from step one.
        self.skip = nn.Linear(k, cfg.d_model, bias=False)

    @torch.no_grad()
    def fit(self, vectors: torch.Tensor) -> None:
        """Fit the projection on ``(n, D)`` text vectors of the items seen in training."""
        x = vectors.double()
        mean = x.mean(0)
        self.mean.copy_(mean.to(self.mean.dtype))
        if self.kind == "none":
            return
        eigval, eigvec = principal_axes(x - mean, self.proj.shape[1])
        if self.kind == "whiten":
            # Whitening: unit variance per component; eps keeps near-null directions from exploding.
            proj = eigvec / torch.sqrt(eigval.clamp_min(0) + 1e-5 * eigval[0])
        else:
            # PCA: rotate onto the top components, rescaled so the total variance is about k.
            proj = eigvec / torch.sqrt(eigval.clamp_min(1e-12).mean())
        self.proj.copy_(proj.to(self.proj.dtype))

    def reduce(self, vectors: torch.Tensor) -> torch.Tensor:
        """The fixed part: ``(…, D)`` text vectors → ``(…, k)`` (centred, projected)."""
        return (vectors - self.mean) @ self.proj

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """The learned part: ``(…, k)`` reduced vectors → ``(…, d)``."""
        return self.mlp(z) + self.skip(z)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.head(self.reduce(vectors))  # (…, d)


class ItemEncoder(nn.Module):
    """Item indices → item vectors ``(…, d)``; :meth:`forward` with no argument gives the whole table.

    Parameters
    ----------
    cfg:
        The network configuration.
    text_vectors:
        ``(n_items + 1, text_dim)`` float array, row 0 (padding) zeros; required for ``"text"``/``"fused"``.
    item_counts:
        ``(n_items + 1,)`` training events per item. ``"fused"`` gates the id part by it, and items with no
        training event never use their (untrained) id vector. The adapter's whitening is fitted on the text of
        items with a count > 0 (all items when no counts are given).
    item_features:
        ``(ids, weights)``, each ``(n_items + 1, width)``: the items' side feature ids and pooling weights
        (:class:`FeatureEmbedding`), needed when ``cfg.n_item_feature_ids > 0``. Their embedding is added to
        every item vector, so the output side (the scores of all items) uses them as much as the input side,
        and an item without training events is represented by its features.
    """

    def __init__(self, cfg: NetworkConfig, text_vectors: np.ndarray | torch.Tensor | None = None,
                 item_counts: np.ndarray | torch.Tensor | None = None,
                 item_features: FeatureArrays | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        n_rows = cfg.n_items + 1
        counts = (torch.zeros(n_rows) if item_counts is None
                  else torch.as_tensor(item_counts, dtype=torch.float32))
        if counts.shape != (n_rows,):
            raise ValueError(f"item_counts must have shape ({n_rows},), got {tuple(counts.shape)}")
        self.register_buffer("counts", counts.clone())
        if cfg.uses_ids:
            self.id_emb = nn.Embedding(n_rows, cfg.d_model, padding_idx=PAD)
            nn.init.normal_(self.id_emb.weight, std=cfg.d_model ** -0.5)
            with torch.no_grad():
                self.id_emb.weight[PAD].zero_()
                if cfg.item_repr == "fused" and cfg.fuse_gate == "residual":
                    # The item vector starts as its text vector; ids learn only the residual events ask for.
                    self.id_emb.weight.zero_()
        if cfg.uses_text:
            if text_vectors is None:
                raise ValueError(f"item_repr={cfg.item_repr!r} needs text_vectors")
            tv = torch.as_tensor(np.asarray(text_vectors, dtype=np.float32))
            if tv.shape != (n_rows, cfg.text_dim):
                raise ValueError(f"text_vectors must have shape ({n_rows}, {cfg.text_dim}), "
                                 f"got {tuple(tv.shape)}")
            self.register_buffer("text", tv.clone())
            self.adapter = TextAdapter(cfg)
            self._reduced: dict[bool, tuple[torch.Tensor, tuple[int, ...], torch.Tensor]] = {}
            seen = counts[1:] > 0 if item_counts is not None else torch.ones(cfg.n_items, dtype=torch.bool)
            self.adapter.fit(tv[1:][seen] if int(seen.sum()) > 1 else tv[1:])
        if cfg.uses_item_features:
            if item_features is None:
                raise ValueError("n_item_feature_ids > 0 needs the items' feature ids (item_features)")
            self.features = FeatureEmbedding(cfg.n_item_feature_ids, cfg.d_model, item_features, n_rows)
        if cfg.pop_prior != "none":
            self._fit_popularity(counts)
        if cfg.item_repr == "fused":
            # gate(count) = sigmoid(scale * (log1p(count) - shift)); starts at 0.5 for `fuse_pivot` events.
            self.gate_scale = nn.Parameter(torch.tensor(2.0))
            self.gate_shift = nn.Parameter(torch.tensor(math.log1p(cfg.fuse_pivot)))
            if cfg.fuse_gate == "learned":
                # A per-item term from the item's whitened text, zero at the start (the count gate) and kept
                # near it by weight decay: which kinds of items the id part helps is learned end to end.
                self.gate_text = nn.Linear(self.adapter.proj.shape[1], 1, bias=False)
                nn.init.zeros_(self.gate_text.weight)

    @property
    def n_rows(self) -> int:
        return int(self.counts.shape[0])

    @torch.no_grad()
    def _fit_popularity(self, counts: torch.Tensor) -> None:
        """The popularity prior's item side ``log_pop`` (see :func:`log_popularity`): with text, items without
        a training event get the popularity their text predicts (ridge regression of ``log(1 + count)`` on the
        text vectors of the items that have events), so new items keep a fair prior."""
        w = torch.zeros(self.cfg.text_dim)
        b = torch.zeros(())
        seen = counts > 0
        if self.cfg.uses_text and int(seen.sum()) > 1:
            x, y = self.text[seen].double(), torch.log1p(counts[seen]).double()
            xm, ym = x.mean(0), y.mean()
            xc = x - xm
            ridge = xc.T @ xc + RIDGE_PRIOR * torch.eye(x.shape[1], dtype=x.dtype)
            w64 = torch.linalg.solve(ridge, xc.T @ (y - ym))
            w, b = w64.float(), (ym - xm @ w64).float()
        self.register_buffer("pop_w", w)
        self.register_buffer("pop_b", b)
        self.register_buffer("log_pop", self._log_popularity())

    def _log_popularity(self) -> torch.Tensor:
        """:func:`log_popularity` of the current catalogue, unseen rows predicted from text when fitted."""
        predicted = None
        if self.cfg.uses_text and bool(self.pop_w.abs().sum() > 0):
            predicted = (self.text @ self.pop_w + self.pop_b).clamp_min(0)
        return log_popularity(self.counts, predicted)

    @torch.no_grad()
    def init_ids(self, factors: np.ndarray | torch.Tensor) -> None:
        """Start the id table from ``(n_rows, k)`` item factors, ``k ≤ d_model`` (row 0, padding, is ignored):
        they are rescaled to the random start's scale (standard deviation ``d_model ** -0.5`` over the items)
        and written into the first ``k`` columns; the other columns keep their random start."""
        if not self.cfg.uses_ids:
            raise ValueError("init_ids needs an id table (item_repr='id' or 'fused')")
        z = torch.as_tensor(np.asarray(factors, dtype=np.float32))[1:]
        k = z.shape[1]
        if z.shape[0] != self.n_rows - 1 or not 1 <= k <= self.cfg.d_model:
            raise ValueError(f"factors must have shape ({self.n_rows}, k ≤ {self.cfg.d_model}), "
                             f"got {tuple(np.shape(factors))}")
        z = z / z.std().clamp_min(1e-12) * self.cfg.d_model ** -0.5
        self.id_emb.weight[1:, :k] = z.to(self.id_emb.weight.dtype)

    @torch.no_grad()
    def init_ids_from_text(self) -> None:
        """Start the id table from the adapted text vectors (a warm start that keeps similar items close)."""
        if not (self.cfg.uses_ids and self.cfg.uses_text):
            raise ValueError("init_ids_from_text needs item_repr='fused'")
        self.init_ids(self.adapter.reduce(self.text)[:, : self.cfg.d_model])  # (n_rows, k) reduced text

    def reduced_text(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Items' text through the adapter's fixed projection (no parameters): ``(*items.shape, k)``, every
        row when ``items`` is ``None``. The whole table is computed once and kept until the text, the
        projection or the device change (while it holds at most :data:`REDUCED_TEXT_ENTRIES` numbers), so
        a training step runs only the adapter's learned layers (the projection is nearly half its
        arithmetic)."""
        if self.text.shape[0] * self.adapter.proj.shape[1] > REDUCED_TEXT_ENTRIES:
            return self.adapter.reduce(self.text if items is None else self.text[items])
        mode = torch.is_inference_mode_enabled()  # a tensor made in inference mode cannot enter autograd
        versions = (self.text._version, self.adapter.mean._version, self.adapter.proj._version)
        kept = self._reduced.get(mode)
        if kept is None or kept[0] is not self.text or kept[1] != versions:
            with torch.no_grad():
                kept = (self.text, versions, self.adapter.reduce(self.text))
            self._reduced[mode] = kept
        return kept[2] if items is None else kept[2][items]

    def id_gate(self, counts: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """How much of the id vector an item with ``counts`` training events uses, in ``[0, 1]`` (``items``:
        their indices, needed by the learned gate's text term)."""
        if self.cfg.item_repr == "id":
            return torch.ones_like(counts)
        if self.cfg.item_repr == "text":
            return torch.zeros_like(counts)
        if self.cfg.fuse_gate in ("none", "residual"):
            g = torch.ones_like(counts)
        else:
            logit = self.gate_scale * (torch.log1p(counts) - self.gate_shift)
            if self.cfg.fuse_gate == "learned" and items is not None:
                logit = logit + self.gate_text(self.reduced_text(items)).squeeze(-1)
            g = torch.sigmoid(logit)
        return torch.where(counts > 0, g, torch.zeros_like(g))  # never-trained ids stay out

    def forward(self, items: torch.Tensor | None = None, gate_lift: float = 0.0) -> torch.Tensor:
        """Vectors of ``items`` (indices, any shape) → ``(*items.shape, d)``; ``None``: the whole table.

        ``gate_lift`` (``"fused"``; the output side's, see :meth:`SeqRecNetwork.item_table`): each trained
        item's id gate ``g`` becomes ``g + gate_lift · (1 − g)``, so 0 is the gate as trained and 1 every
        trained id at full weight; rare items, whose gate is small, gain the most (items without training
        events keep no id part). In training the id dropout then follows the lifted gate."""
        if items is not None and self.cfg.uses_text and items.numel() > 1:
            # a batch names each item at many positions (and short histories are mostly padding): the text
            # adapter runs once per distinct item and the positions read its row (training: one dropout draw
            # per item per step, as the output table has)
            uniq, inverse = torch.unique(items, return_inverse=True)
            if len(uniq) < items.numel():
                return self._vectors(uniq, gate_lift)[inverse]
        return self._vectors(items, gate_lift)

    def _vectors(self, items: torch.Tensor | None, gate_lift: float) -> torch.Tensor:
        idx = torch.arange(self.n_rows, device=self.counts.device) if items is None else items
        out: torch.Tensor | None = None
        if self.cfg.uses_text:
            out = self.adapter.head(self.reduced_text(idx))  # (…, d)
        if self.cfg.uses_ids:
            e = self.id_emb(idx)  # (…, d)
            if self.cfg.item_repr == "fused":
                g = self.id_gate(self.counts[idx], idx)  # (…,)
                if gate_lift:
                    g = torch.where(self.counts[idx] > 0, g + gate_lift * (1 - g), g)
                if self.training and (self.cfg.id_dropout > 0 or self.cfg.id_dropout_min > 0):
                    p = (self.cfg.id_dropout * (1 - g.detach())).clamp_min(self.cfg.id_dropout_min)
                    keep = torch.rand_like(g) >= p
                    g = g * keep
                e = e * g.unsqueeze(-1)
            elif self.cfg.uses_item_features:
                # an id never trained says nothing: such items (cold, added later) are their features alone
                e = e * (self.counts[idx] > 0).unsqueeze(-1).to(e.dtype)
            out = e if out is None else out + e
        if self.cfg.uses_item_features:
            f = self.features(idx)  # (…, d)
            out = f if out is None else out + f
        assert out is not None
        # Padding is a zero vector whatever the representation, so padded inputs carry nothing.
        return out.masked_fill((idx == PAD).unsqueeze(-1), 0.0)

    @torch.no_grad()
    def add_items(self, text_vectors: np.ndarray | torch.Tensor | None, n_new: int,
                  features: FeatureArrays | None = None) -> None:
        """Grow the catalogue by ``n_new`` items (cold start).

        New rows get zero counts, so ``"fused"`` and ``"text"`` represent them by text alone; ``"id"`` gives
        them a fresh random vector (scored, but blind) unless the model has item features: then their
        ``features`` (ids and weights, ``(n_new, width)`` each; none when omitted) represent them.
        """
        if n_new <= 0:
            return
        dev = self.counts.device
        if self.cfg.uses_item_features:
            width = self.features.ids.shape[1]
            if features is None:
                features = (np.zeros((n_new, width), dtype=np.int64), np.zeros((n_new, width), np.float32))
            self.features.set_rows(np.arange(self.n_rows, self.n_rows + n_new), features)
        self.counts = torch.cat([self.counts, torch.zeros(n_new, device=dev)])
        if self.cfg.uses_text:
            if text_vectors is None:
                raise ValueError("new items need text vectors for a text representation")
            tv = torch.as_tensor(np.asarray(text_vectors, dtype=np.float32), device=dev)
            if tv.shape != (n_new, self.cfg.text_dim):
                raise ValueError(f"expected ({n_new}, {self.cfg.text_dim}) text vectors, "
                                 f"got {tuple(tv.shape)}")
            self.text = torch.cat([self.text, tv])
        if self.cfg.uses_ids:
            old = self.id_emb.weight
            new = torch.randn(n_new, old.shape[1], device=dev, dtype=old.dtype) * self.cfg.d_model ** -0.5
            emb = nn.Embedding(old.shape[0] + n_new, old.shape[1], padding_idx=PAD).to(dev)
            emb.weight.copy_(torch.cat([old, new]))
            self.id_emb = emb
        if self.cfg.pop_prior != "none":
            self.log_pop = self._log_popularity()
        self.cfg = _replace_n_items(self.cfg, self.n_rows - 1)


def log_popularity(counts: torch.Tensor, predicted: torch.Tensor | None = None) -> torch.Tensor:
    """The popularity prior's item side, ``(n_items + 1,)``: ``log(1 + training count)``. An item with no
    training event (new, or held out) gets ``predicted`` (from its text) when given, else the mean over the
    items that have events: a 0 would bury every new item under the whole catalogue. Padding gets 0."""
    log_pop = torch.log1p(counts.float().clamp_min(0))
    seen = counts > 0
    unknown = log_pop[seen].mean() if bool(seen.any()) else log_pop.new_zeros(())
    if predicted is not None:
        unknown = predicted.to(log_pop)
    out = torch.where(seen, log_pop, unknown)
    out[PAD] = 0.0
    return out


def _replace_n_items(cfg: NetworkConfig, n_items: int) -> NetworkConfig:
    from dataclasses import replace

    return replace(cfg, n_items=n_items)


# ------------------------------------------------------------------------------------------ sequences
class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        # No dropout on the attention probabilities: on CPU it costs a (B, heads, T, T) random mask per layer
        # for little gain over the residual and embedding dropout.
        self.resid_drop = Dropout(cfg.dropout)
        #: Attention written out (softmax of masked q·k) instead of the fused kernel: the same function, but
        #: one that ``torch.func.vmap`` batches (per-sample gradients for differential privacy).
        self.explicit = False

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) → (B, heads, T, C / heads)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))
        if self.explicit:
            att = (q @ k.transpose(-2, -1)) * (C // self.n_heads) ** -0.5  # (B, heads, T, T)
            y = att.masked_fill(~mask, float("-inf")).softmax(-1) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, heads, T, C / heads)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.out(y))


class Block(nn.Module):
    """Pre-LN Transformer block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))`` (stable without tricks)."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.ff_mult * cfg.d_model),
            nn.GELU(),
            nn.Linear(cfg.ff_mult * cfg.d_model, cfg.d_model),
            Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp(self.ln2(x))


class SequenceEncoder(nn.Module):
    """A user's last ``T`` events → one hidden state per position ``(B, T, d)``.

    Parameters
    ----------
    cfg:
        The network configuration (``encoder`` picks Transformer, GRU or LSTM).
    item_encoder:
        The :class:`ItemEncoder` whose vectors embed the input items. Sharing it with the output layer (as
        SASRec does) is what makes text-represented items usable as input and as target; by default a new one
        is made (``"id"`` representation only, since text needs vectors).
    user_features:
        ``(ids, weights)``, each ``(n_users + 1, width)``: the users' side feature ids and pooling weights,
        needed when ``cfg.n_user_feature_ids > 0``.
    """

    def __init__(self, cfg: NetworkConfig, item_encoder: ItemEncoder | None = None,
                 user_features: FeatureArrays | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.items = item_encoder if item_encoder is not None else ItemEncoder(cfg)
        d = cfg.d_model
        self.type_emb = nn.Embedding(cfg.n_types + 1, d, padding_idx=PAD) if cfg.n_types > 0 else None
        self.gap_emb = nn.Embedding(cfg.n_gap_buckets, d, padding_idx=PAD) if cfg.n_gap_buckets > 0 else None
        self.user_features: FeatureEmbedding | None = None
        if cfg.n_user_feature_ids > 0:
            if user_features is None:
                raise ValueError("n_user_feature_ids > 0 needs the users' feature ids (user_features)")
            self.user_features = FeatureEmbedding(cfg.n_user_feature_ids, d, user_features,
                                                  len(user_features[0]))
        self.context_emb = nn.ModuleDict({c: nn.Embedding(CONTEXT_FEATURES[c] + 1, d, padding_idx=PAD)
                                          for c in cfg.contexts})
        self.emb_drop = Dropout(cfg.dropout)
        if cfg.encoder == "transformer":
            self.pos_emb = nn.Embedding(cfg.max_len, d)
            self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
            self.ln_f = nn.LayerNorm(d)
            self.rnn: nn.GRU | nn.LSTM | None = None
        else:
            rnn_cls = nn.GRU if cfg.encoder == "gru" else nn.LSTM
            self.rnn = rnn_cls(d, d, num_layers=cfg.n_layers, batch_first=True,
                               dropout=cfg.dropout if cfg.n_layers > 1 else 0.0)
            self.ln_f = nn.LayerNorm(d)
        # GPT-style small init for the encoder's own layers (the item encoder initialises itself); side and
        # position embeddings start at the scale of item vectors (norm about 1) so none dominates the sum.
        for name, m in self.named_modules():
            if name.startswith("items"):
                continue
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=d ** -0.5)
                if m.padding_idx is not None:
                    with torch.no_grad():
                        m.weight[m.padding_idx].zero_()

    def embed(self, items: torch.Tensor, types: torch.Tensor | None = None,
              gaps: torch.Tensor | None = None, users: torch.Tensor | None = None,
              context: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Input vectors ``(B, T, d)``: item + type + gap + context + the user's features (+ position for the
        Transformer), padding zeroed."""
        B, T = items.shape
        if self.cfg.max_len < T:
            raise ValueError(f"sequence length {T} exceeds max_len {self.cfg.max_len}")
        x = self.items(items)  # (B, T, d)
        if self.type_emb is not None and types is not None:
            x = x + self.type_emb(types)
        if self.gap_emb is not None and gaps is not None:
            x = x + self.gap_emb(gaps)
        for name, emb in self.context_emb.items():
            if context is not None and name in context:
                x = x + emb(context[name])
        if self.user_features is not None and users is not None:
            x = x + self.user_features(users).unsqueeze(1)  # (B, 1, d): the same at every position
        if self.rnn is None:
            # Left padding puts the newest event at column T-1 whatever the length, so position
            # (max_len - T + t) means "this many steps before the end" consistently across batches.
            pos = torch.arange(self.cfg.max_len - T, self.cfg.max_len, device=items.device)
            x = x + self.pos_emb(pos)  # (B, T, d) + (T, d)
        x = self.emb_drop(x)
        return x.masked_fill((items == PAD).unsqueeze(-1), 0.0)

    def forward(self, items: torch.Tensor, types: torch.Tensor | None = None,
                gaps: torch.Tensor | None = None, users: torch.Tensor | None = None,
                context: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Hidden states ``(B, T, d)``; row ``t`` has seen ``items[:, :t+1]`` only.

        Parameters
        ----------
        items:
            ``(B, T)`` long item indices, left-padded with :data:`PAD`.
        types:
            ``(B, T)`` long event-type indices shifted by one (0 = padding), or ``None``.
        gaps:
            ``(B, T)`` long gap buckets (:func:`gap_buckets`), or ``None``.
        users:
            ``(B,)`` long user indices (0: anonymous) for the user features, or ``None``.
        context:
            ``{name: (B, T) long ids}`` of the context features (0 = padding), or ``None``.
        """
        blocks = None if self.rnn is not None else self.blocks
        return encode_body(self.embed(items, types, gaps, users, context), items != PAD, blocks, self.rnn,
                           self.ln_f)

    def body(self) -> EncoderBody:
        """The layers after the input embedding, sharing this encoder's modules (see :class:`EncoderBody`)."""
        return EncoderBody(None if self.rnn is not None else self.blocks, self.rnn, self.ln_f)


class EncoderBody(nn.Module):
    """The part of :class:`SequenceEncoder` after the input embedding: Transformer blocks (or the RNN) and
    the final layer norm, ``(x (B, T, d), valid (B, T) bool) → (B, T, d)``.

    It is what the serving runtimes replace (:mod:`lmrec.models.seqrec.runtime`): int8 quantises its linear
    layers, ONNX runs it as a graph. Item vectors, inputs and the output layer stay those of the float
    network, so new items and the popularity prior work alike in every runtime.
    """

    def __init__(self, blocks: nn.ModuleList | None, rnn: nn.GRU | nn.LSTM | None,
                 ln_f: nn.LayerNorm) -> None:
        super().__init__()
        if (blocks is None) == (rnn is None):
            raise ValueError("an encoder body has Transformer blocks or an RNN, not both")
        self.blocks = blocks
        self.rnn = rnn
        self.ln_f = ln_f

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return encode_body(x, valid, self.blocks, self.rnn, self.ln_f)


def encode_body(x: torch.Tensor, valid: torch.Tensor, blocks: nn.ModuleList | None,
                rnn: nn.GRU | nn.LSTM | None, ln_f: nn.Module) -> torch.Tensor:
    """Embedded inputs ``(B, T, d)`` and their padding mask ``(B, T)`` → hidden states ``(B, T, d)``."""
    if rnn is not None:
        # Padding comes first and its input is zero, so the recurrence starts (nearly) from rest.
        h, _ = rnn(x)
        return ln_f(h)
    assert blocks is not None
    t = torch.arange(x.shape[1], device=x.device)
    # Index comparisons rather than tril/eye, so the graph exports to ONNX with plain ops.
    causal = t.unsqueeze(1) >= t.unsqueeze(0)  # (T, T) query × key
    mask = causal.unsqueeze(0) & valid.unsqueeze(1)  # (B, T, T): never attend to a padded key
    # A padded query would see no key at all (a NaN softmax): let every position attend to itself.
    mask = (mask | (t.unsqueeze(1) == t.unsqueeze(0))).unsqueeze(1)  # (B, 1, T, T)
    for block in blocks:
        x = block(x, mask)
    return ln_f(x)


class SeqRecNetwork(nn.Module):
    """The whole SeqRec network: :class:`ItemEncoder` shared by :class:`SequenceEncoder` input and output."""

    def __init__(self, cfg: NetworkConfig, text_vectors: np.ndarray | torch.Tensor | None = None,
                 item_counts: np.ndarray | torch.Tensor | None = None,
                 item_features: FeatureArrays | None = None,
                 user_features: FeatureArrays | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.item_encoder = ItemEncoder(cfg, text_vectors, item_counts, item_features)
        self.sequence_encoder = SequenceEncoder(cfg, self.item_encoder, user_features)
        if cfg.pop_prior == "user":
            self.prior_weight = nn.Linear(cfg.d_model, 1)  # β(h), starts at pop_prior_weight for everyone
            nn.init.zeros_(self.prior_weight.weight)
            nn.init.constant_(self.prior_weight.bias, cfg.pop_prior_weight)

    def forward(self, items: torch.Tensor, types: torch.Tensor | None = None,
                gaps: torch.Tensor | None = None, users: torch.Tensor | None = None,
                context: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Hidden states ``(B, T, d)`` (see :meth:`SequenceEncoder.forward`)."""
        return self.sequence_encoder(items, types, gaps, users, context)

    def output_lift(self, extra: float = 0.0) -> float:
        """The gate lift of the output side: ``output_gate_lift`` then ``extra`` on top (lifting by ``a`` then
        ``b`` is lifting by ``1 − (1 − a)(1 − b)``)."""
        return 1.0 - (1.0 - self.cfg.output_gate_lift) * (1.0 - extra)

    def item_table(self, gate_lift: float = 0.0) -> torch.Tensor:
        """All output item vectors ``(n_items + 1, d)`` (row 0 is zeros), the table targets are scored
        against; ``gate_lift``: a further lift of the id gates (:meth:`ItemEncoder.forward`, scoring only)."""
        return self.item_encoder(gate_lift=self.output_lift(gate_lift))

    def output_items(self, items: torch.Tensor) -> torch.Tensor:
        """Output vectors of ``items`` (rows of :meth:`item_table`), for sampled losses."""
        return self.item_encoder(items, gate_lift=self.output_lift())

    def log_popularity(self) -> torch.Tensor:
        """The prior's item side, ``(n_items + 1,)`` (see :meth:`ItemEncoder._fit_popularity`)."""
        return self.item_encoder.log_pop

    def prior_weights(self, hidden: torch.Tensor) -> torch.Tensor | None:
        """``β`` of the popularity prior per hidden state ``(N,)`` (``None`` without a prior)."""
        if self.cfg.pop_prior == "none":
            return None
        if self.cfg.pop_prior == "fixed":
            return hidden.new_full(hidden.shape[:-1], self.cfg.pop_prior_weight)
        return self.prior_weight(hidden).squeeze(-1)

    def scores(self, hidden: torch.Tensor, table: torch.Tensor, prior_scale: float = 1.0) -> torch.Tensor:
        """Scores ``(N, n_items + 1)`` of hidden states ``(N, d)`` against an item table: dot products plus
        ``prior_scale ·`` the popularity prior (1 as trained; less favours rare items, 0 drops it)."""
        s = hidden @ table.T
        beta = self.prior_weights(hidden)
        if beta is not None and prior_scale:
            s = s + (prior_scale * beta).unsqueeze(-1) * self.log_popularity()[: table.shape[0]]
        return s

    def last_scores(self, items: torch.Tensor, types: torch.Tensor | None = None,
                    gaps: torch.Tensor | None = None) -> torch.Tensor:
        """Next-item scores after the last position, ``(B, n_items + 1)``; column 0 is ``-inf``."""
        h = self.sequence_encoder(items, types, gaps)[:, -1]  # (B, d)
        scores = self.scores(h, self.item_table())  # (B, n_items + 1)
        scores[:, PAD] = float("-inf")
        return scores
