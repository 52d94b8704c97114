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
    res = finetune_encoder(split, tmp_path / "ft", config=cfg, progress=False, check=False)
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


def test_item_pairs_use_only_the_training_part(tiny):
    split = leave_one_out(tiny)
    texts = [""] + [TITLES[i] for i in tiny.item_map.raw_ids]
    queries, docs = training_pairs(split, item_texts=texts, max_pairs=100, kind="item")
    # The previous item's text -> the next item's text, inside each user's training events only:
    # u1 = a b c | d e, u2 = f g a | b c, u3 = g f e | d c (validation and test targets after the bar).
    assert set(zip(queries, docs, strict=True)) == {
        ("Alpha", "Bravo"), ("Bravo", "Charlie"), ("Foxtrot", "Golf"), ("Golf", "Alpha"),
        ("Golf", "Foxtrot"), ("Foxtrot", "Echo")}
    # u3's validation pair (Echo -> Delta) and every test pair (e.g. Delta -> Echo for u1) are absent.


def test_neighbour_pairs_join_items_that_share_training_users(tiny):
    split = leave_one_out(tiny)
    texts = [""] + [TITLES[i] for i in tiny.item_map.raw_ids]
    queries, docs = training_pairs(split, item_texts=texts, max_pairs=100, kind="neighbours", neighbours=1)
    # Training events: u1 = a b c, u2 = f g a, u3 = g f e. Cosine over those users: b's nearest is c (1.0
    # against a's 0.71), c's is b, f's is g (both users), g's is f; a (b, c at 0.71) and e (f, g at 0.71) tie.
    assert len(queries) == 9  # every training event anchors one pair
    nearest = dict(zip(queries, docs, strict=True))
    assert {q: nearest[q] for q in ("Bravo", "Charlie", "Foxtrot", "Golf")} == {
        "Bravo": "Charlie", "Charlie": "Bravo", "Foxtrot": "Golf", "Golf": "Foxtrot"}
    assert nearest["Alpha"] in {"Bravo", "Charlie"} and nearest["Echo"] in {"Foxtrot", "Golf"}
    # Delta is only ever a held-out event (u1's and u3's validation targets): on neither side of any pair
    assert "Delta" not in queries and "Delta" not in docs
    # with more neighbours the positive is drawn among them, reproducibly
    def wide() -> tuple[list[str], list[str]]:
        return training_pairs(split, item_texts=texts, max_pairs=100, kind="neighbours", neighbours=3, seed=4)

    assert wide() == wide()
    assert "Delta" not in wide()[1]


def test_unknown_pair_kind_is_refused(tiny):
    with pytest.raises(ValueError, match="pairs must be one of"):
        FinetuneConfig(pairs="users")
    with pytest.raises(ValueError, match="kind must be one of"):
        training_pairs(tiny, item_texts=[""] * 8, kind="users")
    with pytest.raises(ValueError, match="max_steps"):
        FinetuneConfig(max_steps=0)
    with pytest.raises(ValueError, match="neighbours"):
        FinetuneConfig(pairs="neighbours", neighbours=0)


def test_held_out_check_scores_like_content_lm(tiny):
    """The check's text recommender is ContentLM's rule: the same validation NDCG@10 for the same vectors."""
    from lmrec.evaluation.evaluator import evaluate
    from lmrec.models import create_model
    from lmrec.text.finetune import validation_ndcg

    split = leave_one_out(tiny)
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((tiny.item_map.size, 16)).astype(np.float32)
    vecs[0] = 0.0
    model = create_model("content-lm").fit(split.train, split.valid, item_vectors=vecs)
    expected = evaluate(model, split.valid, split.train, ks=(10,)).mean("NDCG@10")
    assert validation_ndcg(vecs, split) == pytest.approx(expected, abs=1e-6)
    # Vectors that put every validation target next to the user's last item score higher than random ones.
    aligned = vecs.copy()
    for h, t in zip(split.valid.history, split.valid.targets, strict=True):
        aligned[int(t[0])] = aligned[int(h[-1])] + 0.01 * aligned[int(t[0])]
    assert validation_ndcg(aligned, split) >= validation_ndcg(vecs, split)


@pytest.mark.slow
def test_finetune_reports_the_held_out_check_and_the_folder_trains_a_model(tiny, tmp_path, monkeypatch):
    """Item pairs, a step budget and the held-out check; then the folder is the encoder of `lmrec train`."""
    import json

    from typer.testing import CliRunner

    from lmrec.cli import app
    from lmrec.models import load_model

    monkeypatch.setenv("LMREC_CACHE_DIR", str(tmp_path / "cache"))
    split = leave_one_out(tiny)
    cfg = FinetuneConfig(pairs="item", max_steps=1, batch_size=4, max_length=16, learning_rate=1e-4)
    res = finetune_encoder(split, tmp_path / "ft", config=cfg, progress=False, device="cpu")
    assert res.validation is not None and res.validation["users"] == len(split.valid)
    assert 0.0 <= res.validation["base"] <= 1.0 and 0.0 <= res.validation["fine-tuned"] <= 1.0
    saved = json.loads((res.path / "lmrec_revision.json").read_text())
    assert saved["validation"] == res.validation and saved["config"]["pairs"] == "item"

    data = tmp_path / "tiny"
    tiny.save(data)
    out = tmp_path / "model"
    r = CliRunner().invoke(app, ["train", "content-lm", "--dataset", str(data), "--encoder", str(res.path),
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    model = load_model(out)
    assert model.text_space_.encoder == res.name and model.text_space_.revision == res.revision
    assert json.loads((out / "training.json").read_text())["encoder"] == str(res.path)
    # New items are encoded with the fine-tuned encoder, found again by its registered name.
    idx = model.add_items(["new"], texts=["Alpha"])
    assert np.linalg.norm(model.item_vectors_[idx[0]]) > 0
