"""The retrieve-and-rank pipeline: no label or feature from the test period, negatives, ablation,
explanations, and the CLI folder round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.data.dataset import Dataset
from lmrec.data.ragged import Ragged
from lmrec.data.splits import leave_one_out
from lmrec.data.synthetic_ecommerce import generate_ecommerce
from lmrec.models import create_model, load_model
from lmrec.models.capabilities import RankingReasons
from lmrec.models.pipeline.model import Pipeline, held_out_labels
from lmrec.models.pipeline.ranker import LIGHTGBM_GRID, grid_points
from lmrec.models.pipeline.retrievers import CategoryIndex, top_candidates
from lmrec.serving.explain import _ranked_up

#: Small and deterministic: no SeqRec (its training is the slow part), no text encoder.
FAST = {"retrievers": "itemknn,ease,popular,trending,categories", "text": "off", "candidates": 20,
        "ranker_params": {"num_boost_round": 40, "min_data_in_leaf": 5}}
N_LEAK = 8


def _shop_with_test_period(leak: bool) -> Dataset:
    """A small synthetic shop whose catalogue also holds ``leak-*`` items. With ``leak``, every user's last
    event (the leave-one-out test period) is moved onto a leak item, which occurs nowhere else: a model that
    read the test period would see them (popularity, co-occurrence, labels). Without, the events are as
    generated. Everything before each user's last event is the same in both."""
    shop = generate_ecommerce(n_users=150, n_items=60, days=60, seed=3)
    ev = shop.events.sort(["user_id", "timestamp"], maintain_order=True)
    items = pl.concat([shop.items, pl.DataFrame({"item_id": [f"leak-{k}" for k in range(N_LEAK)]})],
                      how="diagonal_relaxed")
    if leak:
        is_last = pl.int_range(pl.len()).over("user_id") == pl.len().over("user_id") - 1
        leak_id = pl.lit("leak-") + (pl.col("user_id").hash(seed=1) % N_LEAK).cast(pl.String)
        ev = ev.with_columns(pl.when(is_last & (pl.len().over("user_id") >= 3)).then(leak_id)
                             .otherwise(pl.col("item_id")).alias("item_id"))
    return Dataset.build(ev, items, shop.users, name="leak" if leak else "shop")


@pytest.fixture(scope="module")
def splits():
    return leave_one_out(_shop_with_test_period(False)), leave_one_out(_shop_with_test_period(True))


@pytest.mark.parametrize("with_valid", [True, False])
def test_no_label_or_feature_reads_the_test_period(splits, with_valid: bool) -> None:
    plain, leaked = splits
    assert plain.train.item_map.raw_ids == leaked.train.item_map.raw_ids
    leak_idx = leaked.train.item_map.indices([f"leak-{k}" for k in range(N_LEAK)])
    assert set(leak_idx.tolist()) <= set(leaked.test.targets.values.tolist()), "the test period is detectable"
    fitted = []
    for sp in (plain, leaked):
        m = create_model("pipeline", **FAST)
        m.fit(sp.train, sp.valid if with_valid else None)
        fitted.append(m)
    a, b = fitted
    # what the ranker learned from (features and labels) and what it serves are identical whatever the test
    # period holds
    np.testing.assert_array_equal(a._train["x"], b._train["x"])
    np.testing.assert_array_equal(a._train["y"], b._train["y"])
    hist, users = leaked.test.history, leaked.test.users
    np.testing.assert_array_equal(a.score(hist, users), b.score(hist, users))
    # the leak items were never counted and never labelled
    assert np.all(b.side_.popularity[leak_idx] == 0) and np.all(np.isnan(b.side_.item_first[leak_idx]))
    assert a.search_["recall"] == b.search_["recall"]


def test_inner_labels_come_from_the_training_events_only(splits) -> None:
    _, leaked = splits
    train = leaked.train
    inner = leave_one_out(train)
    labels, extra = held_out_labels(train, inner.test, 3600.0)
    seen = set(zip(train.events["user_idx"].to_list(), train.events["item_idx"].to_list(), strict=True))
    pairs = {(int(u), int(i)) for u, t in zip(labels.users, labels.targets, strict=True) for i in t}
    assert pairs and pairs <= seen
    leak_idx = set(train.item_map.indices([f"leak-{k}" for k in range(N_LEAK)]).tolist())
    assert not leak_idx & set(labels.targets.values.tolist())


