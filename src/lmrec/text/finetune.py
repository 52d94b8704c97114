"""Fine-tune the sentence encoder on behaviour: what a user just bought (as text) should find the next item.

Each training pair is a query and the text of the item that came next. The query is either the user's
history text (``pairs="history"``: the titles of the last few items, newest first, on the query side) or
the full text of the item just before (``pairs="item"``: both sides are item documents, which is what an
item-vector recommender compares: ContentLM's cosine, SeqRec's text input). The loss is
MultipleNegativesRankingLoss, i.e. softmax cross-entropy of each query against every positive in the batch
(in-batch negatives), trained with sentence-transformers' own ``SentenceTransformerTrainer``. Batches never
hold the same text twice (``NO_DUPLICATES``), so a popular item is not its own negative.

Pairs are drawn **only from the training part** of a split: pass ``split.train`` (or the split itself); the
validation and test targets are never seen (:func:`training_pairs` takes every pair inside one user's
training events). Given a split, :func:`finetune_encoder` also reports a held-out check: the validation
NDCG@10 of a text-only recommender (the centred, recency-weighted history vector against every item's
vector) with the base and the fine-tuned model, so a fine-tune that does not help is seen before it is
used. The result is a new model folder with an ``lmrec_revision.json`` naming its revision, so the
embedding cache keeps its vectors apart from the base model's.

References
----------
Henderson et al., "Efficient Natural Language Response Suggestion for Smart Reply", 2017 (in-batch negatives).
Reimers & Gurevych, "Sentence-BERT", EMNLP 2019.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from lmrec.data.cooccurrence import item_similarity
from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.ranking import full_ranking_metrics
from lmrec.data.splits import Split
from lmrec.text.encoders import (
    REVISION_FILE,
    SentenceTransformerEncoder,
    TextEncoder,
    folder_revision,
    get_encoder,
    register_encoder,
)
from lmrec.text.templates import ItemTemplate
from lmrec.text.users import history_text, user_history_vectors
from lmrec.text.vectors import item_vectors


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of one fine-tuning run (small enough for MovieLens-100K on a laptop CPU in minutes).

    Attributes
    ----------
    max_pairs:
        Training pairs sampled (uniformly over all (user, position) pairs of the training sequences).
    pairs:
        ``"history"`` (history text → next item text), ``"item"`` (previous item's text → next item's
        text, both as documents) or ``"neighbours"`` (an item's text → the text of one of its ``neighbours``
        nearest items by co-occurrence in the training users' histories, ItemKNN's cosine, drawn in proportion
        to the similarity; both as documents).
    epochs:
        Passes over the pairs.
    max_steps:
        Stop after this many optimiser steps (``None``: ``epochs`` passes); the learning-rate schedule is
        fitted to the steps actually taken.
    batch_size:
        Pairs per batch; each query sees ``batch_size - 1`` in-batch negatives.
    learning_rate, warmup_ratio, weight_decay:
        AdamW settings, linear decay after warm-up.
    max_length:
        Tokens per text during training.
    history_last_n:
        Titles in a history text.
    neighbours:
        ``pairs="neighbours"``: the co-occurring items each item's positive is drawn from.
    scale:
        Inverse temperature of the in-batch softmax (cosine similarity times ``scale``).
    template:
        Item template (string form); ``None`` for the default.
    seed:
        Seeds the pair sample and the trainer.
    """

    max_pairs: int = 4000
    pairs: str = "history"
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 64
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 64
    history_last_n: int = 5
    neighbours: int = 10
    scale: float = 20.0
    template: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pairs not in PAIR_KINDS:
            raise ValueError(f"pairs must be one of {', '.join(PAIR_KINDS)}, got {self.pairs!r}")
        if self.neighbours < 1:
            raise ValueError(f"neighbours must be positive, got {self.neighbours}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {self.max_steps}")


#: What a training pair is: (the user's history text, the next item's text), (the previous item's text, the
#: next item's text), or (an item's text, a co-occurring item's text).
PAIR_KINDS = ("history", "item", "neighbours")


E = TypeVar("E")


