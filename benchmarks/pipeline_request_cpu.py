"""CPU time of one pipeline recommendation, step by step, in process (no HTTP).

Loads a trained ``pipeline`` folder, draws ``--requests`` random histories of ``--length`` known items
(seeded; known users drawn among the first ``--users`` indices), and times each step of a request with
``time.process_time`` (CPU time: it hardly depends on what else the machine runs): each retriever's scores,
the z-scores, merging the candidates, the features, LightGBM, and the whole ``recommend_indices`` (top 10).
Torch runs on one thread, as ``lmrec serve`` sets it. Prints a table; writes nothing.

    python benchmarks/pipeline_request_cpu.py /tmp/pipe/serve10k/models/v1
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--length", type=int, default=30)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from lmrec.data.ragged import Ragged
    from lmrec.models import load_model
    from lmrec.models.pipeline import features as F
    from lmrec.models.pipeline.retrievers import top_candidates

    torch.set_num_threads(1)
    m: Any = load_model(args.model)
    rng = np.random.default_rng(args.seed)
    hists = [Ragged.from_lists([rng.integers(1, m.n_items + 1, args.length).tolist()])
             for _ in range(args.requests)]
    users = [np.array([int(u)]) for u in rng.integers(1, args.users, args.requests)]
    for h, u in zip(hists[:20], users, strict=False):  # warm-up
        m.recommend_indices(h, u, 10)
    spent: dict[str, float] = {}

    def timed(name: str, f: Callable[[], Any]) -> Any:
        t0 = time.process_time()
        out = f()
        spent[name] = spent.get(name, 0.0) + time.process_time() - t0
        return out

    n_cand = 0
    for h, u in zip(hists, users, strict=True):
        for name, r in m.retrievers_.items():
            timed(f"score: {name}", lambda r=r, h=h, u=u: r.score(h, u))
        prof = timed("category profile", lambda h=h: m._cat_index().profile(h))
        raw = timed("all retrievers' scores", lambda h=h, u=u, prof=prof: m._retriever_scores(h, u, prof))
        zs = timed("z-scores", lambda raw=raw: m._normalised(raw))
        orders = {n: m._static_row(n)[2] for n in raw if n in ("popular", "trending")}
        cand, ok, ranks, _ = timed("merge candidates", lambda zs=zs, h=h, orders=orders: top_candidates(
            zs, h, m.config.candidates, None, orders))
        x = timed("features", lambda raw=raw, zs=zs, ranks=ranks, cand=cand, h=h, u=u, prof=prof: F.build(
            m.names_, raw, zs, ranks, m.config.candidates, cand, h, u, m.side_.popularity, m.side_,
            m._cat_index(), None, prof))
        timed("LightGBM", lambda x=x, ok=ok: m.ranker_.predict(x[ok][:, m.columns_]))
        n_cand += int(ok.sum())
        timed("recommend_indices (whole request)", lambda h=h, u=u: m.recommend_indices(h, u, 10))
    print(f"{m!r}: {m.n_items:,} items, {n_cand / len(hists):.0f} candidates a request; CPU ms per request "
          f"(mean of {len(hists)}):")
    for name, secs in spent.items():
        print(f"  {name:36s} {secs * 1000 / len(hists):6.2f}")


if __name__ == "__main__":
    main()