def test_negative_feedback_and_impressions_are_negatives() -> None:
    rows = []
    for u in range(3):
        for t, i in enumerate(["a", "b", "c", "d"]):
            rows.append((f"e{u}{t}", f"u{u}", i, 100 * t, "view", None))
    # u0: dislikes x, was shown y (impression) just before its last event; u1: its last event is a skip
    rows += [("n1", "u0", "x", 290, "dislike", None), ("n2", "u0", "y", 295, "impression", None),
             ("n3", "u0", "z", 10, "dislike", None),  # long before: not a negative of this label
             ("n4", "u1", "w", 400, "skip", None)]
    ev = pl.DataFrame(rows, schema=["event_id", "user_id", "item_id", "timestamp", "event_type", "value"],
                      orient="row")
    ds = Dataset.build(ev)
    inner = leave_one_out(ds)
    labels, extra = held_out_labels(ds, inner.test, window=60.0)
    by_user = {int(u): (set(t.tolist()), set(e.tolist()))
               for u, t, e in zip(labels.users, labels.targets, extra, strict=True)}
    idx = ds.item_map.index
    u0, u1, u2 = (ds.user_map.index(f"u{k}") for k in range(3))
    assert by_user[u0] == ({idx("d")}, {idx("x"), idx("y")})
    assert by_user[u1] == (set(), {idx("w")})  # a skip is never a positive
    assert by_user[u2] == ({idx("d")}, set())


def test_candidates_merge_lists_and_keep_each_retrievers_rank() -> None:
    z = np.array([[-np.inf, 3, 2, 1, 0], [-np.inf, 0, 1, 2, 3]], dtype=np.float32)
    hist = Ragged.from_lists([[1], []])
    cand, ok, ranks, tops = top_candidates({"a": z, "b": z[::-1].copy()}, hist, 2,
                                           extra=Ragged.from_lists([[1], []]))
    assert tops["a"].tolist() == [[2, 3], [4, 3]]  # seen item 1 is not proposed
    real = [sorted(c[o].tolist()) for c, o in zip(cand, ok, strict=True)]
    assert real == [[1, 2, 3, 4], [1, 2, 3, 4]]  # union, deduplicated, with the extra (hard negative) item
    pos = {int(c): j for j, c in enumerate(cand[1]) if ok[1, j]}
    assert ranks[0, 1, pos[4]] == 1 and ranks[0, 1, pos[1]] == 3  # outside its list: N + 1
    cats = CategoryIndex([[], ["x"], ["x", "y"], ["y"]])
    steps = cats.steps_since(Ragged.from_lists([[1, 3, 2]]))
    assert steps[0, cats.names.index("x")] == 0 and steps[0, cats.names.index("y")] == 1


def test_ablation_explanations_and_recall(splits) -> None:
    plain, _ = splits
    m = create_model("pipeline", **{**FAST, "features": "behaviour,side"}).fit(plain.train, plain.valid)
    assert isinstance(m, RankingReasons)
    rec = m.retriever_recall(plain.test)
    assert set(rec) == {*m.names_, "merged"}
    assert rec["merged"] >= max(v for k, v in rec.items() if k != "merged")
    behaviour = m.with_features("behaviour")
    assert all(m.feature_names_[c][1] == "behaviour" for c in behaviour.columns_)
    assert len(behaviour.columns_) < len(m.columns_)
    users = plain.test.users[:5]
    top, _ = m.recommend_indices(plain.test.history.take(np.arange(5)), users, k=1)
    reasons = m.ranking_reasons(plain.test.history.take(np.arange(5)), users, top[:, 0])
    assert len(reasons) == 5 and any(reasons)
    for row in reasons:
        assert all(v > 0 for _, v in row) and [v for _, v in row] == sorted((v for _, v in row), reverse=True)
    words = _ranked_up([("categories", 0.3), ("itemknn", 0.1)], [], ["Label Makers"], {"Label Makers"})
    assert words == ("; ranked up because: recent interest in Label Makers, chosen by people with histories "
                     "like yours")


