"""SeqRec with the library's defaults on the Amazon Office 2014 dev set: time to converge (its own early
stopping), epochs, the thread counts the trainer chose, and test NDCG@10 (leave-one-out, full ranking).

    python benchmarks/seqrec_defaults.py                         # as the machine is
    python benchmarks/seqrec_defaults.py --burners 2             # beside two CPU-burning processes

Prints one line; nothing is written to docs/benchmarks.md (the figures are quoted with their load average).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

OFFICE = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-office-2014"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--burners", type=int, default=0, help="CPU-burning processes to run beside the fit")
    args = ap.parse_args()

    from lmrec.data.loaders import load_dataset
    from lmrec.data.splits import leave_one_out
    from lmrec.evaluation import evaluate
    from lmrec.models import create_model

    ds, _ = load_dataset(OFFICE / "Office.inter.tsv", mapping={"user_id": "user_idx"},
                         items=OFFICE / "Office.items.jsonl")
    split = leave_one_out(ds)
    burners = [subprocess.Popen(["python3", "-c", "while True: pass"]) for _ in range(args.burners)]
    try:
        m = create_model("seqrec")  # the library's defaults
        t0, l0 = time.perf_counter(), os.getloadavg()[0]
        m.fit(split.train, split.valid)
        seconds = time.perf_counter() - t0
    finally:
        for b in burners:
            b.kill()
    r = m.train_result_
    ndcg = evaluate(m, split.test, split.train, (10,)).mean("NDCG@10")
    print(f"seqrec defaults on Office, {args.burners} burner(s): {seconds:.0f} s, {r.epochs_run} epochs "
          f"(best {r.best_epoch}, stopped by {r.stop_reason}), max_len {m.config.max_len}, steps per thread "
          f"count {r.threads}, load {l0:.1f} -> {os.getloadavg()[0]:.1f}, test NDCG@10 {ndcg:.4f}")


if __name__ == "__main__":
    main()