@dataclass(frozen=True)
class FinetuneResult:
    """Where the fine-tuned encoder was written and what it took."""

    path: Path
    name: str
    revision: str
    n_pairs: int
    seconds: float
    train_loss: float | None
    config: FinetuneConfig
    #: The held-out check (given a split): validation NDCG@10 of the text-only recommender with the base and
    #: the fine-tuned model (``{"base": .., "fine-tuned": .., "users": ..}``); ``None`` without a split.
    validation: dict[str, float] | None = None

    def encoder(self, **options: Any) -> SentenceTransformerEncoder:
        """The fine-tuned model as an encoder (its revision keeps its cached vectors apart)."""
        return folder_encoder(self.path, SentenceTransformerEncoder, **options)


def folder_encoder(path: Path, kind: type[E], **options: Any) -> E:
    """The encoder of a fine-tuned model folder, which must be of ``kind``."""
    enc = get_encoder(str(path), **options)
    if not isinstance(enc, kind):
        raise TypeError(f"{path} holds a {type(enc).__name__}, not a {kind.__name__}")
    return enc


def training_pairs(train: Dataset | Split, *, item_texts: list[str], last_n: int = 5, max_pairs: int = 4000,
                   seed: int = 0, kind: str = "history", neighbours: int = 10) -> tuple[list[str], list[str]]:
    """``(queries, next-item texts)`` sampled from the training sequences.

    Only events of ``train`` are read: a pair is (something before position ``p`` in one user's training
    sequence, the item at ``p``), or for ``kind="neighbours"`` (the item at ``p``, an item that shares
    training users with it), so held-out events (a split's validation and test targets, which are not in
    ``split.train``) never appear on either side, nor count towards a co-occurrence.

    Parameters
    ----------
    train:
        The training dataset of a split (a :class:`~lmrec.data.splits.Split` means its ``train``).
    item_texts:
        Text per item index (entry 0, padding, unused).
    last_n:
        Titles per history text (``kind="history"``; the titles come from ``train.item_titles()``).
    max_pairs:
        How many pairs to sample without replacement; every pair when there are fewer.
    seed:
        Seeds the sample.
    kind:
        ``"history"``: the query is the history text; ``"item"``: the previous item's text;
        ``"neighbours"``: the pair is the item at ``p`` and one of its ``neighbours`` most co-occurring items
        (cosine over the training users, drawn with probability proportional to the similarity), so popular
        items anchor as many pairs as they have events.
    neighbours:
        ``kind="neighbours"``: how many co-occurring items a positive is drawn from.
    """
    if kind not in PAIR_KINDS:
        raise ValueError(f"kind must be one of {', '.join(PAIR_KINDS)}, got {kind!r}")
    ds = train.train if isinstance(train, Split) else train
    seqs = ds.sequences
    titles = ds.item_titles() if kind == "history" else None
    # Every position that has at least one item before it in its row is a candidate target; for neighbour
    # pairs every position is a candidate anchor.
    row_start = np.repeat(seqs.offsets[:-1], seqs.lengths)
    positions = np.arange(len(seqs.values))
    candidates = positions if kind == "neighbours" else np.flatnonzero(positions > row_start)
    rng = np.random.default_rng(seed)
    if len(candidates) > max_pairs:
        candidates = np.sort(rng.choice(candidates, size=max_pairs, replace=False))
    # row i of the transpose: item i's most co-occurring items
    sim = item_similarity(ds, neighbours).T.tocsr() if kind == "neighbours" else None
    queries, docs = [], []
    for p in candidates:
        item = int(seqs.values[p])
        if sim is not None:
            lo, hi = sim.indptr[item], sim.indptr[item + 1]
            if lo == hi:
                continue
            weights = sim.data[lo:hi]
            q = item_texts[item]
            d = item_texts[int(rng.choice(sim.indices[lo:hi], p=weights / weights.sum()))]
        else:
            q = (history_text(seqs.values[row_start[p]:p], titles, last_n=last_n) if titles is not None
                 else item_texts[int(seqs.values[p - 1])])
            d = item_texts[item]
        if q and d and q != d:
            queries.append(q)
            docs.append(d)
    return queries, docs


