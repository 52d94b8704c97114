"""lmrec's GPU paths, checked for real on a machine with CUDA (section ``gpu-check`` of docs/benchmarks.md).

On MovieLens-100K (leave-one-out, full ranking):

1. ``equivalence``: the same SeqRec fit (no dropout, fp32, 3 epochs, no weight average) on the CPU and on the
   GPU: per-epoch losses and validation NDCG@10 must agree (to rounding);
2. ``defaults_id`` / ``defaults_fused``: SeqRec with the library's defaults on the GPU (``device="auto"``
   picks CUDA; bf16 autocast): epochs, time, validation and test NDCG@10; the fused model is saved, loaded
   back and scored again (``save_load_fused``);
3. ``amp``: the same fits with and without bf16 autocast (``amp``), paired by seed;
4. ``multitask_cuda``: MultiTask trains on the GPU for 2 epochs.

    python benchmarks/gpu_check.py                       # all checks (needs CUDA), then the section
    python benchmarks/gpu_check.py --checks equivalence  # some of them
    python benchmarks/gpu_check.py --report              # only rewrite the section from the cache

``--vectors FILE.npy`` gives the fused model its item text vectors (``(items + 1, d)`` by item index of the
split's training set), for a GPU machine that cannot load the text encoder; otherwise lmrec encodes them
(cached). Each check appends a line to ``benchmarks/.cache/gpu_check.jsonl`` with the machine it ran on.
``torchrun --nproc_per_node=1 -m lmrec.experiment --data movielens-100k --out DIR --set device=cuda`` checks
the NCCL path (not run here).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_cached, machine, read_cached, write_section  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache" / "gpu_check.jsonl"
CHECKS = ("equivalence", "defaults", "amp", "multitask")
#: (item_repr, seed, amp) of the autocast comparison
AMP_RUNS = (("id", 0, False), ("id", 0, True), ("id", 1, False), ("id", 1, True),
            ("fused", 0, False), ("fused", 1, False), ("fused", 1, True))


class Checker:
    def __init__(self, vectors: Path | None) -> None:
        from lmrec.data.loaders import load_dataset
        from lmrec.data.splits import leave_one_out

        ds, _ = load_dataset("movielens-100k")
        self.split = leave_one_out(ds)
        self.vectors = None if vectors is None else np.load(vectors).astype(np.float32)
        self.machine = machine()

    def emit(self, check: str, **fields: object) -> None:
        row = {"check": check, "machine": self.machine,
               "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **fields}
        print(json.dumps(row), flush=True)
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        append_cached(CACHE, row)

    def fit(self, device: str, **settings: object):
        from lmrec.models import create_model

        m = create_model("seqrec", progress=False, device=device, **settings)
        extra = {}
        if settings.get("item_repr", "id") != "id" and self.vectors is not None:
            extra["item_vectors"] = self.vectors
        t = time.perf_counter()
        m.fit(self.split.train, self.split.valid, **extra)
        return m, m.train_result_, time.perf_counter() - t

    def test(self, model) -> float:
        from lmrec.evaluation import evaluate

        return float(evaluate(model, self.split.test, self.split.train, ks=(10,)).mean("NDCG@10"))

    def equivalence(self) -> None:
        same = {"epochs": 3, "patience": 0, "dropout": 0.0, "amp": False, "seed": 0, "ema_decay": 0.0}
        _, rc, sc = self.fit("cpu", **same)
        _, rg, sg = self.fit("cuda", **same)
        lc, lg = np.array(rc.losses), np.array(rg.losses)
        self.emit("equivalence", cpu_losses=lc.round(6).tolist(), gpu_losses=lg.round(6).tolist(),
                  max_rel_loss_diff=float(np.max(np.abs(lc - lg) / np.abs(lc))),
                  cpu_valid=[x["ndcg@10"] for x in rc.metrics], gpu_valid=[x["ndcg@10"] for x in rg.metrics],
                  cpu_s=round(sc, 1), gpu_s=round(sg, 1))

    def defaults(self) -> None:
        from lmrec.models import load_model

        for item_repr in ("id", "fused"):
            m, r, s = self.fit("auto", item_repr=item_repr)
            self.emit(f"defaults_{item_repr}", epochs=r.epochs_run, best=r.best_epoch,
                      valid=round(r.best_metric, 4), test=round(self.test(m), 4), fit_s=round(s, 1),
                      s_per_epoch=round(s / r.epochs_run, 3), id_init=m.config.id_init,
                      curve=[round(x["ndcg@10"], 4) for x in r.metrics])
            if item_repr == "fused":
                path = Path("/tmp") / "lmrec-gpu-check-model"
                m.save(path)
                a, b = self.test(m), self.test(load_model(path))
                self.emit("save_load_fused", ndcg_in_memory=round(a, 6), ndcg_loaded=round(b, 6),
                          same=bool(abs(a - b) < 1e-6))

    def amp(self) -> None:
        for item_repr, seed, amp in AMP_RUNS:
            m, r, s = self.fit("cuda", item_repr=item_repr, seed=seed, amp=amp)
            self.emit("amp", item_repr=item_repr, seed=seed, amp=amp, epochs=r.epochs_run, best=r.best_epoch,
                      valid=round(r.best_metric, 4), test=round(self.test(m), 4), fit_s=round(s, 1),
                      s_per_epoch=round(s / r.epochs_run, 3))

    def multitask(self) -> None:
        from lmrec.models import create_model

        m = create_model("multitask", progress=False, device="cuda", epochs=2)
        t = time.perf_counter()
        m.fit(self.split.train, self.split.valid)
        self.emit("multitask_cuda", epochs=2, fit_s=round(time.perf_counter() - t, 1),
                  test=round(self.test(m), 4))


def report(rows: list[dict]) -> str:
    """The section from the newest row of each check (and each amp run)."""
    last: dict[object, dict] = {}
    for r in rows:
        key = (r["check"], r.get("item_repr"), r.get("seed"), r.get("amp"))
        last[key] = r
    where = sorted({r["machine"] for r in last.values()})
    code = sorted({r["code"] for r in last.values() if "code" in r})
    lines = ["## GPU paths on a CUDA machine (MovieLens-100K)", "",
             f"Measured on: {'; '.join(where)}" + (f", code at commit {', '.join(code)}" if code else "")
             + ". MovieLens-100K, leave-one-out, full ranking; SeqRec with the "
             "library's defaults but for the settings named. These checks need CUDA, so CI (CPU only) does "
             "not run them.", ""]
    eq = last.get(("equivalence", None, None, None))
    if eq:
        same = "identical" if eq["cpu_valid"] == eq["gpu_valid"] else f"GPU: {eq['gpu_valid']}"
        lines.append(f"- **CPU and GPU train the same model**: the same fit (3 epochs, no dropout, fp32, no "
                     f"weight average) gives per-epoch losses {eq['cpu_losses']} on the CPU and "
                     f"{eq['gpu_losses']} on the GPU (largest relative difference "
                     f"{eq['max_rel_loss_diff']:.1e}), validation NDCG@10 "
                     f"{[round(v, 4) for v in eq['cpu_valid']]} on both ({same}); {eq['cpu_s']} s on the "
                     f"CPU, {eq['gpu_s']} s on the GPU.")
    for name in ("id", "fused"):
        d = last.get((f"defaults_{name}", None, None, None))
        if d:
            start = f"; id start {d['id_init']}" if "id_init" in d else ""
            lines.append(f"- **Defaults, {name} items, on the GPU** (bf16 autocast): {d['epochs']} epochs "
                         f"(best {d['best']}) in {d['fit_s']} s ({d['s_per_epoch']} s an epoch), validation "
                         f"NDCG@10 {d['valid']}, test {d['test']}{start}.")
    sl = last.get(("save_load_fused", None, None, None))
    if sl:
        lines.append(f"- **Saved on the GPU, loaded and scored again**: test NDCG@10 {sl['ndcg_in_memory']} "
                     f"in memory, {sl['ndcg_loaded']} loaded ({'the same' if sl['same'] else 'different'}).")
    mt = last.get(("multitask_cuda", None, None, None))
    if mt:
        lines.append(f"- **MultiTask on the GPU**: 2 epochs in {mt['fit_s']} s, test NDCG@10 {mt['test']} "
                     "(a path check, not a figure to compare).")
    amp = sorted((r for k, r in last.items() if k[0] == "amp"),
                 key=lambda r: (r["item_repr"], r["seed"], r["amp"]))
    if amp:
        lines += ["", "bf16 autocast (`amp`, the default on CUDA) against fp32, paired by seed:", "",
                  "| item_repr | seed | amp | epochs (best) | s | s/epoch | valid NDCG@10 | test NDCG@10 |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in amp:
            kind = "bf16" if r["amp"] else "fp32"
            lines.append(f"| {r['item_repr']} | {r['seed']} | {kind} | {r['epochs']} ({r['best']}) "
                         f"| {r['fit_s']} | {r['s_per_epoch']} | {r['valid']} | {r['test']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checks", nargs="*", default=list(CHECKS), choices=CHECKS)
    ap.add_argument("--vectors", type=Path, default=None, help="item text vectors (.npy) for the fused fits")
    ap.add_argument("--report", action="store_true", help="only rewrite the section from the cache")
    args = ap.parse_args()
    if not args.report:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("gpu_check needs CUDA; `--report` rewrites the section from earlier runs")
        checker = Checker(args.vectors)
        for check in args.checks:
            getattr(checker, check)()
    write_section("gpu-check", report(read_cached(CACHE)))


if __name__ == "__main__":
    main()
