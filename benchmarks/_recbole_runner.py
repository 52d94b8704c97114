"""Train and test RecBole's SASRec on atomic files written by ``benchmarks/recbole_sasrec.py``.

Runs inside RecBole's own virtual environment (``benchmarks/.recbole-venv``; it never imports lmrec):

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 benchmarks/.recbole-venv/bin/python \
        benchmarks/_recbole_runner.py job.json

``job.json`` holds ``data_path`` (the folder that contains the ``Office`` folder), ``out`` (where the
result goes), ``threads``, ``topk``, ``budget_s`` (optional: stop after the epoch that spends it) and
``config`` (RecBole settings, merged over RecBole's own defaults). Writes ``out/result.json`` (epoch times,
validation scores, RecBole's own test result) and ``out/topk.npz`` (each test row's user token, target token
and top-``topk`` item tokens, history excluded) so the caller can re-score the rankings with its own metric
function.

RecBole's full ranking for sequential models does not remove the history (it ranks every item); lmrec's
evaluation does. ``MaskedSASRec`` is RecBole's SASRec unchanged except that ``full_sort_predict`` gives the
items of each row's whole history (the ``hist_list`` column of the atomic files) a score of −inf, so RecBole's
validation (its early stopping) and test rank exactly what lmrec's do.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.sequential_recommender import SASRec
from recbole.trainer import Trainer
from recbole.utils import init_logger, init_seed


class OutOfTime(Exception):
    """Raised after an epoch's validation (and checkpoint) once the time budget is spent."""


class MaskedSASRec(SASRec):
    """SASRec whose full ranking leaves out each row's history items (as lmrec's evaluation does)."""

    def full_sort_predict(self, interaction):
        scores = super().full_sort_predict(interaction)
        # hist_list is padded with 0, RecBole's padding item, which is never ranked anyway
        return scores.scatter(1, interaction["hist_list"].long(), float("-inf"))


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(job["threads"]))
    os.chdir(out)  # RecBole writes log/ and log_tensorboard/ into the working directory

    settings = {**job["config"], "data_path": job["data_path"], "checkpoint_dir": str(out / "saved")}
    config = Config(model=MaskedSASRec, dataset=job["dataset"], config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    torch.set_num_threads(int(job["threads"]))  # after RecBole's own set-up, which may change it
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = MaskedSASRec(config, train_data._dataset).to(config["device"])
    trainer = Trainer(config, model)

    train_s: list[float] = []
    valid_s: list[float] = []
    valid_scores: list[float] = []
    train_epoch, valid_epoch = trainer._train_epoch, trainer._valid_epoch

    def timed_train(*a, **kw):
        t = time.perf_counter()
        r = train_epoch(*a, **kw)
        train_s.append(time.perf_counter() - t)
        return r

    def timed_valid(*a, **kw):
        t = time.perf_counter()
        r = valid_epoch(*a, **kw)
        valid_s.append(time.perf_counter() - t)
        valid_scores.append(float(r[0]))
        print(f"recbole epoch {len(train_s)} train {train_s[-1]:.1f} s valid {valid_s[-1]:.1f} s "
              f"NDCG@10 {r[0]:.4f} load {os.getloadavg()[0]:.1f}", flush=True)
        return r

    budget = float(job.get("budget_s", 0))

    def check_budget(epoch_idx, valid_score):  # called by RecBole after the epoch's checkpoint is saved
        if budget > 0 and time.perf_counter() - t0 >= budget:
            raise OutOfTime

    trainer._train_epoch, trainer._valid_epoch = timed_train, timed_valid
    t0 = time.perf_counter()
    try:
        trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=check_budget)
        out_of_time = False
    except OutOfTime:
        out_of_time = True
    fit_seconds = time.perf_counter() - t0
    best_valid, best_valid_result = trainer.best_valid_score, trainer.best_valid_result
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)

    # the best weights are loaded now: export each test row's top-k (history removed) as tokens
    k = int(job["topk"])
    users, targets, tops = [], [], []
    model.eval()
    with torch.no_grad():
        for interaction, _, _, _ in test_data:
            interaction = interaction.to(config["device"])
            scores = model.full_sort_predict(interaction)
            scores[:, 0] = float("-inf")
            val, idx = torch.topk(scores, min(k, scores.shape[1] - 1), dim=1)
            tops.append(torch.where(torch.isinf(val), 0, idx).cpu().numpy())  # 0: no item (too few left)
            users.append(interaction[config["USER_ID_FIELD"]].cpu().numpy())
            targets.append(interaction[config["ITEM_ID_FIELD"]].cpu().numpy())
    top = np.concatenate(tops)
    top_tokens = dataset.id2token(config["ITEM_ID_FIELD"], top.ravel())
    top_tokens = np.where(top.ravel() == 0, "-1", top_tokens).astype(np.int64).reshape(top.shape)
    np.savez(out / "topk.npz",
             users=dataset.id2token(config["USER_ID_FIELD"], np.concatenate(users)).astype(np.int64),
             targets=dataset.id2token(config["ITEM_ID_FIELD"], np.concatenate(targets)).astype(np.int64),
             topk=top_tokens)
    best_epoch = int(np.argmax(valid_scores)) + 1 if valid_scores else 0
    result = {
        "fit_seconds": fit_seconds, "epochs_run": len(train_s), "best_epoch": best_epoch,
        "out_of_time": out_of_time, "budget_s": budget,
        "train_seconds": train_s, "valid_seconds": valid_s, "valid_ndcg10": valid_scores,
        "best_valid": float(best_valid),
        "best_valid_result": {k: float(v) for k, v in best_valid_result.items()},
        "test_result": {k: float(v) for k, v in test_result.items()},
        "n_params": int(sum(p.numel() for p in model.parameters())), "threads": torch.get_num_threads(),
        "train_rows": len(train_data._dataset), "valid_rows": len(valid_data._dataset),
        "test_rows": len(test_data._dataset), "recbole": __import__("recbole").__version__,
        "torch": torch.__version__,
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