def validation_ndcg(item_vecs: np.ndarray, split: Split, k: int = 10, half_life: float = 3.0) -> float:
    """Validation NDCG@k of the text-only recommender on ``item_vecs``: the catalogue mean is removed, the
    vectors normalised, a user is the recency-weighted mean of their history's vectors (ContentLM's rule), and
    every item is ranked, the history excluded. The held-out check of :func:`finetune_encoder`."""
    v = np.asarray(item_vecs, dtype=np.float32).copy()
    has = np.linalg.norm(v, axis=1) > 0
    has[0] = False
    if has.any():
        v[has] -= v[has].mean(axis=0)
    v[~has] = 0.0
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    v = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
    return text_ranking_ndcg(v, split.valid.history, split.valid.targets, k=k, half_life=half_life)


def text_ranking_ndcg(unit: np.ndarray, histories: Ragged, targets: Any, k: int = 10,
                      half_life: float = 3.0) -> float:
    """NDCG@k of ContentLM's rule on (centred) unit item vectors: a user is the recency-weighted mean of their
    history's vectors, every item is ranked by cosine, the history excluded."""
    users = user_history_vectors(unit, histories, "recency", half_life=half_life)
    res = full_ranking_metrics(lambda rows: users[rows] @ unit.T, histories, targets, k=k)
    return res[f"ndcg@{k}"]


