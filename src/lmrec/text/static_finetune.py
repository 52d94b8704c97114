"""Fine-tune a static (Model2Vec) encoder end to end through the text recommender.

A static model's text vector is the mean of its tokens' vectors, so a whole catalogue's vectors are one
``embedding_bag`` over the token table: cheap enough to recompute at every optimiser step. That makes it
possible to train the encoder *through the recommender* rather than on text pairs: the token vectors of
the words the catalogue uses are the parameters, and the loss is the text-only recommender's own
(ContentLM's rule: the catalogue mean removed, unit item vectors, a user is the recency-weighted mean of
their last items' vectors, every item scored by cosine), a full softmax over the catalogue for every next
event of the training sequences; the user's earlier items are left out as at ranking time, and so are
items without training events (no evidence against them: a new item keeps the score its text gives it).

What is learned stays an encoder: the saved folder is the base model with those tokens' vectors replaced, so
every model that reads item vectors (ContentLM, SeqRec's text and fused items, ``auto``) uses it unchanged,
and a new item's text is encoded with words that behaviour has taught. The number of epochs is chosen on
events the training never sees: each user's last training event is held back, training stops when their
NDCG@10 has not improved for ``patience`` epochs, and the model is trained again from the base on every
training event for the best number of epochs. A split's validation and test events are never read, so the
split's validation stays an honest check of the result (and of a blend fitted on it, such as ``auto``).

This is what :func:`lmrec.text.finetune_encoder` cannot afford for a transformer on a CPU: a forward pass of
the catalogue at every step. Benchmark (Amazon Office): ``docs/benchmarks.md``, section
``text-finetune-office``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmrec.config import resolve_device
from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.splits import Split, leave_one_out
from lmrec.text.encoders import StaticEncoder, get_encoder
from lmrec.text.finetune import (
    folder_encoder,
    held_out_check,
    new_model_folder,
    publish_finetuned,
    stamp_revision,
    text_ranking_ndcg,
)
from lmrec.text.templates import ItemTemplate


@dataclass(frozen=True)
class StaticFinetuneConfig:
    """Settings of :func:`finetune_static_encoder`.

    Attributes
    ----------
    epochs:
        The most passes over the training events (fewer when held-back events stop it).
    patience:
        Epochs without a better held-back NDCG@10 before stopping; 0 trains ``epochs`` passes and keeps them.
    batch_size:
        Next events per optimiser step, each scored against the whole catalogue (a step holds
        ``batch_size × items`` logits: lower it for catalogues of millions).
    learning_rate:
        Adam's step, in units of the mean absolute coordinate of the catalogue's token vectors (the vectors
        are normalised after pooling, so only their relative size matters and this works for any model).
    history:
        A user is read from their last ``history`` items (ContentLM's ``max_history``).
    half_life:
        Recency half-life in history steps (ContentLM's).
    scale:
        Starting inverse temperature of the softmax over cosines (learned).
    template:
        Item template (string form); ``None`` for the default, which is what :func:`item_vectors` encodes.
    seed:
        Seeds the order of the training events.
    """

    epochs: int = 40
    patience: int = 3
    batch_size: int = 256
    learning_rate: float = 0.03
    history: int = 50
    half_life: float = 3.0
    scale: float = 20.0
    template: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "history"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.patience < 0 or self.learning_rate <= 0 or self.scale <= 0:
            raise ValueError("patience must be >= 0, and learning_rate and scale positive")


@dataclass(frozen=True)
class StaticFinetuneResult:
    """Where the fine-tuned encoder was written and how training went."""

    path: Path
    name: str
    revision: str
    #: training events the final model learned from (next events with at least one item before them)
    n_events: int
    seconds: float
    epochs: int
    #: mean training loss of each epoch of the final run
    losses: list[float]
    #: held-back NDCG@10 (each user's last training event) after each epoch of the stopping run
    held_back: list[float]
    config: StaticFinetuneConfig
    #: the held-out check given a split: its validation NDCG@10 of the text-only recommender with the base
    #: and the fine-tuned folder (``{"base": .., "fine-tuned": .., "users": ..}``)
    validation: dict[str, float] | None = None

    def encoder(self, **options: Any) -> StaticEncoder:
        """The fine-tuned model as an encoder (its revision keeps its cached vectors apart)."""
        return folder_encoder(self.path, StaticEncoder, **options)


class _Catalogue:
    """The catalogue's texts as bags of the tokens they use, and the ContentLM vectors a token table gives."""

    def __init__(self, encoder: StaticEncoder, texts: list[str], rows: np.ndarray, n_rows: int,
                 max_tokens: int | None, device: str) -> None:
        import torch

        ids = encoder.token_ids(texts, max_tokens=max_tokens)
        flat = np.concatenate([np.asarray(x, dtype=np.int64) for x in ids]) if ids else np.zeros(0, np.int64)
        #: the distinct tokens of the catalogue (the trained ones) and each text's tokens as positions in it
        self.tokens, local = np.unique(flat, return_inverse=True)
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        has = lengths > 0
        self.device = device
        self.base = encoder.token_vectors(self.tokens)
        self.normalize = bool(encoder.load().normalize)
        offsets = np.concatenate([[0], np.cumsum(lengths[has])[:-1]]).astype(np.int64)
        self.flat = torch.as_tensor(local.reshape(-1), device=device)
        self.offsets = torch.as_tensor(offsets, device=device)
        self.rows = torch.as_tensor(np.asarray(rows, dtype=np.int64)[has], device=device)  # item of each bag
        self.has = torch.zeros(n_rows, dtype=torch.bool, device=device)
        self.has[self.rows] = True
        self.n_rows = n_rows

    def unit_vectors(self, table: Any, centre_on: Any = None) -> Any:
        """``(n_rows, d)`` ContentLM vectors of every item: encoded, centred on the catalogue mean (of the
        items ``centre_on``, a boolean ``(n_rows,)`` tensor, when given), unit length; zero for padding and
        items without tokens."""
        import torch
        import torch.nn.functional as F

        pooled = F.embedding_bag(self.flat, table, self.offsets, mode="mean")
        if self.normalize:
            pooled = F.normalize(pooled, dim=1)
        v = torch.zeros(self.n_rows, table.shape[1], device=table.device, dtype=table.dtype)
        v = v.index_copy(0, self.rows, pooled)
        among = pooled if centre_on is None else pooled[centre_on[self.rows]]
        centre = among.mean(0) if len(among) else torch.zeros_like(v[0])
        return F.normalize(v - centre, dim=1) * self.has[:, None]


class _NextEvents:
    """Every training event with at least one event before it, as a target with its history; a batch's
    history windows are cut when asked (a window per event for the whole data would be ``history`` times its
    size)."""

    def __init__(self, ds: Dataset, width: int) -> None:
        self.seqs = ds.sequences
        rows = self.seqs.row_ids()
        at = np.arange(len(self.seqs.values)) - self.seqs.offsets[:-1][rows]  # position within its row
        keep = at > 0
        self.rows, self.ends = rows[keep], at[keep]
        self.targets = self.seqs.values[keep].astype(np.int64)
        self.width = width

    def __len__(self) -> int:
        return len(self.targets)

    def windows(self, events: np.ndarray) -> np.ndarray:
        """``(len(events), width)`` the items before each of these targets, left-padded with 0."""
        return self.seqs.windows(self.rows[events], self.ends[events], self.width)


def _train(cat: _Catalogue, events: _NextEvents, trained: np.ndarray,
           cfg: StaticFinetuneConfig, epochs: int, held_back: tuple[Ragged, Any] | None,
           on_epoch: Callable[[dict[str, float]], None] | None
           ) -> tuple[np.ndarray, list[float], list[float]]:
    """Train the catalogue's token vectors on next events (each from its history); only the
    ``trained`` items (those with events in the data trained on) are softmax alternatives, as in SeqRec: an
    item nobody chose is no evidence against it, and a new item must keep the score its text gives it.
    Returns (best token vectors, epoch losses, held-back NDCG@10 per epoch); without ``held_back`` the last
    epoch's vectors."""
    import torch
    import torch.nn.functional as F

    dev = cat.device
    unit_scale = float(np.abs(cat.base).mean()) or 1.0
    table = torch.nn.Parameter(torch.as_tensor(cat.base / unit_scale, device=dev))
    log_scale = torch.nn.Parameter(torch.tensor(float(np.log(cfg.scale)), device=dev))
    opt = torch.optim.Adam([table, log_scale], lr=cfg.learning_rate)
    width = events.width
    recency = torch.as_tensor(np.power(0.5, (width - 1 - np.arange(width)) / cfg.half_life)
                              if cfg.half_life > 0 else np.ones(width), dtype=torch.float32, device=dev)
    tgt = torch.as_tensor(events.targets, device=dev)
    alternatives = cat.has & torch.as_tensor(trained, device=dev)
    gen = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    scores: list[float] = []
    best, best_value, bad = table.detach().clone(), -1.0, 0
    for epoch in range(epochs):
        order = torch.randperm(len(tgt), generator=gen)
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            b = order[start:start + cfg.batch_size]
            w = torch.as_tensor(events.windows(b.numpy()), device=dev)
            b = b.to(dev)
            # centred on the items trained on: no gradient reaches an item without training events, whose own
            # tokens stay as they were (ranking centres on the whole catalogue; the two differ by those items)
            unit = cat.unit_vectors(table, alternatives)
            y = tgt[b]
            query = F.normalize((unit[w] * recency[None, :, None]).sum(1), dim=1)
            logits = log_scale.exp() * (query @ unit.T)
            # items with text and events, not the user's earlier items (ranking excludes them; target stays)
            hide = (~alternatives).expand_as(logits).clone()
            hide.scatter_(1, w, True)
            hide[torch.arange(len(y), device=dev), y] = False
            loss = F.cross_entropy(logits.masked_fill(hide, float("-inf")), y, reduction="sum")
            opt.zero_grad(set_to_none=True)
            (loss / len(y)).backward()
            opt.step()
            total += loss.item()
        losses.append(total / max(1, len(tgt)))
        record = {"epoch": float(epoch + 1), "loss": losses[-1]}
        if held_back is not None:
            with torch.no_grad():
                now = cat.unit_vectors(table).cpu().numpy()
                value = text_ranking_ndcg(now, held_back[0], held_back[1], half_life=cfg.half_life)
            scores.append(value)
            record["held_back_ndcg@10"] = value
            if value > best_value:
                best, best_value, bad = table.detach().clone(), value, 0
            else:
                bad += 1
        if on_epoch is not None:
            on_epoch(record)
        if held_back is not None and cfg.patience and bad >= cfg.patience:
            break
    final = best if held_back is not None else table.detach()
    return final.cpu().numpy() * unit_scale, losses, scores


def finetune_static_encoder(train: Dataset | Split, output: str | Path, *,
                            base: str = "tokenlearn-static-model", config: StaticFinetuneConfig | None = None,
                            device: str = "auto",
                            on_epoch: Callable[[dict[str, float]], None] | None = None,
                            check: bool = True, store: Any = None) -> StaticFinetuneResult:
    """Train a static encoder's token vectors through the text-only recommender on ``train``'s sequences.

    Parameters
    ----------
    train:
        A split's training dataset (or the split: its ``train`` part is used; validation/test never are).
    output:
        The folder to write the fine-tuned model to (created; must not already hold a model).
    base:
        The static model to start from (name or folder; a transformer is refused: use
        :func:`lmrec.text.finetune_encoder`).
    config:
        See :class:`StaticFinetuneConfig`.
    device:
        ``"auto"`` (a GPU when there is one) or a torch device.
    on_epoch:
        Called after each epoch with ``{"epoch", "loss"}`` (and ``"held_back_ndcg@10"`` while the number of
        epochs is chosen).
    check:
        When ``train`` is a :class:`~lmrec.data.splits.Split`, report the validation NDCG@10 of the text-only
        recommender with the base and the saved model (never used to decide anything).
    store:
        Embedding cache for the check's item vectors (``None``: lmrec's default cache).
    """
    import torch

    cfg = config or StaticFinetuneConfig()
    output = new_model_folder(output)
    ds = train.train if isinstance(train, Split) else train
    enc = get_encoder(base)
    if not isinstance(enc, StaticEncoder):
        raise ValueError(f"{base!r} is not a static (Model2Vec) model; fine-tune a transformer with "
                         "finetune_encoder (lmrec embed finetune --method contrastive)")
    t0 = time.perf_counter()
    dev = resolve_device(device)
    torch.manual_seed(cfg.seed)
    template = ItemTemplate.parse(cfg.template)
    items = ds.items.sort("item_idx")
    cat = _Catalogue(enc, template.render(items), items["item_idx"].to_numpy(), ds.item_map.size,
                     template.max_tokens, dev)
    if len(cat.tokens) == 0:
        raise ValueError(f"{ds.name}: no item has text for {enc.name} to encode; nothing to fine-tune")
    events = _NextEvents(ds, cfg.history)
    if len(events) == 0:
        raise ValueError(f"{ds.name}: no user has two training events; nothing to learn from")
    held: list[float] = []
    epochs = cfg.epochs
    if cfg.patience:
        # choose the epochs on each user's last training event, trained on the events before it
        inner = leave_one_out(ds, min_events=3)
        if len(inner.test) == 0:
            raise ValueError(f"{ds.name}: no user has 3 training events to hold one back; use patience=0")
        _, _, held = _train(cat, _NextEvents(inner.train_valid, cfg.history),
                            inner.train_valid.item_popularity > 0, cfg, cfg.epochs,
                            (inner.test.history, inner.test.targets), on_epoch)
        epochs = int(np.argmax(held)) + 1
    vectors, losses, _ = _train(cat, events, ds.item_popularity > 0, cfg, epochs, None, on_epoch)
    output.mkdir(parents=True, exist_ok=True)
    enc.save_with_token_vectors(output, cat.tokens, vectors)
    revision = stamp_revision(output)
    name = f"{enc.name}-rec-{ds.name}-{revision[3:11]}"
    validation = None
    if isinstance(train, Split) and check:
        validation = {"base": held_out_check(enc, train, store),
                      "fine-tuned": held_out_check(get_encoder(str(output)), train, store),
                      "users": float(len(train.valid))}
    publish_finetuned(output, revision=revision, name=name, base=enc, dataset=ds, config=cfg,
                      training="token vectors trained end to end through the text-only recommender "
                               "(ContentLM's rule, full softmax over the catalogue) on the training split's "
                               "next events only; epochs chosen on each user's last training event",
                      validation=validation, n_events=len(events), tokens_trained=int(len(cat.tokens)),
                      epochs=epochs, **{"held_back_ndcg@10": held})
    return StaticFinetuneResult(output, name, revision, len(events), time.perf_counter() - t0, epochs,
                                losses, held, cfg, validation)


__all__ = ["StaticFinetuneConfig", "StaticFinetuneResult", "finetune_static_encoder"]
