"""Auto, the validation-fitted blend: weights from validation only, components that cannot score, save/load,
``lmrec train`` without a model name; and SeqRec's data-derived ``max_len``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.data.dataset import Dataset
from lmrec.data.splits import Split, leave_one_out
from lmrec.models import create_model, load_model
from lmrec.models.auto import Auto, normalise_rows, simplex_grid, text_is_informative
from lmrec.models.seqrec.model import auto_max_len

TINY_SEQREC = {"d_model": 16, "n_layers": 1, "max_len": 8, "epochs": 3, "batch_size": 16, "lr": 3e-3,
               "text_reduced_dim": 8, "adapter_hidden": 32, "dropout": 0.1, "patience": 0}


def _auto(**kw) -> Auto:
    return create_model("auto", seqrec=TINY_SEQREC, weight_step=0.25, **kw)  # type: ignore[return-value]


class _Untouchable:
    """Stands for the test set: its size may be reported, any other use (users, histories, targets) fails."""

    def __init__(self, n: int) -> None:
        self._n = n

    def __getattr__(self, name: str):
        raise AssertionError(f"the test set was read while fitting ({name})")

    def __len__(self) -> int:
        return self._n


def test_weights_are_fitted_on_validation_only(board: Dataset, board_vectors: np.ndarray,
                                               monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import lmrec.experiment.runs as runs
    from lmrec.experiment import build_config

    real = leave_one_out(board)
    guarded = Split(real.protocol, real.train, real.train_valid, real.valid, _Untouchable(len(real.test)),  # type: ignore[arg-type]
                    real.params)
    monkeypatch.setattr(runs, "make_split", lambda *a, **k: guarded)
    monkeypatch.setattr(runs, "load_data", lambda *a, **k: board)
    cfg = build_config(None, {"out": tmp_path / "m"}, [f"seqrec={json.dumps(TINY_SEQREC)}", "text=off",
                                                       "weight_step=0.25"], defaults={"model.name": "auto"})
    run = runs.train(cfg)
    model = run.model
    assert isinstance(model, Auto)
    s = model.search_
    assert s["valid_users"] == len(real.valid) and "validation set" in s["fitted_on"]
    assert abs(sum(model.weights_.values()) - 1) < 1e-6 and all(w > 0 for w in model.weights_.values())
    assert set(s["alone"]) == {"seqrec", "ease", "itemknn"}  # text off: no content-lm, SeqRec on ids
    # the chosen blend is (within the tie tolerance) at least as good on validation as each component alone
    assert s["valid_ndcg10"] >= max(s["alone"].values()) * (1 - model.config.tie_tolerance) - 1e-9


def test_a_component_that_cannot_score_does_not_break_the_blend() -> None:
    s = np.array([[-np.inf, 1.0, 2.0, -np.inf, 3.0],      # EASE on an item added after fitting: -inf
                  [-np.inf, 5.0, -1e9, 4.0, 6.0],        # SeqRec-id's untrained item: -1e9
                  [-np.inf, -np.inf, -np.inf, -np.inf, -np.inf]], dtype=np.float32)  # nothing at all
    z, has = normalise_rows(s)
    assert np.isfinite(z).all() and has.tolist() == [True, True, False]
    assert z[0, 3] == z[0, 1:].min() and z[1, 2] == z[1, 1:].min()  # missing → the row's lowest z-score
    np.testing.assert_allclose(z[0, [1, 2, 4]], [-1.2247449, 0.0, 1.2247449], rtol=1e-5)
    assert np.all(z[2] == 0)
    w = simplex_grid(3, 0.5)
    assert np.allclose(w.sum(axis=1), 1) and len(w) == 6


def test_normalise_rows_is_the_plain_z_score_formula_bit_for_bit() -> None:
    """The fast z-scores (fewer passes; every request runs them) equal the plain formula exactly."""

    def plain(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = np.array(scores, dtype=np.float32, copy=True)
        ok = np.isfinite(s) & (s > -1e8)
        ok[:, 0] = False
        n = ok.sum(axis=1)
        mean = np.where(ok, s, 0.0).sum(axis=1) / np.maximum(n, 1)
        var = (np.where(ok, s - mean[:, None], 0.0) ** 2).sum(axis=1) / np.maximum(n, 1)
        std = np.sqrt(var)
        std[std <= 1e-12] = 1.0
        z = np.where(ok, (s - mean[:, None]) / std[:, None], np.inf).astype(np.float32)
        low = z.min(axis=1)
        low[n == 0] = 0.0
        z = np.where(ok, z, low[:, None]).astype(np.float32)
        z[n == 0] = 0.0
        return z, n > 0

    rng = np.random.default_rng(0)
    for shape in [(1, 5_001), (40, 3_001), (3, 2)]:
        s = (rng.standard_normal(shape) * 37.0 + 5.0).astype(np.float32)
        s[:, 0] = -np.inf
        if shape[0] > 4:
            s[1] = 2.5  # constant row
            s[2, 1] = np.nan
            s[3] = -np.inf
            s[4, 2:] = -1e9
            s[5, 7] = np.inf
        want, want_has = plain(s)
        got, has = normalise_rows(s)
        assert got.dtype == np.float32 and np.array_equal(got, want) and np.array_equal(has, want_has)


def test_new_items_blend_without_poisoning(board: Dataset) -> None:
    """Without text every component scores a new item -inf (EASE, ItemKNN) or -1e9 (SeqRec-id): the blend
    still ranks every known item, and the new one after them with a finite score."""
    model = _auto(text="off").fit(board)
    before = model.score(board.sequences.take([1, 2]), np.array([1, 2]))
    idx = model.add_items(["brand-new"], [["even"]])
    after = model.score(board.sequences.take([1, 2]), np.array([1, 2]))
    assert after.shape[1] == before.shape[1] + 1
    assert np.isfinite(after[:, 1:]).all()
    assert np.all(after[:, idx[0]] <= after[:, 1:-1].min(axis=1))
    ids, _ = model.recommend("u1", k=5)
    assert "" not in set(ids) and "brand-new" not in set(ids)


def test_save_load_round_trip_gives_identical_scores(board: Dataset, board_vectors: np.ndarray,
                                                     tmp_path: Path) -> None:
    split = leave_one_out(board)
    model = _auto(text="on").fit(split.train, split.valid, item_vectors=board_vectors)
    assert "content-lm" in model.search_["alone"]
    model.save(tmp_path / "auto")
    assert (tmp_path / "auto" / "auto.json").exists()
    assert all((tmp_path / "auto" / "components" / n / "model.json").exists() for n in model.weights_)
    loaded = load_model(tmp_path / "auto")
    assert isinstance(loaded, Auto) and loaded.weights_ == model.weights_
    hist = board.sequences.take(np.arange(1, 10))
    np.testing.assert_array_equal(loaded.score(hist, np.arange(1, 10)), model.score(hist, np.arange(1, 10)))
    assert repr(loaded) == repr(model) and repr(model).startswith("Auto(")


def test_without_validation_it_holds_out_the_last_events(board: Dataset) -> None:
    model = _auto(text="off").fit(board)
    assert "held-out last event" in model.search_["fitted_on"]
    assert model.search_["valid_users"] == int((board.sequences.lengths >= 3).sum())


def test_text_rule() -> None:
    rng = np.random.default_rng(0)
    own = np.vstack([np.zeros(4), rng.standard_normal((10, 4))]).astype(np.float32)
    assert text_is_informative(own)
    shared = own.copy()
    shared[1:8] = shared[1]  # most items share one (empty) text
    assert not text_is_informative(shared)
    assert not text_is_informative(None)


def test_lmrec_train_without_a_model_name_trains_auto(board: Dataset, tmp_path: Path) -> None:
    data = board.save(tmp_path / "board")
    out = tmp_path / "m"
    r = CliRunner().invoke(app, ["train", "--dataset", str(data), "--out", str(out), "--set", "text=off",
                                 "--set", f"seqrec={json.dumps(TINY_SEQREC)}", "--set", "weight_step=0.5"])
    assert r.exit_code == 0, r.output
    info = json.loads((out / "training.json").read_text())
    assert info["model"] == "auto"
    assert abs(sum(info["blend"]["weights"].values()) - 1) < 1e-6 and "alone" in info["blend"]
    assert isinstance(load_model(out), Auto)


def test_data_derived_max_len() -> None:
    assert auto_max_len(np.array([0, 3, 5, 7, 9] * 20)) == 16  # p90 of 3..9 = 9 → a multiple of 8
    assert auto_max_len(np.array([1, 2, 2])) == 8  # at least 8
    assert auto_max_len(np.arange(1, 1000), cap=200) == 200  # at most the cap
    assert auto_max_len(np.array([0, 0])) == 8


def test_seqrec_resolves_auto_max_len_when_fitting(board: Dataset) -> None:
    cfg = {**TINY_SEQREC, "max_len": "auto", "item_repr": "id", "epochs": 1}
    model = create_model("seqrec", **cfg).fit(board)
    assert model.config.max_len == auto_max_len(board.sequences.lengths)
    with pytest.raises(ValueError, match="max_len"):
        create_model("seqrec", max_len="long")


def test_early_stopping_validates_on_a_sample_bounded_by_score_cells(board: Dataset, monkeypatch) -> None:
    import lmrec.models.auto as auto_module

    split = leave_one_out(board)
    n_valid, n_items = len(split.valid), split.train.n_items
    seen: list[int] = []
    real = auto_module.Auto._fit_one

    def spy(self, name, settings, data, valid):  # noqa: ANN001, ANN202
        if name == "seqrec":
            seen.append(len(valid))
        return real(self, name, settings, data, valid)

    monkeypatch.setattr(auto_module.Auto, "_fit_one", spy)
    monkeypatch.setattr(auto_module, "MIN_STOP_USERS", 3)
    # Enough cells for every validation user: SeqRec validates on all of them (as before the rule).
    full = _auto(text="off", components="seqrec,itemknn").fit(split.train, split.valid)
    assert seen[-1] == n_valid and full.search_["early_stopping_users"] == n_valid
    # Cells for 5 users' full rankings: a sample of 5; never fewer than the floor.
    small = _auto(text="off", components="seqrec,itemknn", valid_cells=5 * n_items)
    small.fit(split.train, split.valid)
    assert seen[-1] == 5 < n_valid and small.search_["early_stopping_users"] == 5
    _auto(text="off", components="seqrec,itemknn", valid_cells=1).fit(split.train, split.valid)
    assert seen[-1] == 3
    # The weights are still chosen on the validation users (up to valid_users), not on the sample.
    assert small.search_["valid_users"] == full.search_["valid_users"] == n_valid


@pytest.mark.parametrize("text", ["on", "off"])
def test_candidates_blend_every_kind_of_component_as_score_does(text: str, board: Dataset,
                                                                board_vectors: np.ndarray) -> None:
    """Candidates from SeqRec's and ContentLM's spaces (inner products), ItemKNN's sparse rows and EASE's
    full scores carry the blend's scores of them without scoring the catalogue per component, also for a
    new item that some components cannot rank (it takes the lowest z-score among the candidates)."""
    split = leave_one_out(board)
    vectors = board_vectors if text == "on" else None
    model = _auto(text=text, keep_all=True).fit(split.train, split.valid, item_vectors=vectors)
    names = ["seqrec", "ease", "itemknn"] + (["content-lm"] if text == "on" else [])
    model = model.with_weights({n: 1.0 / len(names) for n in names})
    spaces = model.retrieval_spaces()
    assert set(spaces) == ({"seqrec", "content-lm"} if text == "on" else {"seqrec"})

    def search(space: str, q: np.ndarray, n: int) -> np.ndarray:
        table, scorable = spaces[space]
        s = q @ (table * scorable[:, None]).T
        s[:, 0] = -np.inf
        return np.argsort(-s, axis=1, kind="stable")[:, :n]

    users = np.arange(1, 9)
    hist = board.sequences.take(users)
    full = model.score(hist, users)
    for (items, scores), row in zip(model.candidates(hist, users, model.n_items, search), full, strict=True):
        assert len(items) == model.n_items  # every item is someone's candidate here
        np.testing.assert_allclose(scores, row[items], rtol=1e-5, atol=1e-5)
    few = model.candidates(hist, users, 3, search)
    assert all(3 <= len(items) < model.n_items for items, _ in few)
    vec = None if vectors is None else board_vectors[[1]]
    new = model.add_items(["late"], [["even"]], vectors=vec)[0]
    spaces = model.retrieval_spaces()
    full = model.score(hist, users)
    for (items, scores), row in zip(model.candidates(hist, users, model.n_items, search), full, strict=True):
        assert new in items
        np.testing.assert_allclose(scores, row[items], rtol=1e-5, atol=1e-5)