def finetune_encoder(train: Dataset | Split, output: str | Path, *, base: str | None = None,
                     config: FinetuneConfig | None = None, device: str = "auto",
                     progress: bool = True, on_log: Callable[[dict[str, float]], None] | None = None,
                     check: bool = True, store: Any = None) -> FinetuneResult:
    """Contrastively fine-tune a sentence encoder on (query → next item text) pairs of ``train``.

    Parameters
    ----------
    train:
        A split's training dataset (or the split: its ``train`` part is used; validation/test never are).
    output:
        The folder to write the fine-tuned model to (created; must not already hold a model).
    base:
        The model to start from (name or folder; ``None`` for the default MiniLM).
    config:
        See :class:`FinetuneConfig`.
    device:
        ``"auto"`` or a torch device.
    progress:
        Show the trainer's progress bar.
    on_log:
        Called with the trainer's log records (loss, learning rate...).
    check:
        When ``train`` is a :class:`~lmrec.data.splits.Split`, score its validation users with the text-only
        recommender before and after (:func:`validation_ndcg`, items encoded with the default template); the
        result's ``validation`` and the folder's ``lmrec_revision.json`` record it.
    store:
        Embedding cache for the check's item vectors (``None``: lmrec's default cache).

    Returns
    -------
    FinetuneResult
        The folder, the new encoder name and revision, the pair count, the time, the final training loss and
        the held-out check.
    """
    import torch
    from datasets import Dataset as HFDataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import TrainerCallback

    cfg = config or FinetuneConfig()
    output = new_model_folder(output)
    ds = train.train if isinstance(train, Split) else train
    t0 = time.perf_counter()
    base_enc = get_encoder(base, device=device, max_length=cfg.max_length)
    if not isinstance(base_enc, SentenceTransformerEncoder):
        raise ValueError(f"{base!r} is a static (Model2Vec) model, which has no transformer to fine-tune on "
                         "text pairs; train it through the recommender instead: finetune_static_encoder "
                         "(lmrec embed finetune --method recommender)")
    template = ItemTemplate.parse(cfg.template, max_tokens=cfg.max_length)
    texts = [""] + template.render(ds.items.sort("item_idx"), base_enc.tokenizer)
    queries, docs = training_pairs(ds, item_texts=texts, last_n=cfg.history_last_n, max_pairs=cfg.max_pairs,
                                   seed=cfg.seed, kind=cfg.pairs, neighbours=cfg.neighbours)
    if len(queries) < 2:
        raise ValueError(f"{ds.name}: fewer than 2 training pairs; in-batch negatives need more users/events")
    # Prompts are part of what the model learns: train with the texts the encoder will see at encode time.
    d_prompt = base_enc.prompt("document")
    # item and neighbour pairs: both sides are item texts, encoded as documents
    q_prompt = base_enc.prompt("query") if cfg.pairs == "history" else d_prompt
    pairs = HFDataset.from_dict({"anchor": [q_prompt + q for q in queries],
                                 "positive": [d_prompt + d for d in docs]})
    split = train if isinstance(train, Split) and check else None
    # The check encodes items as users will (the encoder's default options, not the training length), with
    # the base model and then with the saved folder.
    base_valid = held_out_check(get_encoder(base, device=device), split, store) if split is not None else None
    model = base_enc.load()
    model.max_seq_length = cfg.max_length
    torch.manual_seed(cfg.seed)

    class _Log(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
                   **kwargs: Any) -> None:
            if logs and on_log is not None:
                on_log(dict(logs))

    # transformers >= 5 reads a float warmup_steps as a ratio of the steps; older versions take warmup_ratio.
    import transformers

    warmup = ({"warmup_steps": cfg.warmup_ratio} if int(transformers.__version__.split(".")[0]) >= 5
              else {"warmup_ratio": cfg.warmup_ratio})
    with tempfile.TemporaryDirectory() as tmp:
        args = SentenceTransformerTrainingArguments(
            output_dir=tmp, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps or -1,
            per_device_train_batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, **warmup,
            batch_sampler=BatchSamplers.NO_DUPLICATES, seed=cfg.seed, data_seed=cfg.seed, save_strategy="no",
            logging_steps=max(1, (cfg.max_steps or len(queries) * cfg.epochs // cfg.batch_size) // 10),
            report_to="none",
            disable_tqdm=not progress, dataloader_num_workers=0,
            use_cpu=not str(model.device).startswith("cuda"),
        )
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs,
                                             loss=MultipleNegativesRankingLoss(model, scale=cfg.scale),
                                             callbacks=[_Log()])
        out = trainer.train()
    output.mkdir(parents=True, exist_ok=True)
    model.save(str(output))
    revision = stamp_revision(output)
    validation = None
    if split is not None and base_valid is not None:
        tuned = get_encoder(str(output), device=device)
        validation = {"base": base_valid, "fine-tuned": held_out_check(tuned, split, store),
                      "users": float(len(split.valid))}
    # Unique per run (two fine-tunes of one base on one dataset differ), and findable by get_encoder(name).
    name = f"{base_enc.name}-ft-{ds.name}-{revision[3:11]}"
    publish_finetuned(output, revision=revision, name=name, base=base_enc, dataset=ds, config=cfg,
                      training=f"MultipleNegativesRankingLoss on ({cfg.pairs} text -> next item text) pairs "
                               "from the training split only", validation=validation, n_pairs=len(queries))
    loss = getattr(out, "training_loss", None)
    return FinetuneResult(output, name, revision, len(queries), time.perf_counter() - t0,
                          float(loss) if loss is not None else None, cfg, validation)


def held_out_check(encoder: TextEncoder, split: Split, store: Any) -> float:
    """:func:`validation_ndcg` of ``encoder``'s item vectors (default template; cached in ``store``)."""
    return validation_ndcg(item_vectors(split.train, encoder=encoder, store=store, progress=False), split)


def new_model_folder(output: str | Path) -> Path:
    """``output`` as the folder a fine-tune writes its model to; refused when it already holds a model."""
    output = Path(output)
    if (output / "modules.json").exists() or (output / "config.json").exists():
        raise FileExistsError(f"{output} already holds a model; choose a new folder")
    return output


def stamp_revision(output: Path) -> str:
    """The saved model folder's revision, written at once: a held-out check then caches its item vectors
    under the revision that later runs read."""
    revision = "ft-" + folder_revision(output)
    (output / REVISION_FILE).write_text(json.dumps({"revision": revision}))
    return revision


def publish_finetuned(output: Path, *, revision: str, name: str, base: TextEncoder, dataset: Dataset,
                      config: Any, training: str, validation: dict[str, float] | None,
                      **details: Any) -> None:
    """Write a fine-tuned folder's record (revision, name, base, data, settings, how it was trained, the
    held-out check and ``details``) into :data:`REVISION_FILE`, and register the folder under ``name``."""
    meta = {"revision": revision, "name": name, "base": base.name, "base_revision": base.revision,
            "dataset": dataset.name, **details, "config": asdict(config),
            "created": datetime.now(UTC).isoformat(timespec="seconds"), "training": training,
            "validation": validation}
    (output / REVISION_FILE).write_text(json.dumps(meta, indent=2))
    register_encoder(name, output)