def test_cli_trains_a_pipeline_folder_that_recommend_and_evaluate_use(tmp_path: Path) -> None:
    from tests.models.conftest import checkerboard

    data = checkerboard().save(tmp_path / "board")
    out = tmp_path / "pipe"
    runner = CliRunner()
    r = runner.invoke(app, ["train", "pipeline", "--retrievers", "itemknn,popular,categories", "--dataset",
                            str(data), "--out", str(out), "--set", "text=off", "--set", "candidates=10"])
    assert r.exit_code == 0, r.output
    info = json.loads((out / "training.json").read_text())
    assert info["blend"]["retrievers"] == ["itemknn", "popular", "categories"]
    assert set(info["blend"]["recall"]) == {"itemknn", "popular", "categories", "merged"}
    model = load_model(out)
    assert isinstance(model, Pipeline) and model.names_ == ["itemknn", "popular", "categories"]
    r = runner.invoke(app, ["recommend", str(out), "--k", "3", "--out", str(tmp_path / "recs.tsv")])
    assert r.exit_code == 0, r.output
    assert len((tmp_path / "recs.tsv").read_text().splitlines()) == 50
    r = runner.invoke(app, ["evaluate", "most-popular", "--dataset", str(data), "--k", "10", "--model-dir",
                            str(out), "--out", str(tmp_path / "report")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "report" / "results.json").read_text())
    assert set(res["models"]) == {"most-popular", "pipe"}  # the folder, by its name


def test_multitask_heads_become_features(tmp_path: Path) -> None:
    from lmrec.models import model_class

    ds = generate_ecommerce(n_users=120, n_items=40, days=90, seed=2).dataset()
    sp = leave_one_out(ds)
    fast = {**model_class("multitask").fast_config, "item_repr": "id", "epochs": 2}
    m = create_model("pipeline", **{**FAST, "retrievers": "itemknn,multitask,popular", "multitask": fast})
    m.fit(sp.train, sp.valid)
    heads = [n for n, _ in m.feature_names_ if n.startswith("head:")]
    assert "head:next_purchase" in heads
    assert any(m.feature_names_[c][0] in heads for c in m.columns_), "the ranker reads them"
    assert m.side_.heads is not None and np.isnan(m.side_.heads[0]).all()
    assert np.isfinite(m.side_.heads[sp.test.users]).all()
    loaded = load_model(m.save(tmp_path / "pipe"))
    hist, users = sp.test.history.take(np.arange(10)), sp.test.users[:10]
    np.testing.assert_array_equal(loaded.score(hist, users), m.score(hist, users))


def test_grid_points_leave_out_the_settings_a_caller_fixed() -> None:
    grid = ({"num_leaves": 7, "min_data_in_leaf": 100}, {"num_leaves": 7, "min_data_in_leaf": 20},
            {"num_leaves": 31, "min_data_in_leaf": 100})
    assert grid_points(grid, {}) == list(grid)
    assert grid_points(grid, {"min_data_in_leaf": 5}) == [{"num_leaves": 7}, {"num_leaves": 31}]
    assert grid_points(grid, {"num_leaves": 3, "min_data_in_leaf": 5}) == [{}]
    assert LIGHTGBM_GRID[0] == {"num_leaves": 7, "min_data_in_leaf": 100, "lambda_l2": 10.0}, \
        "the most regularised point first: ties keep it"


