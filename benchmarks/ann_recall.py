"""ANN recall@10 against exact search, and query time, for the service's item index at catalogue scale.

Vectors are real-like, not uniform: a Gaussian mixture around ``--centres`` topic centres (unequal topic
sizes, unequal spreads) plus a shared offset direction, as sentence-embedding vectors have (they are
anisotropic: all share a large common component), then scaled to unit length. Queries are new draws from the
same mixture. The index is :class:`lmrec.serving.retrieval.VectorIndex` exactly as the service builds it
(FAISS HNSW, inner product, candidates re-scored exactly); the reference is exact inner-product search over
all items.

    python benchmarks/ann_recall.py                  # 1,000,000 items, d=128; writes docs/benchmarks.md
    python benchmarks/ann_recall.py --items 100000 --no-write
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def mixture(n: int, dim: int, centres: int, seed: int, rng_centres: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors from a clustered, anisotropic mixture (same centres for every call with one
    generator state; ``seed`` picks the draws)."""
    c = rng_centres
    state = c.bit_generator.state
    centre = c.normal(size=(centres, dim)).astype(np.float32)
    weight = c.pareto(1.5, centres) + 1.0  # a few large topics, many small ones
    spread = c.uniform(0.25, 0.6, centres).astype(np.float32)
    common = c.normal(size=dim).astype(np.float32)
    c.bit_generator.state = state  # every call sees the same centres
    rng = np.random.default_rng(seed)
    topic = rng.choice(centres, size=n, p=weight / weight.sum())
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # in chunks: bounded temporaries
        t = topic[start:start + 100_000]
        v = centre[t] + spread[t, None] * rng.standard_normal((len(t), dim), dtype=np.float32)
        v += 1.5 * common / np.linalg.norm(common) * np.sqrt(dim)  # the shared direction
        out[start:start + len(t)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def exact_topk(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k item indices (1-based, as the service numbers items) per query, in batches."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), 100):
        sc = queries[s:s + 100] @ items.T
        part = np.argpartition(-sc, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sc, part, axis=1), axis=1)
        out[s:s + 100] = np.take_along_axis(part, order, axis=1) + 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--centres", type=int, default=3000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--timed-queries", type=int, default=200, help="Single queries timed (exact and ANN).")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-search", type=int, default=128)
    ap.add_argument("--candidates", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    from lmrec.serving.retrieval import VectorIndex

    load_before = os.getloadavg()[0]
    centres_rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    items = mixture(args.items, args.dim, args.centres, args.seed + 1, centres_rng)
    queries = mixture(args.queries, args.dim, args.centres, args.seed + 2, centres_rng)
    print(f"vectors: {time.perf_counter() - t0:.0f}s", flush=True)

    t0 = time.perf_counter()
    truth = exact_topk(items, queries, args.k)
    print(f"exact ground truth: {time.perf_counter() - t0:.0f}s", flush=True)

    padded = np.vstack([np.zeros((1, args.dim), np.float32), items])
    del items
    t0 = time.perf_counter()
    index = VectorIndex(padded, threshold=0, candidates=args.candidates, hnsw_m=args.hnsw_m,
                        ef_search=args.ef_search)
    build_s = time.perf_counter() - t0
    print(f"HNSW build: {build_s:.0f}s", flush=True)
    del padded

    found, _ = index.search(queries, args.k)
    recall = float(np.mean([len(set(f) & set(t)) / args.k for f, t in zip(found, truth, strict=True)]))

    n_t = min(args.timed_queries, len(queries))
    ann_ms, exact_ms = [], []
    for q in queries[:n_t]:
        t = time.perf_counter()
        index.search(q, args.k)
        ann_ms.append((time.perf_counter() - t) * 1000)
    for q in queries[: max(20, n_t // 10)]:
        t = time.perf_counter()
        index.search(q, args.k, exact=True)
        exact_ms.append((time.perf_counter() - t) * 1000)
    res = {"recall@10": recall, "ann_p50_ms": float(np.median(ann_ms)),
           "ann_p99_ms": float(np.percentile(ann_ms, 99)),
           "exact_p50_ms": float(np.median(exact_ms)), "build_s": build_s}
    print(res, flush=True)

    if not args.no_write:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from _report import write_section

        body = (f"## ANN retrieval (the service's item index)\n\n"
                f"{args.items:,} unit vectors, d={args.dim}: a Gaussian mixture around {args.centres:,} "
                "topic centres "
                f"(Pareto topic sizes, spreads 0.25-0.6) plus a shared direction (anisotropic, like sentence "
                f"vectors); {args.queries:,} queries drawn from the same mixture; seed {args.seed}. Index: "
                f"`lmrec.serving.retrieval.VectorIndex` (FAISS HNSW, M={args.hnsw_m}, "
                f"efSearch={args.ef_search}, "
                f"{args.candidates} candidates re-scored exactly), against exact inner-product search. "
                "Query times "
                f"are single queries (batch of 1, as the service asks).\n\n"
                "| recall@10 | ANN p50 ms | ANN p99 ms | exact p50 ms | speed-up | index build s |\n"
                "| ---: | ---: | ---: | ---: | ---: | ---: |\n"
                f"| {recall:.3f} | {res['ann_p50_ms']:.2f} | {res['ann_p99_ms']:.2f} | "
                f"{res['exact_p50_ms']:.1f} | "
                f"{res['exact_p50_ms'] / res['ann_p50_ms']:.0f}× | {build_s:.0f} |\n\n"
                "Goal: recall@10 ≥ 0.95. Times depend on the load: the 1-minute load average was "
                f"{load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end "
                f"({os.cpu_count()} cores).")
        print(f"wrote {write_section('ann', body)}")


if __name__ == "__main__":
    main()
