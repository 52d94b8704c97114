"""SeqRec speed on MovieLens-100K: training time per epoch and one-user scoring latency at sequence lengths 50
and 200, and what int8 quantisation and ONNX Runtime change (latency and test NDCG@10).

Writes the ``seqrec-speed`` section of ``docs/benchmarks.md``.

    python benchmarks/seqrec_speed.py              # 2 training epochs per length, 200 latency calls
    python benchmarks/seqrec_speed.py --epochs 1 --calls 50 --no-write
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _latency(fn, calls: int) -> tuple[float, float]:
    """p50 and p99 in milliseconds of ``fn()`` after three warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2, help="training epochs timed per length")
    ap.add_argument("--calls", type=int, default=200, help="one-user scoring calls per measurement")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    import torch

    from lmrec.data.loaders import load_dataset
    from lmrec.data.ragged import window_bounds
    from lmrec.data.ranking import full_ranking_metrics
    from lmrec.data.splits import leave_one_out
    from lmrec.models import create_model, load_model
    from lmrec.models.seqrec.inference import export_forms, quantized, use_runtime

    torch.set_num_threads(args.threads)
    ds, _ = load_dataset("movielens-100k")
    split = leave_one_out(ds)
    test = split.test
    longest = int(np.argmax(test.history.lengths))  # a user with ≥ 200 events: the worst case per length
    rows = []
    for max_len in (50, 200):
        m = create_model(
            "seqrec",
            max_len=max_len,
            epochs=args.epochs,
            batch_size=64,
            lr=2e-3,
            progress=False,
            num_threads=args.threads,
            patience=0,
            seed=0,
        )
        m.fit(split.train)  # no validation: only the training loop is timed
        tr = m.train_result_
        assert tr is not None
        per_epoch = tr.seconds / tr.epochs_run
        one = test.history.take([longest])
        p50, p99 = _latency(lambda m=m, one=one: m.score(one), args.calls)

        def ndcg(score_rows) -> float:
            return full_ranking_metrics(score_rows, test.history, test.targets, k=10)["ndcg@10"]

        base = ndcg(lambda r, m=m: m.score(test.history.take(r)))
        q = quantized(m)
        q50, q99 = _latency(lambda q=q, one=one: q.score(one), args.calls)
        q_ndcg = ndcg(lambda r, q=q: q.score(test.history.take(r)))
        with tempfile.TemporaryDirectory() as tmp:
            export_forms(m, m.save(tmp), ["onnx"])
            o = use_runtime(load_model(tmp), tmp, "onnx")  # type: ignore[arg-type]
            o50, o99 = _latency(lambda o=o, one=one: o.score(one), args.calls)
            o_ndcg = ndcg(lambda r, o=o: o.score(test.history.take(r)))
        n_windows = len(window_bounds(split.train.sequences.lengths, max_len, m.config.windows)[0])
        rows.append((max_len, n_windows, per_epoch, p50, p99, base, q50, q99, q_ndcg, o50, o99, o_ndcg))
        print(rows[-1], flush=True)

    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    body = [
        "## SeqRec speed (MovieLens-100K, leave-one-out)",
        "",
        f"Training: id items, d=64, 2 layers, full softmax, batch 64, length-bucketed batches, "
        f"{args.epochs} epoch(s) timed, {args.threads} CPU thread; an epoch is one pass over the training "
        "windows (the default `windows=\"all\"`: every `max_len` window of each of the 943 histories). "
        "Latency: `score` of one user "
        f"with ≥ 200 events (worst case for the length), {args.calls} calls after warm-up, full catalogue "
        "(1,683 scores). int8 = dynamic quantisation of the Transformer's linear layers; ONNX = onnxruntime "
        "CPU. NDCG@10 is on the test split with the model trained for the timed epochs only (the point is "
        "the *change*, not the level). 1-minute load average at the end of the run: "
        f"{load:.1f} on {cores} cores"
        + (" (above the core count: other work competed)." if load > cores else "."),
        "",
        "| max_len | windows | s / epoch | p50 ms | p99 ms | NDCG@10 | int8 p50 ms | int8 p99 ms | "
        "int8 NDCG@10 | ONNX p50 ms | ONNX p99 ms | ONNX NDCG@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        body.append(
            f"| {r[0]} | {r[1]:,} | {r[2]:.1f} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.4f} | {r[6]:.2f} | "
            f"{r[7]:.2f} | {r[8]:.4f} ({(r[8] - r[5]) / max(r[5], 1e-9) * 100:+.1f} %) | {r[9]:.2f} | "
            f"{r[10]:.2f} | {r[11]:.4f} ({(r[11] - r[5]) / max(r[5], 1e-9) * 100:+.1f} %) |"
        )
    text = "\n".join(body)
    print(text)
    if not args.no_write:
        from _report import write_section

        write_section("seqrec-speed", text)


if __name__ == "__main__":
    main()
