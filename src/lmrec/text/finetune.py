"""Fine-tune the sentence encoder on behaviour: a user's recent items (as text) should retrieve the next item.

Each training pair is (history text, next item's text): the titles of a user's last few items, newest first,
and the item that came next. The loss is MultipleNegativesRankingLoss, i.e. softmax cross-entropy of each
query against every positive in the batch (in-batch negatives), trained with sentence-transformers' own
``SentenceTransformerTrainer``. Batches never hold the same text twice (``NO_DUPLICATES``), so a popular item
is not its own negative.

Pairs are drawn **only from the training part** of a split: pass ``split.train`` (or the split itself); the
validation and test targets are never seen. The result is a new model folder with an ``lmrec_revision.json``
naming its revision, so the embedding cache keeps its vectors apart from the base model's.

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
from typing import Any

import numpy as np

from lmrec.data.dataset import Dataset
from lmrec.data.splits import Split
from lmrec.text.encoders import (
    REVISION_FILE,
    SentenceTransformerEncoder,
    folder_revision,
    get_encoder,
    register_encoder,
)
from lmrec.text.templates import ItemTemplate
from lmrec.text.users import history_text


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of one fine-tuning run (small enough for MovieLens-100K on a laptop CPU in minutes).

    Attributes
    ----------
    max_pairs:
        Training pairs sampled (uniformly over all (user, position) pairs of the training sequences).
    epochs:
        Passes over the pairs.
    batch_size:
        Pairs per batch; each query sees ``batch_size - 1`` in-batch negatives.
    learning_rate, warmup_ratio, weight_decay:
        AdamW settings, linear decay after warm-up.
    max_length:
        Tokens per text during training.
    history_last_n:
        Titles in a history text.
    scale:
        Inverse temperature of the in-batch softmax (cosine similarity times ``scale``).
    template:
        Item template (string form); ``None`` for the default.
    seed:
        Seeds the pair sample and the trainer.
    """

    max_pairs: int = 4000
    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 64
    history_last_n: int = 5
    scale: float = 20.0
    template: str | None = None
    seed: int = 0


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

    def encoder(self, **options: Any) -> SentenceTransformerEncoder:
        """The fine-tuned model as an encoder (its revision keeps its cached vectors apart)."""
        enc = get_encoder(str(self.path), **options)
        assert isinstance(enc, SentenceTransformerEncoder)
        return enc


def training_pairs(train: Dataset | Split, *, item_texts: list[str], last_n: int = 5, max_pairs: int = 4000,
                   seed: int = 0) -> tuple[list[str], list[str]]:
    """``(history texts, next-item texts)`` sampled from the training sequences.

    Parameters
    ----------
    train:
        The training dataset of a split (a :class:`~lmrec.data.splits.Split` means its ``train``).
    item_texts:
        Text per item index (entry 0, padding, unused).
    last_n:
        Titles per history text (the item titles come from ``train.item_titles()``).
    max_pairs:
        How many pairs to sample without replacement; every pair when there are fewer.
    seed:
        Seeds the sample.
    """
    ds = train.train if isinstance(train, Split) else train
    seqs = ds.sequences
    titles = ds.item_titles()
    # Every position that has at least one item before it in its row is a candidate target.
    row_start = np.repeat(seqs.offsets[:-1], seqs.lengths)
    candidates = np.flatnonzero(np.arange(len(seqs.values)) > row_start)
    rng = np.random.default_rng(seed)
    if len(candidates) > max_pairs:
        candidates = np.sort(rng.choice(candidates, size=max_pairs, replace=False))
    queries, docs = [], []
    for p in candidates:
        q = history_text(seqs.values[row_start[p]:p], titles, last_n=last_n)
        d = item_texts[int(seqs.values[p])]
        if q and d:
            queries.append(q)
            docs.append(d)
    return queries, docs


def finetune_encoder(train: Dataset | Split, output: str | Path, *, base: str | None = None,
                     config: FinetuneConfig | None = None, device: str = "auto",
                     progress: bool = True, on_log: Callable[[dict[str, float]], None] | None = None
                     ) -> FinetuneResult:
    """Contrastively fine-tune a sentence encoder on (history text → next item text) pairs of ``train``.

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

    Returns
    -------
    FinetuneResult
        The folder, the new encoder name and revision, the pair count, the time and the final training loss.
    """
    import torch
    from datasets import Dataset as HFDataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import TrainerCallback

    cfg = config or FinetuneConfig()
    output = Path(output)
    if (output / "modules.json").exists() or (output / "config.json").exists():
        raise FileExistsError(f"{output} already holds a model; choose a new folder")
    ds = train.train if isinstance(train, Split) else train
    t0 = time.perf_counter()
    base_enc = get_encoder(base, device=device, max_length=cfg.max_length)
    assert isinstance(base_enc, SentenceTransformerEncoder)
    template = ItemTemplate.parse(cfg.template, max_tokens=cfg.max_length)
    texts = [""] + template.render(ds.items.sort("item_idx"), base_enc.tokenizer)
    queries, docs = training_pairs(ds, item_texts=texts, last_n=cfg.history_last_n, max_pairs=cfg.max_pairs,
                                   seed=cfg.seed)
    if len(queries) < 2:
        raise ValueError(f"{ds.name}: fewer than 2 training pairs; in-batch negatives need more users/events")
    # Prompts are part of what the model learns: train with the texts the encoder will see at encode time.
    q_prompt, d_prompt = base_enc.prompt("query"), base_enc.prompt("document")
    pairs = HFDataset.from_dict({"anchor": [q_prompt + q for q in queries],
                                 "positive": [d_prompt + d for d in docs]})
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
            output_dir=tmp, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, **warmup,
            batch_sampler=BatchSamplers.NO_DUPLICATES, seed=cfg.seed, data_seed=cfg.seed, save_strategy="no",
            logging_steps=max(1, len(queries) // cfg.batch_size // 10), report_to="none",
            disable_tqdm=not progress, dataloader_num_workers=0,
            use_cpu=not str(model.device).startswith("cuda"),
        )
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs,
                                             loss=MultipleNegativesRankingLoss(model, scale=cfg.scale),
                                             callbacks=[_Log()])
        out = trainer.train()
    output.mkdir(parents=True, exist_ok=True)
    model.save(str(output))
    revision = "ft-" + folder_revision(output)
    # Unique per run (two fine-tunes of one base on one dataset differ), and findable by get_encoder(name).
    name = f"{base_enc.name}-ft-{ds.name}-{revision[3:11]}"
    meta = {"revision": revision, "name": name, "base": base_enc.name, "base_revision": base_enc.revision,
            "dataset": ds.name, "n_pairs": len(queries), "config": asdict(cfg),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "training": "MultipleNegativesRankingLoss on (history text -> next item text) pairs from the "
                        "training split only"}
    (output / REVISION_FILE).write_text(json.dumps(meta, indent=2))
    register_encoder(name, output)
    loss = getattr(out, "training_loss", None)
    return FinetuneResult(output, name, revision, len(queries), time.perf_counter() - t0,
                          float(loss) if loss is not None else None, cfg)
