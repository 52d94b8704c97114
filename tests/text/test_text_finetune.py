"""Fine-tuning pairs come from the training split only; a fine-tuned encoder has its own revision and
cache space."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lmrec.data.dataset import Dataset
from lmrec.data.splits import leave_one_out
from lmrec.text.finetune import FinetuneConfig, finetune_encoder, training_pairs

TITLES = {"a": "Alpha", "b": "Bravo", "c": "Charlie", "d": "Delta", "e": "Echo", "f": "Foxtrot", "g": "Golf"}


@pytest.fixture
def tiny() -> Dataset:
    seqs = {"u1": "abcde", "u2": "fgabc", "u3": "gfedc"}
    rows = [{"event_id": f"{u}{t}", "user_id": u, "item_id": i, "timestamp": t, "event_type": "view"}
            for u, s in seqs.items() for t, i in enumerate(s)]
    items = pl.DataFrame({"item_id": list(TITLES), "title": list(TITLES.values())})
    return Dataset.build(pl.DataFrame(rows), items, name="tiny")


def test_pairs_use_only_the_training_part(tiny):
    split = leave_one_out(tiny)
    texts = [""] + [TITLES[i] for i in tiny.item_map.raw_ids]
    queries, docs = training_pairs(split, item_texts=texts, last_n=2, max_pairs=100)
    pairs = set(zip(queries, docs, strict=True))
    # Each user's last two events (validation and test targets) are not in training: u1 = a b c | d e,
    # u2 = f g a | b c, u3 = g f e | d c. Histories read newest first.
    assert pairs == {("Alpha", "Bravo"), ("Bravo; Alpha", "Charlie"),
                     ("Foxtrot", "Golf"), ("Golf; Foxtrot", "Alpha"),
                     ("Golf", "Foxtrot"), ("Foxtrot; Golf", "Echo")}
    assert len(queries) == 6


def test_pairs_are_subsampled_reproducibly(tiny):
    texts = [""] + [TITLES[i] for i in tiny.item_map.raw_ids]
    a = training_pairs(tiny, item_texts=texts, max_pairs=5, seed=1)
    b = training_pairs(tiny, item_texts=texts, max_pairs=5, seed=1)
    assert a == b and len(a[0]) == 5


@pytest.mark.slow
def test_finetuned_encoder_has_its_own_revision_and_cache(ml100k, tmp_path, minilm, monkeypatch):
    from lmrec.store import Store
    from lmrec.text import encode_cached, get_encoder

    monkeypatch.setenv("LMREC_CACHE_DIR", str(tmp_path / "cache"))  # the name registry goes here

    split = leave_one_out(ml100k)
    cfg = FinetuneConfig(max_pairs=32, batch_size=16, max_length=16, learning_rate=1e-4)
    res = finetune_encoder(split, tmp_path / "ft", config=cfg, progress=False)
    assert res.n_pairs == 32 and res.revision.startswith("ft-")
    assert (res.path / "lmrec_revision.json").exists()
    ft = res.encoder()
    assert ft.name == f"all-MiniLM-L6-v2-ft-movielens-100k-{res.revision[3:11]}"
    assert ft.revision == res.revision
    by_name = get_encoder(res.name)  # registered: found by name, as a checkpoint records it
    assert by_name.path == res.path.resolve() and by_name.revision == res.revision
    assert ft.revision != minilm.revision
    with Store(":memory:") as st:
        base_vecs, _ = encode_cached(["Toy Story (1995)", "Heat (1995)"], encoder=minilm, store=st)
        ft_vecs, stats = encode_cached(["Toy Story (1995)", "Heat (1995)"], encoder=ft, store=st)
        assert stats.n_encoded == 2  # not served from the base model's cache
    assert np.abs(base_vecs - ft_vecs).max() > 1e-4
    with pytest.raises(FileExistsError):
        finetune_encoder(split, res.path, config=cfg, progress=False)
