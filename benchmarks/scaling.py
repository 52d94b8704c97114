"""A scaling plan measured, not guessed: every stage at two to four sizes on this machine, a growth law
fitted to them, and what 100M events, 10M items and 10M users would need. Writes ``docs/scaling.md`` (the
whole page) and the ``scaling`` section of ``docs/benchmarks.md`` (the measurements).

Stages (each point runs in its own process, so its peak memory, ``ru_maxrss``, is its own):

* ``import``   lmrec's real import path (``benchmarks/import_events.py``: its generator and its import-only
               process), then ``Store.to_dataset()`` in a fresh process (what training and the batch jobs
               load first): rows/s, peak RSS, store bytes per event, dataset bytes per event.
* ``train``    SeqRec, one epoch capped by a time budget, sampled softmax with log-Q (``loss="sampled"``,
               256 shared negatives a batch) on a synthetic sequence set over catalogues of 100k, 300k and 1M
               items; id items, and fused (id + text) items with random unit vectors of the encoder's
               dimension (384) standing in for text vectors: seconds per step, peak RSS. Then batch scoring
               with the fitted model (``write_recommendations``, the ``lmrec recommend --users all`` path):
               users/s of top-10 over the whole catalogue, one process.
* ``encode``   item texts/s through the default encoder (MiniLM, lmrec's cache, a fresh store per run) for
               short and long texts at two batch sizes, then the same texts again (cache hits).
* ``index``    the service's ANN index (``lmrec.serving.retrieval.VectorIndex``, FAISS HNSW) on clustered
               vectors (``benchmarks/ann_recall.py``'s mixture) of d=64 (SeqRec's item vectors): build
               seconds, memory added, single-query latency, recall@10 against exact search.

Serving and replica throughput are cited from their own sections of docs/benchmarks.md, not re-measured.

    python benchmarks/scaling.py                  # measure what is not cached, then write both documents
    python benchmarks/scaling.py --report-only    # rewrite the documents from the cache
    python benchmarks/scaling.py --small --cache /tmp/s.jsonl --no-write    # a quick end-to-end check

Measurements are cached, one JSON line per point, in ``--cache``; a rerun skips points already there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _report import append_cached, machine, read_cached, write_section  # noqa: E402

GIB = 2**30
MIB = 2**20
SCALING_DOC = ROOT / "docs" / "scaling.md"

#: The full size the plan is for.
TARGET = {"events": 100_000_000, "items": 10_000_000, "users": 10_000_000}

#: Points measured per stage (``--small`` runs a tiny version of each, for a check of the script).
POINTS = {
    "import": [{"events": n} for n in (300_000, 1_000_000, 3_000_000, 10_000_000)],
    "train": [{"items": n, "repr": r} for r in ("id", "fused") for n in (100_000, 300_000, 1_000_000)],
    "encode": [{"length": ln, "batch": b} for ln in ("short", "long") for b in (32, 128)],
    "index": [{"vectors": n} for n in (30_000, 100_000, 300_000, 1_000_000)],
    "adamw": [{"items": n} for n in (100_000, 300_000, 1_000_000, 3_000_000)],
}
SMALL = {
    "import": [{"events": n} for n in (20_000, 60_000)],
    "train": [{"items": n, "repr": r} for r in ("id", "fused") for n in (2_000, 6_000)],
    "encode": [{"length": "short", "batch": 32}],
    "index": [{"vectors": n} for n in (3_000, 9_000)],
    "adamw": [{"items": n} for n in (2_000, 6_000)],
}

# Fixed settings of the measured runs.
# 10 events per user on average, as the plan's 100M events over 10M users
TRAIN_EVENTS_PER_USER, TRAIN_USERS, TRAIN_BUDGET_S = 10, 40_000, 60.0
TRAIN_SETTINGS = {"loss": "sampled", "n_negatives": 256, "max_len": 50, "d_model": 64, "n_layers": 2,
                  "batch_size": 128, "epochs": 1, "progress": False, "windows": "all", "patience": 0}
TEXT_DIM = 384  # all-MiniLM-L6-v2
SCORE_USERS = {100_000: 3000, 300_000: 1500, 1_000_000: 600}
ENCODE_TEXTS = {"short": 1000, "long": 300}
INDEX_DIM, INDEX_QUERIES, INDEX_TIMED = 64, 300, 200

#: Citations of sections measured by other scripts (their numbers, their dates): not re-measured here.
CITED = {
    "import_10m": {"events": 10_000_000, "seconds": 132.0, "peak_gib": 2.24, "store_mib": 219,
                   "when": "2026-11-23 14:53 UTC, Intel Xeon (2 cores), 5-minute load average 15.7 at its "
                           "end; another CPU, another load and an older import path than this run",
                   "command": "python benchmarks/import_events.py", "section": "import"},
    "ann_1m": {"vectors": 1_000_000, "dim": 128, "build_s": 627, "recall": 0.976, "p50_ms": 0.45,
               "when": "2026-11-23 15:20 UTC, Intel Xeon (2 cores)",
               "command": "python benchmarks/ann_recall.py", "section": "ann"},
    "serving": {"rate": 200, "recs_p99_ms": 10.5, "events_p99_ms": 19.1, "items": 100_000,
                "when": "2026-11-29 09:38 UTC", "section": "serving",
                "command": "python benchmarks/serve_load.py --workdir /tmp/wt19/bench --duration 60 "
                           "--warmup 5"},
    "replicas": {"rate_1": 200, "rate_2": 300, "rate_4": 300, "when": "2026-11-29 10:03 UTC",
                 "section": "replicas-postgresql", "command": "python benchmarks/replicas_load.py"},
}


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def rss_now() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def key_of(stage: str, point: dict) -> str:
    return stage + ":" + ",".join(f"{k}={point[k]}" for k in sorted(point))


# ====================================================================== the measured points (child process)
def point_import(p: dict, work: Path) -> dict:
    """Generate ``events`` (import_events' generator), import them in import_events' own import-only process,
    then load the store as a Dataset in another fresh process."""
    import import_events

    parquet, store = work / "events.parquet", work / "bench.duckdb"
    sizes = import_events.generate(parquet, p["events"], seed=0)
    done = subprocess.run([sys.executable, import_events.__file__, "--chunk-rows", "1000000", "--import-only",
                           str(parquet), str(store)], capture_output=True, text=True, check=True)
    res = json.loads(done.stdout.strip().splitlines()[-1])
    store_bytes = store.stat().st_size + sum(f.stat().st_size for f in work.glob("bench.duckdb.wal"))
    load = subprocess.run([sys.executable, __file__, "--load-dataset", str(store)], capture_output=True,
                          text=True, check=True)
    ds = json.loads(load.stdout.strip().splitlines()[-1])
    return {"users": sizes["users"], "items": sizes["items"], "import_s": res["seconds"],
            "rows": res["rows_read"], "import_peak": res["peak_rss_bytes"], "store_bytes": store_bytes,
            "parquet_bytes": parquet.stat().st_size, "load_s": ds["seconds"], "load_peak": ds["peak"],
            "load_base": ds["base"]}


def load_dataset(store: Path) -> dict:
    from lmrec.store import Store

    base = rss_now()
    t = time.perf_counter()
    with Store(store) as st:
        ds = st.to_dataset()
    return {"seconds": time.perf_counter() - t, "peak": peak_rss(), "base": base, "events": len(ds.events)}


def synthetic_dataset(n_items: int, n_users: int, per_user: int, seed: int):
    """Users with Poisson(per_user) events over ``n_items`` catalogue items, popularity ∝ 1/(rank+10)^0.9
    (so that a large catalogue's tail is touched too); every catalogue item is in the vocabulary."""
    import polars as pl

    from lmrec.data.dataset import Dataset

    rng = np.random.default_rng(seed)
    lengths = rng.poisson(per_user, n_users).clip(2)
    n = int(lengths.sum())
    p = 1.0 / (np.arange(n_items) + 10.0) ** 0.9
    cdf = np.cumsum(p) / p.sum()
    chosen = np.minimum(np.searchsorted(cdf, rng.random(n)), n_items - 1)
    users = np.repeat(np.arange(n_users), lengths)
    item_ids = pl.Series("item_id", np.arange(n_items)).cast(pl.String)
    events = pl.DataFrame({
        "event_id": pl.Series(np.arange(n)).cast(pl.String),
        "user_id": pl.Series(users).cast(pl.String),
        "item_id": pl.Series(chosen).cast(pl.String),
        "timestamp": 1_600_000_000 + np.arange(n, dtype=np.int64),
        "event_type": ["view"] * n,
    })
    return Dataset.build(events, pl.DataFrame({"item_id": item_ids}), name=f"synthetic-{n_items}")


def point_train(p: dict, work: Path, small: bool) -> dict:
    """One epoch of SeqRec (sampled softmax with log-Q) capped by a time budget, then batch scoring."""
    import torch

    from lmrec.data.ragged import window_bounds
    from lmrec.models import create_model
    from lmrec.models.export import write_recommendations

    n_items = p["items"]
    users = 1000 if small else TRAIN_USERS
    ds = synthetic_dataset(n_items, users, TRAIN_EVENTS_PER_USER, seed=0)
    vectors = None
    if p["repr"] == "fused":
        # Random unit vectors of the encoder's dimension stand in for the items' text vectors: the cost of
        # the adapter and of the (n_items + 1, 384) table is what is measured, not the quality.
        rng = np.random.default_rng(1)
        vectors = rng.standard_normal((ds.n_items + 1, TEXT_DIM), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors[0] = 0.0
    base = rss_now()
    settings = dict(TRAIN_SETTINGS, item_repr=p["repr"], time_budget=10.0 if small else TRAIN_BUDGET_S)
    model = create_model("seqrec", **settings)
    t = time.perf_counter()
    model.fit(ds, item_vectors=vectors)
    fit_s = time.perf_counter() - t
    res = model.train_result_
    steps = sum(res.threads.values())
    rows = len(window_bounds(ds.sequences.lengths, TRAIN_SETTINGS["max_len"], "all")[0])  # one epoch
    train_peak = peak_rss()
    # batch scoring: the lmrec recommend --users all path, users in the order the model knows them
    n_score = 100 if small else SCORE_USERS.get(n_items, 1000)
    who = list(model.user_map.raw_ids)[:n_score]
    write_recommendations(model, who[:20], 10, work / "warm.parquet")  # first call: tables built once
    t = time.perf_counter()
    write_recommendations(model, who, 10, work / "recs.parquet")
    score_s = time.perf_counter() - t
    return {"events": len(ds.events), "users": users, "n_items": ds.n_items, "fit_s": fit_s,
            "loop_s": res.seconds, "steps": steps, "rows": rows,
            "batch_size": settings["batch_size"], "stop": res.stop_reason, "threads": res.threads,
            "train_peak": train_peak, "base": base, "score_users": len(who), "score_s": score_s,
            "score_peak": peak_rss(), "torch_threads": torch.get_num_threads()}


WORDS = ["red", "blue", "green", "light", "dark", "classic", "modern", "compact", "deluxe", "portable",
         "wireless", "organic", "steel", "wooden", "premium", "everyday", "travel", "kitchen", "office",
         "garden", "outdoor", "vintage", "smart", "silent", "heavy", "duty", "soft", "large", "small", "mini",
         "pro", "ultra", "eco", "family", "kids", "adult", "edition", "series", "collection", "set", "pack",
         "refill", "spare"]


def texts_table(n: int, length: str, seed: int):
    """``n`` item rows of seeded pseudo-text: a title of 4-8 words (short), or a title plus a 150-word
    description (long, cut by the template at 128 tokens)."""
    import polars as pl

    rng = np.random.default_rng(seed)
    titles = [" ".join(rng.choice(WORDS, rng.integers(4, 9))) + f" {i}" for i in range(n)]
    desc = [" ".join(rng.choice(WORDS, 150)) for _ in range(n)] if length == "long" else [None] * n
    return pl.DataFrame({"item_id": [str(i) for i in range(n)], "title": titles, "description": desc})


def point_encode(p: dict, work: Path, small: bool) -> dict:
    from lmrec.text import ItemTemplate, get_encoder
    from lmrec.text.vectors import embed_items

    n = 40 if small else ENCODE_TEXTS[p["length"]]
    items = texts_table(n, p["length"], seed=0 if p["length"] == "short" else 1)
    enc = get_encoder(None, batch_size=p["batch"])
    template = "title" if p["length"] == "short" else "title, description"
    store = work / "cache.duckdb"
    embed_items(texts_table(8, "short", seed=99), encoder=enc, template=template, store=store)  # model loaded
    t = time.perf_counter()
    vec, _ = embed_items(items, encoder=enc, template=template, store=store)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    embed_items(items, encoder=enc, template=template, store=store)
    warm = time.perf_counter() - t
    texts = ItemTemplate.parse(template).render(items)
    tokens = enc.tokenizer(list(texts), truncation=True, max_length=128)["input_ids"]
    return {"texts": n, "cold_s": cold, "cached_s": warm, "dim": int(vec.shape[1]),
            "mean_tokens": float(np.mean([len(x) for x in tokens])),
            "peak": peak_rss(), "store_bytes": store.stat().st_size}


def point_index(p: dict, work: Path) -> dict:
    from ann_recall import exact_topk, mixture

    from lmrec.serving.retrieval import VectorIndex

    n = p["vectors"]
    rng = np.random.default_rng(0)
    items = mixture(n, INDEX_DIM, max(30, min(3000, n // 300)), 1, rng)
    queries = mixture(INDEX_QUERIES, INDEX_DIM, max(30, min(3000, n // 300)), 2, rng)
    truth = exact_topk(items, queries, 10)
    padded = np.vstack([np.zeros((1, INDEX_DIM), np.float32), items])
    del items
    before = rss_now()
    t = time.perf_counter()
    index = VectorIndex(padded, threshold=0)
    build = time.perf_counter() - t
    added = rss_now() - before
    found, _ = index.search(queries, 10)
    recall = float(np.mean([len(set(f) & set(r)) / 10 for f, r in zip(found, truth, strict=True)]))
    ms = []
    for q in queries[:INDEX_TIMED]:
        t = time.perf_counter()
        index.search(q, 10)
        ms.append((time.perf_counter() - t) * 1000)
    return {"build_s": build, "index_bytes": added, "recall": recall, "p50_ms": float(np.median(ms)),
            "p99_ms": float(np.percentile(ms, 99)), "peak": peak_rss(), "dim": INDEX_DIM}


def point_adamw(p: dict, repeats: int = 5) -> dict:
    """The part of a training step that grows with the catalogue, alone: SeqRec's id table is a dense
    ``nn.Embedding``, so every step gives it a dense ``(n_items + 1, d)`` gradient and AdamW (the Trainer's
    optimiser, its settings) updates every row. Times zeroing that gradient, a sampled batch's scatter into
    it and one ``AdamW.step`` at the threads the training point used most (1)."""
    import torch

    torch.set_num_threads(1)
    d = TRAIN_SETTINGS["d_model"]
    table = torch.nn.Embedding(p["items"] + 1, d, padding_idx=0)
    opt = torch.optim.AdamW(table.parameters(), lr=1e-3, betas=(0.9, 0.98))
    rows = torch.randint(1, p["items"] + 1, (TRAIN_SETTINGS["batch_size"] * 10 + 256,))
    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        table(rows).sum().backward()
        opt.step()
        if i:  # the first step allocates AdamW's moments
            times.append(time.perf_counter() - t)
    return {"step_s": float(np.median(times)), "repeats": repeats, "threads": 1, "peak": peak_rss()}


def run_point(stage: str, p: dict, small: bool) -> dict:
    tmp = os.environ.get("SCALING_TMP")
    with tempfile.TemporaryDirectory(prefix=f"lmrec-scaling-{stage}-", dir=tmp) as d:
        work = Path(d)
        if stage == "import":
            return point_import(p, work)
        if stage == "train":
            return point_train(p, work, small)
        if stage == "encode":
            return point_encode(p, work, small)
        if stage == "index":
            return point_index(p, work)
        if stage == "adamw":
            return point_adamw(p)
    raise ValueError(stage)


# ====================================================================== fitting and the plan
def fit_power(ns, ys) -> tuple[float, float]:
    """Least squares of log y = log c + e log n: ``(c, e)`` (one point: e = 1 through it)."""
    ns, ys = np.asarray(ns, float), np.asarray(ys, float)
    if len(ns) < 2:
        return float(ys[0] / ns[0]), 1.0
    e, logc = np.polyfit(np.log(ns), np.log(ys), 1)
    return float(math.exp(logc)), float(e)


def fit_linear(ns, ys) -> tuple[float, float]:
    """Least squares of y = a + b n, ``(a, b)`` (one point: through the origin)."""
    ns, ys = np.asarray(ns, float), np.asarray(ys, float)
    if len(ns) < 2:
        return 0.0, float(ys[0] / ns[0])
    b, a = np.polyfit(ns, ys, 1)
    return float(a), float(b)


class Law:
    """A stage's fitted growth: power law (the plan's figure) and a straight line (for comparison)."""

    def __init__(self, ns, ys, what: str) -> None:
        self.ns, self.ys, self.what = list(ns), list(ys), what
        self.c, self.e = fit_power(ns, ys)
        self.a, self.b = fit_linear(ns, ys)

    def power(self, n: float) -> float:
        return self.c * n**self.e

    def linear(self, n: float) -> float:
        return self.a + self.b * n

    def at(self, n: float) -> float:
        """The plan's figure: the larger of the two (a flattening power law is not trusted below a line)."""
        return max(self.power(n), self.linear(n))

    def describe(self) -> str:
        pts = ", ".join(f"{_n(n)}" for n in self.ns)
        return f"fitted on {len(self.ns)} points ({pts}): exponent {self.e:.2f}"


def _n(n: float) -> str:
    if not math.isfinite(n):
        return "—"
    if n >= 1e12:
        return f"{n:.1e}"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            v = n / div
            return f"{v:.0f}{unit}" if v == int(v) else f"{v:.1f}{unit}"
    return f"{n:.0f}"


def _t(seconds: float) -> str:
    if seconds == math.inf:
        return "∞"
    if seconds >= 86_400 * 2:
        return f"{seconds / 86_400:,.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:,.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s"


def _b(n: float) -> str:
    if n >= 2**40:
        return f"{n / 2**40:.1f} TiB"
    if n >= GIB:
        return f"{n / GIB:.1f} GiB"
    return f"{n / MIB:.0f} MiB"


def rows_of(cached: list[dict], stage: str, **match) -> list[dict]:
    return [r for r in cached
            if r["stage"] == stage and all(r["point"].get(k) == v for k, v in match.items())]


def report(cached: list[dict], small: bool) -> tuple[str, str]:
    """``(benchmarks section, scaling page)``, every figure from ``cached``."""
    imp = sorted(rows_of(cached, "import"), key=lambda r: r["point"]["events"])
    tr_id = sorted(rows_of(cached, "train", repr="id"), key=lambda r: r["point"]["items"])
    tr_fu = sorted(rows_of(cached, "train", repr="fused"), key=lambda r: r["point"]["items"])
    enc = rows_of(cached, "encode")
    idx = sorted(rows_of(cached, "index"), key=lambda r: r["point"]["vectors"])
    if not (imp and tr_id and enc and idx):
        raise SystemExit("the cache lacks a stage; run the measurements first")
    loads = [r["load"] for r in cached]
    load_range = (f"{min(x[0] for x in loads):.1f}–{max(x[0] for x in loads):.1f} (1-minute), "
                  f"{min(x[1] for x in loads):.1f}–{max(x[1] for x in loads):.1f} (5-minute)")
    cmd = "python benchmarks/scaling.py" + (" --small" if small else "")

    # ---------------------------------------------------------------- measurements (benchmarks section)
    m = ["## Scaling measurements (the points docs/scaling.md is fitted to)\n",
         f"Each point ran in its own process (peak RSS = that process's `ru_maxrss`); load average at the "
         f"points {load_range} on {os.cpu_count()} shared cores. Full method and the plan: "
         "docs/scaling.md.\n",
         "**Import** (import_events.py's generator and import-only process; then `Store.to_dataset()` in a "
         "fresh process):\n",
         "| events | users | items | import s | rows/s | import peak RSS | store size | B/event (store) "
         "| to_dataset s | to_dataset peak RSS |",
         "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in imp:
        x = r["result"]
        m.append(f"| {x['rows']:,} | {x['users']:,} | {x['items']:,} | {x['import_s']:.1f} | "
                 f"{x['rows'] / x['import_s']:,.0f} | {_b(x['import_peak'])} | {_b(x['store_bytes'])} | "
                 f"{x['store_bytes'] / x['rows']:.1f} | {x['load_s']:.1f} | {_b(x['load_peak'])} |")
    m += ["", f"**SeqRec training** (loss `sampled`, log-Q, {TRAIN_SETTINGS['n_negatives']} shared "
          "negatives, "
          f"d={TRAIN_SETTINGS['d_model']}, {TRAIN_SETTINGS['n_layers']} layers, max_len "
          f"{TRAIN_SETTINGS['max_len']}, batch {TRAIN_SETTINGS['batch_size']}, AdamW; one epoch capped at "
          f"{TRAIN_BUDGET_S:.0f} s of steps; fused = id + text with random unit 384-d vectors as text) and "
          "**batch scoring** (`write_recommendations`, top-10 over the whole catalogue, seen items excluded, "
          "one process):\n",
          "| items | repr | events | steps run (at 1 / 2 threads) | s/step | targets/s | fit s (setup + "
          "steps) | peak RSS (train) | users scored | users/s | ms/user |",
          "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in tr_id + tr_fu:
        x = r["result"]
        sps = x["loop_s"] / max(1, x["steps"])
        tgt_per_step = (x["events"] - x["users"]) * x["batch_size"] / x["rows"]
        th = x["threads"]
        m.append(f"| {x['n_items']:,} | {r['point']['repr']} | {x['events']:,} | {x['steps']} "
                 f"({th.get('1', 0)} / {th.get('2', 0)}) | {sps:.3f} | "
                 f"{tgt_per_step / sps:,.0f} | {x['fit_s']:.0f} | {_b(x['train_peak'])} | "
                 f"{x['score_users']:,} | {x['score_users'] / x['score_s']:,.1f} | "
                 f"{1000 * x['score_s'] / x['score_users']:.2f} |")
    m += ["", "**Encoding** (default encoder all-MiniLM-L6-v2 through lmrec's cache, CPU, a fresh cache per "
          "row; cached = the same texts again):\n",
          "| texts | template | mean tokens | batch | cold s | texts/s | cached s | cached texts/s |",
          "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in sorted(enc, key=lambda r: (r["point"]["length"], r["point"]["batch"])):
        x, p = r["result"], r["point"]
        m.append(f"| {x['texts']:,} | {p['length']} | {x['mean_tokens']:.0f} | {p['batch']} | "
                 f"{x['cold_s']:.1f} | {x['texts'] / x['cold_s']:.1f} | {x['cached_s']:.3f} | "
                 f"{x['texts'] / x['cached_s']:,.0f} |")
    m += ["", f"**ANN index** (`VectorIndex`, FAISS HNSW M=32, efSearch 128, 200 candidates re-scored; "
          f"clustered unit vectors d={INDEX_DIM} from ann_recall.py's mixture; {INDEX_QUERIES} queries, "
          f"{INDEX_TIMED} timed one at a time):\n",
          "| vectors | build s | memory added | B/vector | recall@10 | p50 ms | p99 ms |",
          "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in idx:
        x = r["result"]
        m.append(f"| {r['point']['vectors']:,} | {x['build_s']:.1f} | {_b(x['index_bytes'])} | "
                 f"{x['index_bytes'] / r['point']['vectors']:.0f} | {x['recall']:.3f} | {x['p50_ms']:.2f} | "
                 f"{x['p99_ms']:.2f} |")
    adam = sorted(rows_of(cached, "adamw"), key=lambda r: r["point"]["items"])
    if adam:
        m += ["", f"**The item table's share of a step** (a dense `nn.Embedding` of (items + 1) × "
              f"{TRAIN_SETTINGS['d_model']} as SeqRec's id table: zero its gradient, backward of one batch's "
              "lookups, one `AdamW.step`; median of 5 steps, 1 thread):\n",
              "| items | s/step (table + AdamW alone) | peak RSS |", "| ---: | ---: | ---: |"]
        m += [f"| {r['point']['items']:,} | {r['result']['step_s']:.3f} | {_b(r['result']['peak'])} |"
              for r in adam]
    whens = sorted(r["when"] for r in cached)
    m.append(f"\n{len(cached)} points measured between {whens[0]} and {whens[-1]}; their wall time in all "
             f"(each point's process, data generation included) {sum(r['wall_s'] for r in cached):.0f} s. "
             "The command measures the points its cache (`benchmarks/.cache/scaling.jsonl`) lacks, then "
             "writes this section and docs/scaling.md from the cache.")
    section = "\n".join(m) + "\n"

    # ---------------------------------------------------------------- the laws
    L = {}
    L["import_s"] = Law([r["result"]["rows"] for r in imp], [r["result"]["import_s"] for r in imp], "s")
    L["import_peak"] = Law([r["result"]["rows"] for r in imp], [r["result"]["import_peak"] for r in imp], "B")
    L["store"] = Law([r["result"]["rows"] for r in imp], [r["result"]["store_bytes"] for r in imp], "B")
    L["load_s"] = Law([r["result"]["rows"] for r in imp], [r["result"]["load_s"] for r in imp], "s")
    L["load_peak"] = Law([r["result"]["rows"] for r in imp], [r["result"]["load_peak"] for r in imp], "B")
    for name, rows in (("id", tr_id), ("fused", tr_fu)):
        if not rows:
            continue
        ni = [r["result"]["n_items"] for r in rows]
        L[f"step_{name}"] = Law(ni, [r["result"]["loop_s"] / max(1, r["result"]["steps"]) for r in rows], "s")
        L[f"trainmem_{name}"] = Law(ni, [r["result"]["train_peak"] for r in rows], "B")
        L[f"score_{name}"] = Law(ni, [r["result"]["score_s"] / r["result"]["score_users"] for r in rows], "s")
    L["index_s"] = Law([r["point"]["vectors"] for r in idx], [r["result"]["build_s"] for r in idx], "s")
    L["index_b"] = Law([r["point"]["vectors"] for r in idx], [r["result"]["index_bytes"] for r in idx], "B")
    L["query_ms"] = Law([r["point"]["vectors"] for r in idx], [r["result"]["p50_ms"] for r in idx], "ms")
    if adam:
        L["adamw"] = Law([r["point"]["items"] for r in adam], [r["result"]["step_s"] for r in adam], "s")

    E, I, U = TARGET["events"], TARGET["items"], TARGET["users"]  # noqa: E741
    x0 = tr_id[-1]["result"]
    # the synthetic sets have the plan's 10 events per user, so the plan's epoch has as many rows per event
    steps_full = E * (x0["rows"] / x0["events"]) / x0["batch_size"]
    long_enc = [r for r in enc if r["point"]["length"] == "long"] or enc
    short_enc = [r for r in enc if r["point"]["length"] == "short"] or enc
    rate_long = max(r["result"]["texts"] / r["result"]["cold_s"] for r in long_enc)
    rate_short = max(r["result"]["texts"] / r["result"]["cold_s"] for r in short_enc)
    cached_rate = min(r["result"]["texts"] / r["result"]["cached_s"] for r in enc)
    st_e = L["import_s"]
    plan = {
        "import": st_e.at(E),
        "load": L["load_s"].at(E),
        "epoch_id": steps_full * L["step_id"].at(I),
        "epoch_fused": steps_full * L["step_fused"].at(I) if "step_fused" in L else math.nan,
        "encode_short": I / rate_short,
        "encode_long": I / rate_long,
        "score_id": U * L["score_id"].at(I),
        "index": L["index_s"].at(I),
        "ann_users": U * L["query_ms"].at(I) / 1000,
    }
    mem = {
        "import_peak": L["import_peak"].at(E),
        "store": L["store"].at(E),
        "load_peak": L["load_peak"].at(E),
        "train_id": L["trainmem_id"].at(I),
        "train_fused": L["trainmem_fused"].at(I) if "trainmem_fused" in L else math.nan,
        "index": L["index_b"].at(I),
        "table": I * TRAIN_SETTINGS["d_model"] * 4,
        "text_f32": I * TEXT_DIM * 4,
        "text_f16": I * TEXT_DIM * 2,
    }
    budget_t, budget_m = 24 * 3600.0, 24 * GIB
    # Every stage as a function of one scale s: events, items and users all at s × the plan's size (the
    # plan's own proportions: 10 events per user, 10 per item); the s at which each passes its budget.
    rows_per_event = x0["rows"] / x0["events"]

    def steps(s: float) -> float:
        return E * s * rows_per_event / x0["batch_size"]

    stages = [
        ("exact batch scoring of every user (`lmrec recommend --users all`)", "24 h",
         lambda s: U * s * L["score_id"].at(I * s), budget_t, "users × items"),
        ("encoding every item's text (long texts, MiniLM)", "24 h", lambda s: I * s / rate_long, budget_t,
         "items"),
        ("one SeqRec epoch, id items", "24 h", lambda s: steps(s) * L["step_id"].at(I * s), budget_t,
         "events × items"),
        ("loading the events as a Dataset: peak RSS", "24 GiB", lambda s: L["load_peak"].at(E * s), budget_m,
         "events"),
        ("import: peak RSS", "24 GiB", lambda s: L["import_peak"].at(E * s), budget_m, "events"),
        ("SeqRec training, id items: peak RSS (law over items, 400k events)", "24 GiB",
         lambda s: L["trainmem_id"].at(I * s), budget_m, "items"),
        ("SeqRec training process, id items: Dataset of the events + item-table law (sum, an upper "
         "bound)", "24 GiB", lambda s: L["load_peak"].at(E * s) + L["trainmem_id"].at(I * s), budget_m,
         "events + items"),
        ("ANN index build: RAM", "24 GiB", lambda s: L["index_b"].at(I * s), budget_m, "items"),
        ("ANN index build: time", "24 h", lambda s: L["index_s"].at(I * s), budget_t, "items"),
        ("import: time", "24 h", lambda s: L["import_s"].at(E * s), budget_t, "events"),
    ]
    if "step_fused" in L:
        stages.insert(3, ("one SeqRec epoch, fused items", "24 h",
                          lambda s: steps(s) * L["step_fused"].at(I * s), budget_t, "events × items"))
        stages.insert(6, ("SeqRec training, fused items: peak RSS (law over items, 400k events)", "24 GiB",
                          lambda s: L["trainmem_fused"].at(I * s), budget_m, "items"))
    limits = sorted(((name, budget, _size_for(f, b), f(1.0), b, grows)
                     for name, budget, f, b, grows in stages), key=lambda x: x[2])
    first = limits[0]
    tied = limits[1][2] < 1.25 * first[2]

    # ---------------------------------------------------------------- the page
    srv, rep, i10, a1 = CITED["serving"], CITED["replicas"], CITED["import_10m"], CITED["ann_1m"]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    w = [f"# Scaling plan: {_n(E)} events, {_n(I)} items, {_n(U)} users — measured, not guessed\n",
         "<!-- generated by benchmarks/scaling.py; do not edit by hand: rerun "
         "`python benchmarks/scaling.py --report-only` -->\n",
         f"Every figure on this page comes from `{cmd}` (the measured points are in docs/benchmarks.md, "
         "section `scaling`, and in the script's cache) or from a section of docs/benchmarks.md that is "
         "named beside it with its own command. The machine: "
         f"{machine()}, shared with other engineers' jobs (load average at the points {load_range}), so the "
         "times are upper bounds for a quiet machine of this kind. Written "
         f"{stamp}.\n",
         "## How the plan is made\n",
         "Each stage ran at two to four sizes, each point in its own process. For every quantity two laws "
         "are fitted by least squares: a power law `y = c·n^e` (on logs) and a straight line `y = a + b·n`; "
         "the plan takes **the larger of the two at the full size**, so that a law that flattens between "
         "small points is not trusted to stay flat. The fitted exponent is shown: near 1 is linear, above 1 "
         "super-linear (HNSW builds are expected near n log n, exponent a little above 1). Extrapolating "
         "10× to 100× past the largest point is the weak part of any such plan: the figures are orders of "
         "magnitude, not promises, and the two laws' disagreement at the full size (shown for each) is one "
         "visible measure of how far to trust them. Budgets used to find the first bottleneck: "
         "**24 h** of wall time per job and **24 GiB** of RAM, this machine's size.\n",
         f"## The full size on this machine ({machine()})\n",
         "| stage | what the plan needs | law (points, exponent) | source |",
         "| --- | --- | --- | --- |"]

    def law(k: str) -> str:
        n = E if k.startswith(("import", "store", "load")) else I
        fmt = {"s": _t, "B": _b, "ms": lambda v: f"{v:.2f} ms"}[L[k].what]
        return (f"{L[k].describe()}; at {_n(n)}: power law {fmt(L[k].power(n))}, line "
                f"{fmt(L[k].linear(n))}")

    w += [
        f"| import {_n(E)} events | **{_t(plan['import'])}**, peak RSS {_b(mem['import_peak'])} | "
        f"time {law('import_s')}; RSS {law('import_peak')} | import rows |",
        f"| store on disk | **{_b(mem['store'])}** (DuckDB, {L['store'].at(E) / E:.1f} B/event) | "
        f"{law('store')} | import rows |",
        f"| load the events as a Dataset (training, batch jobs) | {_t(plan['load'])}, peak RSS "
        f"**{_b(mem['load_peak'])}** | RSS {law('load_peak')} | import rows |",
        f"| one SeqRec epoch, id items, {_n(I)}-item table | **{_t(plan['epoch_id'])}** "
        f"({steps_full:,.0f} steps × {_t(L['step_id'].at(I))}) | s/step over items: {law('step_id')} | "
        "train rows |",
    ]
    if "adamw" in L:
        w.append(f"| of which the id table's dense gradient and AdamW update | {_t(L['adamw'].at(I))} of the "
                 f"{_t(L['step_id'].at(I))} step at {_n(I)} items | {law('adamw')} | table rows |")
    if "step_fused" in L:
        w.append(f"| one SeqRec epoch, fused items (id + text) | **{_t(plan['epoch_fused'])}** "
                 f"({_t(L['step_fused'].at(I))}/step) | {law('step_fused')} | train rows |")
    w += [
        f"| SeqRec training peak RSS, id | **{_b(mem['train_id'])}** (item table alone {_b(mem['table'])}, "
        f"×4 with its gradient and AdamW's two moments) | {law('trainmem_id')} | train rows |",
    ]
    if "trainmem_fused" in L:
        w.append(f"| SeqRec training peak RSS, fused | **{_b(mem['train_fused'])}** (text vectors alone "
                 f"{_b(mem['text_f32'])} float32) | {law('trainmem_fused')} | train rows |")
    w += [
        f"| encode {_n(I)} item texts (MiniLM) | **{_t(plan['encode_long'])}** long texts "
        f"({rate_long:.0f}/s), {_t(plan['encode_short'])} titles only ({rate_short:.0f}/s); unchanged "
        f"texts re-encode from the cache at ≥ {cached_rate:,.0f}/s ({_t(I / cached_rate)}) | measured rate, "
        "linear in items | encode rows |",
        f"| item text vectors on disk | {_b(mem['text_f32'])} float32, {_b(mem['text_f16'])} float16 | "
        f"{_n(I)} × {TEXT_DIM} | arithmetic |",
        f"| batch scoring, exact, {_n(U)} users × {_n(I)} items | **{_t(plan['score_id'])}** "
        f"({1000 * L['score_id'].at(I):.0f} ms/user) | ms/user over items: {law('score_id')} | train rows |",
        *([f"| batch scoring, exact, fused model | {_t(U * L['score_fused'].at(I))} "
           f"({1000 * L['score_fused'].at(I):.0f} ms/user; both models score a d=64 table, and the "
           f"{L['score_id'].at(I) / L['score_fused'].at(I):.1f}× gap between them is measured, not "
           f"explained) | {law('score_fused')} | train rows |"]
          if "score_fused" in L else []),
        f"| ANN index build, {_n(I)} vectors d={INDEX_DIM} | **{_t(plan['index'])}**, "
        f"**{_b(mem['index'])}** RAM; recall@10 " + ", ".join(
            f"{r['result']['recall']:.3f} at {_n(r['point']['vectors'])}" for r in idx) +
        f" | time {law('index_s')}; memory {law('index_b')} | index rows |",
        f"| one query of that index (p50, single query) | {L['query_ms'].at(I):.2f} ms; {_n(U)} users one "
        f"query each: {_t(plan['ann_users'])} (not a path `lmrec recommend` takes today: it scores "
        "exactly) | "
        f"{law('query_ms')} | index rows |",
        "",
        *_step_note(tr_id, adam),
        "## Where the first bottleneck is\n",
        "All three sizes grown together in the plan's proportions (10 events per user and per item), from "
        "small to the full size: `s` is the fraction of the full size (s = 1: 100M events, 10M items, 10M "
        "users). For each stage, its laws above solved for the `s` at which it passes its budget on this "
        "machine — 24 h for a job (a daily batch, an epoch) and 24 GiB for a process (this machine's RAM) "
        "— earliest first:\n",
        "| stage | grows with | budget | passes it at s = | i.e. at events / items / users | at the full "
        "size |",
        "| --- | --- | --- | ---: | --- | ---: |",
    ]
    for name, budget, s_lim, full, b, grows in limits:
        at_full = _t(full) if b == budget_t else _b(full)
        if s_lim < 1e3:
            sizes = f"{_n(E * s_lim)} / {_n(I * s_lim)} / {_n(U * s_lim)}"
            w.append(f"| {name} | {grows} | {budget} | {s_lim:.2f} | {sizes} | {at_full} |")
        else:
            w.append(f"| {name} | {grows} | {budget} | > 1000 | beyond 1000× the plan | {at_full} |")
    w += ["", f"**The first bottleneck is {first[0]}**: it passes {first[1]} at s = {first[2]:.2f}, "
          f"i.e. at about {_n(E * first[2])} events, {_n(I * first[2])} items and {_n(U * first[2])} users; "
          f"at the full size it needs {_t(first[3]) if first[4] == budget_t else _b(first[3])}. "
          + _bottleneck_note(first[0], plan, U)
          + (f" The next stage passes its budget within 25 % of the same size ({limits[1][0]}, s = "
             f"{limits[1][2]:.2f}): on a shared machine whose load moves the times by that much, treat the "
             "two as tied." if tied else "")
          + " Then: " + ", ".join(
              f"{x[0]} (s = {x[2]:.2f})" for x in limits[1 + tied:4])
          + ". Stages that grow with the product of two sizes (users × items, events × items) overtake "
          "the linear ones as the data grows, whatever the constant factors.\n"]

    w += ["## What the full size needs\n",
          _needs(plan, mem, srv) + "\n",
          "## Serving and replicas (cited, not re-measured)\n",
          f"* One `lmrec serve` process with the `auto` model on {srv['items']:,} items held "
          f"{srv['rate']} requests/s mixed with recommendations p99 {srv['recs_p99_ms']} ms and events p99 "
          f"{srv['events_p99_ms']} ms (docs/benchmarks.md section `{srv['section']}`, {srv['when']}, "
          f"`{srv['command']}`).",
          "* On PostgreSQL, `lmrec serve --workers N`: 1 replica met p99 ≤ 25 ms up to "
          f"{rep['rate_1']} req/s, 2 and 4 replicas up to {rep['rate_2']} req/s — on 2 shared cores, "
          f"where more replicas than cores add nothing (section `{rep['section']}`, {rep['when']}, "
          f"`{rep['command']}`).",
          f"* Replica count for a rate R: **⌈R / {srv['rate']}⌉ replicas of 2 cores each**, from the "
          f"measured {srv['rate']} req/s per 2-core replica. *Assumption, not measured*: replicas on "
          "separate machines scale linearly (they share nothing but the store; writes are batched). Example: "
          f"2,000 req/s → {math.ceil(2000 / srv['rate'])} replicas. At {_n(I)} items each replica also "
          f"holds the item table ({_b(mem['table'])}) and its ANN index ({_b(mem['index'])}): "
          f"**≥ {_b(mem['table'] + mem['index'])} RAM per replica** before the catalogue and the recent "
          "histories. Whether a replica still holds 200 req/s at that size is not measured end to end; the "
          f"index's part of a request grows from {L['query_ms'].ys[-1]:.2f} ms at {_n(L['query_ms'].ns[-1])} "
          f"vectors to {L['query_ms'].at(I):.2f} ms extrapolated, small against the measured p99.",
          "",
          "## Cross-checks against earlier measurements\n",
          f"* Import, {_n(i10['events'])} events: measured {i10['seconds']:.0f} s, peak "
          f"{i10['peak_gib']} GiB, store {i10['store_mib']} MiB ({i10['when']}; `{i10['command']}`). The "
          f"law fitted here predicts {_t(L['import_s'].at(i10['events']))}, "
          f"{_b(L['import_peak'].at(i10['events']))} and "
          f"{_b(L['store'].at(i10['events']))}.",
          f"* ANN index, {_n(a1['vectors'])} vectors d={a1['dim']}: build {a1['build_s']} s, recall@10 "
          f"{a1['recall']}, p50 {a1['p50_ms']} ms ({a1['when']}; `{a1['command']}`). The d={INDEX_DIM} law "
          f"here predicts {_t(L['index_s'].at(a1['vectors']))} (half the dimension, so less).",
          "",
          "## GPUs\n",
          "No GPU on this machine: nothing on this page measures one. *Assumption, not measured*: training "
          "and batch scoring are dense matrix work that a GPU speeds up by one to two orders of magnitude; "
          "the item table with AdamW state must then fit in GPU memory (the id figure above, less the "
          "process's Python and data). Encoding with MiniLM likewise moves to a GPU with "
          "`lmrec embed items --nproc N` sharding. Until measured, plan GPU needs as: the CPU hours above "
          "divided by a speed-up to be measured on the target GPU.",
          "",
          "## What is not measured here\n",
          "* `--nproc 2` shard speed-up of `lmrec recommend --users all` / `lmrec embed items`: on 2 cores "
          "shared by up to eight engineers' jobs it would measure the neighbours, not the sharding.",
          "* Convergence: epochs needed at full size (only seconds per epoch are measured).",
          "* Serving at 10M items end to end (the per-replica rate is from 100k items).",
          "* PostgreSQL import at this size (the import path measured is DuckDB's).",
          ]
    return section, "\n".join(w) + "\n"


def _step_note(tr_id: list[dict], adam: list[dict]) -> list[str]:
    """Why a training step grows with the catalogue: the measured step against the table's part alone."""
    by_items = {r["point"]["items"]: r["result"]["step_s"] for r in adam}
    pairs = [(r["result"]["n_items"], r["result"]["loop_s"] / max(1, r["result"]["steps"]),
              by_items[r["point"]["items"]]) for r in tr_id if r["point"]["items"] in by_items]
    if len(pairs) < 2:
        return []
    parts = "; ".join(f"{_n(n)} items: step {step:.2f} s, table + AdamW alone {tab:.2f} s, the rest "
                      f"{step - tab:.2f} s" for n, step, tab in pairs)
    return ["**Why a step grows with the catalogue** (train and table rows): " + parts + ". The table's "
            "part comes from SeqRec's id table being a dense `nn.Embedding`: every step fills a gradient of "
            "the whole table and AdamW updates every row, though a batch touches a few thousand. The rest "
            "grows with the catalogue too and is not timed apart here. Sparse row updates would remove the "
            "table's part; not built.\n"]


def _size_for(f, budget: float, lo: float = 1e-6, hi: float = 1e6) -> float:
    """The ``x`` in ``[lo, hi]`` at which the increasing ``f`` reaches ``budget`` (bisection on a log scale;
    ``inf`` when it stays under it)."""
    if f(hi) < budget:
        return math.inf
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if f(mid) < budget else (lo, mid)
    return hi


def _bottleneck_note(name: str, plan: dict, U: int) -> str:
    if name.startswith("exact batch scoring"):
        return (f"Scoring every user against every item exactly is work ∝ users × items: "
                f"{_t(plan['score_id'])} on this machine for the full size. Two ways out: shard the users "
                "over machines (`--nproc` shards them; the time divides by the processes, *assumed* "
                "linear), or score users through the ANN index, one query each "
                f"({_t(plan['ann_users'])} for {_n(U)} users at the extrapolated query time) — not built: "
                "`lmrec recommend` scores exactly today.")
    if name.startswith("encoding"):
        return ("Encoding is linear in items and embarrassingly parallel: shard it "
                "(`lmrec embed items --nproc N`).")
    if "epoch" in name:
        return ("A step's cost grows linearly with the item table: SeqRec's id table is a dense embedding, "
                "so every step writes a dense gradient of the whole table and AdamW updates every row (the "
                "'table' rows above time that part alone), and an epoch has a number of steps ∝ events. The "
                "epoch therefore grows with items × events. Not built, the way out this points to: sparse "
                "updates of the table (only the rows a batch touched: a sparse embedding gradient with a "
                "row-wise optimiser), which would remove the table's part of a step.")
    return ""


def _needs(plan: dict, mem: dict, srv: dict) -> str:
    E, I = TARGET["events"], TARGET["items"]  # noqa: E741
    disk = mem["store"] + mem["text_f32"] + mem["table"] + mem["index"]
    lines = [
        f"* **Hours**: import {_t(plan['import'])}; encoding {_n(I)} items {_t(plan['encode_long'])} "
        f"(long texts; 1 process); one SeqRec epoch {_t(plan['epoch_id'])} (id) — "
        f"{_t(plan['epoch_fused'])} (fused); exact batch scoring {_t(plan['score_id'])}, through the ANN "
        f"index {_t(plan['ann_users'])}; index build {_t(plan['index'])}.",
        f"* **Memory**: the training process {_b(mem['train_id'])} (id) / {_b(mem['train_fused'])} (fused) "
        f"for a {_n(I)}-item catalogue, plus the Dataset of {_n(E)} events ({_b(mem['load_peak'])} peak to "
        f"load); the ANN index {_b(mem['index'])}; the item table {_b(mem['table'])} float32 (d=64).",
        f"* **Disk**: store {_b(mem['store'])} + text vectors {_b(mem['text_f32'])} (float32; "
        f"{_b(mem['text_f16'])} as float16) + model item table {_b(mem['table'])} + index "
        f"{_b(mem['index'])} ≈ **{_b(disk)}**.",
        f"* **Machines**: with a 24 h budget per job, the stages over it need that many times the cores "
        f"(sharded by `--nproc`, or GPUs, *assumption*: linear speed-up): encoding "
        f"{math.ceil(plan['encode_long'] / 86_400)}× this machine, exact batch scoring "
        f"{math.ceil(plan['score_id'] / 86_400):,}×, one epoch {math.ceil(plan['epoch_id'] / 86_400)}× "
        "(and training runs several epochs).",
        f"* **Replicas**: ⌈R / {srv['rate']}⌉ 2-core replicas for R requests/s (see below).",
    ]
    return "\n".join(lines)


# ====================================================================== driver
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", default="import,train,encode,index,adamw")
    ap.add_argument("--cache", type=Path, default=HERE / ".cache" / "scaling.jsonl")
    ap.add_argument("--small", action="store_true", help="tiny sizes: a check that the script runs")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="print the page; write no document")
    ap.add_argument("--point", help=argparse.SUPPRESS)
    ap.add_argument("--load-dataset", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.load_dataset:
        print(json.dumps(load_dataset(Path(args.load_dataset))))
        return 0
    if args.point:
        spec = json.loads(args.point)
        print(json.dumps(run_point(spec["stage"], spec["point"], spec["small"])))
        return 0

    args.cache.parent.mkdir(parents=True, exist_ok=True)
    plan = SMALL if args.small else POINTS
    if not args.report_only:
        done = {r["key"] for r in read_cached(args.cache)}
        for stage in args.stages.split(","):
            for p in plan[stage]:
                key = key_of(stage, p)
                if key in done:
                    continue
                print(f"[{time.strftime('%H:%M:%S')}] {key} ...", flush=True)
                load0 = os.getloadavg()
                t = time.perf_counter()
                out = subprocess.run([sys.executable, __file__, "--point",
                                      json.dumps({"stage": stage, "point": p, "small": args.small})],
                                     capture_output=True, text=True)
                if out.returncode != 0:
                    print(out.stderr[-4000:], file=sys.stderr)
                    return out.returncode
                res = json.loads(out.stdout.strip().splitlines()[-1])
                row = {"key": key, "stage": stage, "point": p, "result": res, "load": list(os.getloadavg()),
                       "load_before": list(load0), "wall_s": time.perf_counter() - t,
                       "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
                append_cached(args.cache, row)
                print(f"   {time.perf_counter() - t:.0f} s: {json.dumps(res)[:300]}", flush=True)
    cached = read_cached(args.cache)
    section, page = report(cached, args.small)
    if args.no_write:
        print(section)
        print(page)
        return 0
    print(f"wrote {write_section('scaling', section)}")
    SCALING_DOC.write_text(page)
    print(f"wrote {SCALING_DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