def test_the_ranker_settings_are_selected_on_held_out_label_users_and_saved(splits, tmp_path: Path) -> None:
    plain, _ = splits
    fits = [create_model("pipeline", **FAST).fit(plain.train, plain.valid) for _ in range(2)]
    a, b = fits
    info = a.search_["ranker"]
    # FAST fixes min_data_in_leaf: the grid's other settings are searched, each point scored on held-out users
    expected = grid_points(LIGHTGBM_GRID, FAST["ranker_params"])
    assert [g["params"] for g in info["grid"]] == expected and len(expected) > 1
    assert info["heldout_groups"] > 0 and all(g["heldout_ndcg10"] is not None for g in info["grid"])
    scores = [g["heldout_ndcg10"] for g in info["grid"]]
    assert info["params"] == info["grid"][int(np.argmax(scores))]["params"], "the best, the first of ties"
    assert b.search_["ranker"] == info, "the selection is deterministic"
    hist, users = plain.test.history, plain.test.users
    np.testing.assert_array_equal(a.score(hist, users), b.score(hist, users))
    # the chosen settings travel with the model folder, and the reloaded ranker is the chosen one
    loaded = load_model(a.save(tmp_path / "pipe"))
    assert loaded.search_["ranker"]["params"] == info["params"]
    saved = json.loads((tmp_path / "pipe" / "pipeline.json").read_text())["search"]["ranker"]
    assert saved["params"] == info["params"] and saved["grid"] == info["grid"]
    text = (tmp_path / "pipe" / "ranker.txt").read_text()
    assert f"[num_leaves: {info['params']['num_leaves']}]" in text
    np.testing.assert_array_equal(loaded.score(hist, users), a.score(hist, users))
    # the ablation keeps the selected settings; without search one ranker with the defaults is fitted
    assert a.with_features("behaviour").search_["ranker"]["params"] == info["params"]
    plain_fit = create_model("pipeline", **{**FAST, "ranker_search": False}).fit(plain.train, plain.valid)
    assert plain_fit.search_["ranker"]["grid"] == [] and plain_fit.search_["ranker"]["params"] == {}


def test_served_top_lists_match_the_scores_of_every_item(splits) -> None:
    """The request path's shortcuts (popular and trending from one cached row and order, the category
    profile computed once) give the order that ranking every item's score gives."""
    plain, _ = splits
    m = create_model("pipeline", **FAST).fit(plain.train, plain.valid)
    hist, users = plain.test.history, plain.test.users
    scores = m.score(hist, users)
    rng = np.random.default_rng(0)
    allowed = rng.random(m.n_items + 1) < 0.5
    for r in range(0, len(users), 7):
        idx, _ = m.recommend_indices(hist.take([r]), users[[r]], k=10)
        row = scores[r].copy()
        row[hist[r]] = -np.inf
        order = np.lexsort((np.arange(len(row)), -row))[:10]
        assert idx[0].tolist() == order.tolist()
        # filters: the candidates-only ranking of a request (or its fall-back to every item when too few
        # candidates pass) gives what masking every item's score gives
        banned = order[:3]
        for k in (10, 400):
            idx, sc = m.recommend_indices(hist.take([r]), users[[r]], k=k, item_mask=allowed,
                                          exclude=Ragged.from_lists([banned.tolist()]))
            row_f = row.copy()
            row_f[~allowed] = -np.inf
            row_f[banned] = -np.inf
            want = np.lexsort((np.arange(len(row_f)), -row_f))[:k]
            want = want[np.isfinite(row_f[want])]
            assert idx[0].tolist() == [*want.tolist(), *[0] * (k - len(want))]  # padded when too few
            assert np.allclose(sc[0][: len(want)], row_f[want])
    # several rows at once (a request path with more than one row) give each row's own list
    rows = np.arange(0, min(len(users), 12))
    idx, _ = m.recommend_indices(hist.take(rows), users[rows], k=10)
    for j, r in enumerate(rows.tolist()):
        row = scores[r].copy()
        row[hist[r]] = -np.inf
        assert idx[j].tolist() == np.lexsort((np.arange(len(row)), -row))[:10].tolist()
    top = {n: m._static_row(n)[2] for n in ("popular", "trending")}
    for name, order in top.items():
        z = m._normalised(m._retriever_scores(hist.take([0]), users[:1]))[name][0].copy()
        z[0] = -np.inf
        z[hist[0]] = -np.inf
        k = min(FAST["candidates"], int(np.isfinite(z).sum()))
        expected = np.lexsort((np.arange(len(z)), -z))[:k]
        assert order[~np.isin(order, hist[0])][:k].tolist() == expected.tolist()
