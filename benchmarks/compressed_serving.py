"""SeqRec served in float, int8 and ONNX on MovieLens-100K: accuracy change, size on disk, serving latency.

One SeqRec (the ``seqrec`` benchmark's settings, id items, every window; see ``benchmarks/seqrec.py``) is
trained on the leave-one-out training split (early stopping on validation) and saved once to ``--model-dir``
(reused when present), and its int8 and ONNX forms are written into that folder with
:func:`lmrec.models.seqrec.inference.export_forms` (what ``lmrec seqrec export --int8 --onnx`` does).
Then, for each runtime, loaded as the service loads it (:func:`lmrec.models.serving_forms.load_for_serving`):

* NDCG@10 / HR@10 on the test split, full ranking, history excluded, and the change against float; the mean
  overlap of each test user's top 10 with float's;
* the size on disk of the weights each runtime reads (float: ``seqrec.pt``, the whole network; int8 and ONNX:
  the encoder body they replace, beside the float item table that stays in ``seqrec.pt``);
* in-process latency of the engine's recommend path (``Engine.user_recommendations``: history overlay,
  scoring, exclusion of seen items, top-k, titles), one request at a time after warm-up, the three runtimes
  interleaved request by request so that a change of machine load hits them alike;
* with ``--http-seconds`` > 0: ``lmrec serve`` in its own process per runtime and user recommendations at a
  fixed rate from a second process (the open-loop asyncio client of ``benchmarks/serve_load.py``).

Writes the ``compressed-serving`` section of ``docs/benchmarks.md``.

    python benchmarks/compressed_serving.py                       # train (or reuse), measure, write
    python benchmarks/compressed_serving.py --requests 500 --http-seconds 0 --no-write
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[1]
RUNTIMES = ("torch", "int8", "onnx")


# ---------------------------------------------------------------------- the model
def trained_folder(folder: Path, seed: int) -> tuple[Path, float | None]:
    """The SeqRec folder (trained on ML-100K leave-one-out train when absent); returns it and the seconds the
    fit took (``None`` when reused)."""
    from seqrec import SEQREC_BASE, VARIANTS

    from lmrec.data.loaders import load_dataset
    from lmrec.data.splits import leave_one_out
    from lmrec.models import create_model

    if (folder / "model.json").is_file():
        return folder, None
    ds, _ = load_dataset("movielens-100k")
    split = leave_one_out(ds)
    settings = {**SEQREC_BASE, **VARIANTS["seqrec-id-all"], "seed": seed}
    t0 = time.perf_counter()
    model = create_model("seqrec", **settings).fit(split.train, split.valid)
    seconds = time.perf_counter() - t0
    model.save(folder)
    return folder, seconds


def file_sizes(folder: Path) -> dict[str, int]:
    """Bytes each runtime reads: float the whole network; int8/ONNX their encoder body (plus, for reference,
    the float body alone as ``torch.save`` writes it)."""
    import torch

    from lmrec.models import load_model
    from lmrec.models.seqrec.inference import FORM_FILES, float_body

    model = load_model(folder)
    buf = io.BytesIO()
    torch.save(float_body(model.network_).state_dict(), buf)  # type: ignore[attr-defined]
    return {"torch": (folder / "seqrec.pt").stat().st_size, "torch_body": len(buf.getvalue()),
            **{rt: (folder / f).stat().st_size for rt, f in FORM_FILES.items()}}


# ---------------------------------------------------------------------- accuracy
def accuracy(folder: Path) -> dict[str, dict[str, float]]:
    from lmrec.data.loaders import load_dataset
    from lmrec.data.ranking import full_ranking_metrics
    from lmrec.data.splits import leave_one_out
    from lmrec.models.serving_forms import load_for_serving

    ds, _ = load_dataset("movielens-100k")
    test = leave_one_out(ds).test
    users = np.asarray(test.users, dtype=np.int64)
    out: dict[str, dict[str, float]] = {}
    tops: dict[str, np.ndarray] = {}
    for rt in RUNTIMES:
        model = load_for_serving(folder, rt)
        t0 = time.perf_counter()
        m = full_ranking_metrics(lambda r, model=model: model.score(test.history.take(r), users[r]),
                                 test.history, test.targets, k=10)
        seconds = time.perf_counter() - t0
        idx, _ = model.recommend_indices(test.history, users, 10, exclude_seen=True)
        tops[rt] = idx
        out[rt] = {"ndcg@10": m["ndcg@10"], "hr@10": m["hr@10"], "score_seconds": seconds}
        print(rt, out[rt], flush=True)
    for rt in RUNTIMES:
        same = [len(set(a) & set(b)) / 10 for a, b in zip(tops[rt], tops["torch"], strict=True)]
        out[rt]["top10_overlap"] = float(np.mean(same))
    return out


# ---------------------------------------------------------------------- in-process latency
def engine_latency(folder: Path, n_requests: int, seed: int) -> dict[str, dict[str, float]]:
    """p50/p99/mean ms of ``Engine.user_recommendations(k=10)`` per runtime, interleaved, after every user's
    history is in the engine's memory (one unmeasured request each); and of ``model.score`` alone for the same
    history (the part a runtime changes)."""
    from lmrec.data.loaders import load_dataset
    from lmrec.serving import ServingSettings
    from lmrec.serving.engine import Engine, RecRequest
    from lmrec.store import Store

    ds, _ = load_dataset("movielens-100k")
    users = list(ds.user_map.raw_ids[1:])
    items = ds.items.select("item_id", "title", "description", "categories")
    rng = np.random.default_rng(seed)
    engines = {}
    with tempfile.TemporaryDirectory(prefix="lmrec-compressed-") as tmp:
        for rt in RUNTIMES:
            store = Store(Path(tmp) / f"{rt}.duckdb")
            store.upsert_items(items)
            settings = ServingSettings(model_dir=folder, store=str(store.path), runtime=rt, dev_mode=True,
                                       text_encoder="none")
            engines[rt] = Engine.open(settings, store, encoder=None)
        req = RecRequest(k=10)
        for user in users:  # warm: every history loaded, every code path run
            for eng in engines.values():
                eng.user_recommendations(user, req)
        model = engines["torch"].bundle.model
        assert model.user_map is not None
        times: dict[str, list[float]] = {rt: [] for rt in RUNTIMES}
        score_times: dict[str, list[float]] = {rt: [] for rt in RUNTIMES}
        order = list(RUNTIMES)
        for user in rng.choice(users, size=n_requests):
            uidx = np.array([model.user_map.get(str(user))])
            hist = model.histories_for(uidx)
            rng.shuffle(order)  # no runtime always runs first (or right after another warmed the caches)
            for rt in order:
                t0 = time.perf_counter()
                engines[rt].user_recommendations(str(user), req)
                t1 = time.perf_counter()
                engines[rt].bundle.model.score(hist, uidx)
                t2 = time.perf_counter()
                times[rt].append((t1 - t0) * 1000)
                score_times[rt].append((t2 - t1) * 1000)
        for eng in engines.values():
            eng.close()
            eng.store.close()
    return {rt: {"p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99)),
                 "mean_ms": float(np.mean(t)), "requests": len(t),
                 "score_p50_ms": float(np.percentile(score_times[rt], 50)),
                 "score_p99_ms": float(np.percentile(score_times[rt], 99))} for rt, t in times.items()}


# ---------------------------------------------------------------------- HTTP at a fixed rate
async def _drive(url: str, paths: list[str], rate: float) -> dict[str, object]:
    from urllib.parse import urlsplit

    from serve_load import _Closed, _Pool

    parts = urlsplit(url)
    pool = _Pool(parts.hostname or "127.0.0.1", parts.port or 80)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    start = time.perf_counter() + 0.5

    async def one(i: int) -> None:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        try:
            outcome = str(await pool.request("GET", paths[i]))
        except (OSError, asyncio.IncompleteReadError, ValueError, _Closed) as exc:
            outcome = type(exc).__name__
        latencies.append((time.perf_counter() - due) * 1000)  # from the scheduled time: queueing counts
        if outcome != "200":
            errors[outcome] = errors.get(outcome, 0) + 1

    await asyncio.gather(*(one(i) for i in range(len(paths))))
    wall = time.perf_counter() - start
    pool.close()
    ms = np.array(latencies)
    return {"requests": len(paths), "errors": errors, "throughput": len(paths) / wall,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max())}


def loadgen_main(argv: list[str]) -> None:
    url, rate, seconds, seed, users_file = argv
    users = json.loads(Path(users_file).read_text())
    rng = np.random.default_rng(int(seed))
    # "all": every user once, in random order (the warm-up: every history in the server's memory)
    n = len(users) if seconds == "all" else int(float(rate) * float(seconds))
    chosen = rng.permutation(users) if seconds == "all" else rng.choice(users, size=n)
    paths = [f"/v1/users/{u}/recommendations?k=10" for u in chosen]
    print(json.dumps(asyncio.run(_drive(url, paths, float(rate)))))


def http_latency(folder: Path, rate: float, seconds: float, seed: int) -> dict[str, dict]:
    from serve_load import _free_port, _wait_ready

    from lmrec.data.loaders import load_dataset
    from lmrec.store import Store

    ds, _ = load_dataset("movielens-100k")
    out = {}
    with tempfile.TemporaryDirectory(prefix="lmrec-compressed-http-") as tmp:
        users_file = Path(tmp) / "users.json"
        users_file.write_text(json.dumps(list(ds.user_map.raw_ids[1:])))
        for rt in RUNTIMES:
            db = Path(tmp) / f"{rt}.duckdb"
            with Store(db) as st:
                st.upsert_items(ds.items.select("item_id", "title", "description", "categories"))
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            env = {**os.environ, "LMREC_TEXT_ENCODER": "none"}
            server = subprocess.Popen(
                [sys.executable, "-c", "from lmrec.entry import main; main()", "serve", str(folder),
                 "--store", str(db), "--port", str(port), "--dev", "--log-level", "warning", "--runtime", rt],
                env=env, cwd=REPO)
            try:
                _wait_ready(url, server)
                for phase, secs in (("warmup", "all"), ("measure", str(seconds))):
                    res = subprocess.run([sys.executable, __file__, "--_loadgen", url, str(rate), secs,
                                          str(seed if phase == "measure" else seed + 1000), str(users_file)],
                                         capture_output=True, text=True, check=True)
                out[rt] = json.loads(res.stdout.strip().splitlines()[-1])
                print(rt, out[rt], flush=True)
            finally:
                server.terminate()
                server.wait(timeout=30)
    return out


# ---------------------------------------------------------------------- report
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "lmrec-compressed-ml100k",
                    help="The SeqRec folder (trained here when absent, reused otherwise).")
    ap.add_argument("--requests", type=int, default=2000, help="Measured engine requests per runtime.")
    ap.add_argument("--threads", type=int, default=1, help="torch (and onnxruntime) threads.")
    ap.add_argument("--http-seconds", type=float, default=30.0,
                    help="Seconds of HTTP load per runtime (0: none).")
    ap.add_argument("--http-rate", type=float, default=100.0, help="HTTP requests per second.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    import torch

    from lmrec.models import load_model
    from lmrec.models.seqrec.inference import export_forms

    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the serving processes started below
    torch.set_num_threads(args.threads)
    wall0 = time.perf_counter()
    load_start = os.getloadavg()[0]
    folder, fit_seconds = trained_folder(args.model_dir, args.seed)
    t0 = time.perf_counter()
    export_forms(load_model(folder), folder, ["int8", "onnx"], runtime="torch")  # type: ignore[arg-type]
    export_seconds = time.perf_counter() - t0
    sizes = file_sizes(folder)
    acc = accuracy(folder)
    lat = engine_latency(folder, args.requests, args.seed)
    print(json.dumps(lat), flush=True)
    http = (http_latency(folder, args.http_rate, args.http_seconds, args.seed)
            if args.http_seconds > 0 else {})
    wall = time.perf_counter() - wall0
    load, load5, cores = os.getloadavg()[0], os.getloadavg()[1], os.cpu_count() or 1

    def change(rt: str, key: str) -> str:
        base = acc["torch"][key]
        return "" if rt == "torch" else f" ({(acc[rt][key] - base) / max(base, 1e-12) * 100:+.1f} %)"

    names = {"torch": "torch fp32", "int8": "int8 (dynamic)", "onnx": "ONNX (onnxruntime)"}
    files = {"torch": "seqrec.pt (whole network)", "int8": "model.int8.pt (encoder body)",
             "onnx": "model.onnx (encoder body)"}
    rows = []
    for rt in RUNTIMES:
        a, e = acc[rt], lat[rt]
        h = http.get(rt)
        http_cells = (f" | {h['p50_ms']:.1f} | {h['p99_ms']:.1f} | {sum(h['errors'].values())}" if h
                      else "" if not http else " | – | – | –")
        rows.append(f"| {names[rt]} | {a['ndcg@10']:.4f}{change(rt, 'ndcg@10')} | {a['hr@10']:.4f}"
                    f"{change(rt, 'hr@10')} | {a['top10_overlap']:.3f} | "
                    f"{files[rt]}: {sizes[rt] / 1024:.0f} KiB | "
                    f"{e['score_p50_ms']:.2f} | {e['score_p99_ms']:.2f} | "
                    f"{e['p50_ms']:.2f} | {e['p99_ms']:.2f} | {e['mean_ms']:.2f}{http_cells} |")
    http_head = " HTTP p50 ms | HTTP p99 ms | HTTP errors |" if http else ""
    http_rule = "---|---|---|" if http else ""
    tr = load_model(folder).train_result_  # type: ignore[attr-defined]
    trained = (f"trained here in {fit_seconds:.0f} s" if fit_seconds is not None
               else f"trained by an earlier run of this command into `{args.model_dir}` and reused"
               + (f" (training: {tr.seconds:.0f} s, {tr.epochs_run} epochs, best at epoch {tr.best_epoch}, "
                  f"validation NDCG@10 {tr.best_metric:.4f})" if tr is not None else ""))
    body = "\n".join([
        "## Compressed SeqRec in serving (MovieLens-100K, leave-one-out)",
        "",
        "One SeqRec with the `seqrec` benchmark's settings (id items, every window, max_len 50, d=64, "
        "2 layers, ≤ 40 epochs with early stopping on validation NDCG@10, "
        f"seed {args.seed}; {trained}), its int8 and ONNX forms written into the model folder in "
        f"{export_seconds:.1f} s, each loaded as `lmrec serve` loads it. Test NDCG@10/HR@10: full ranking of "
        "1,682 items, history excluded, all 943 users; the change is relative to fp32. Top-10 overlap: mean "
        "share of each user's top 10 that fp32 also ranks there. "
        "Size: the file the runtime reads (int8/ONNX replace the Transformer blocks; the float item table "
        f"stays in seqrec.pt; the fp32 body alone is {sizes['torch_body'] / 1024:.0f} KiB). "
        "Engine latency: `Engine.user_recommendations(k=10)` in-process (history from memory, scoring, "
        "seen items excluded, top 10, titles) for a random known user, "
        f"{args.requests} requests per runtime after one unmeasured request for each of the 943 users, the "
        "three runtimes interleaved request by request; score: `model.score` alone on the same history "
        f"(the part the runtime changes; 1,683 scores). {args.threads} torch/onnxruntime thread(s)."
        + (" HTTP: `lmrec serve --runtime R` in its own process, user recommendations at "
           f"{args.http_rate:.0f} requests/s for {args.http_seconds:.0f} s (after a warm-up of one request "
           "per user at that rate) from a "
           "second process, open loop, latency from the scheduled send time; the runtimes run one after the "
           "other here, so a change of machine load shows in their tails." if http else ""),
        "",
        "| runtime | NDCG@10 | HR@10 | top-10 overlap | size on disk | score p50 ms | score p99 ms | "
        "engine p50 ms | engine p99 ms | engine mean ms |" + http_head,
        "|---|---|---|---|---|---|---|---|---|---|" + http_rule,
        *rows,
        "",
        f"Wall time {wall / 60:.1f} min. Load average on {cores} cores: 1-minute {load_start:.1f} at the "
        f"start and {load:.1f} at the end, 5-minute {load5:.1f} at the end"
        + (" (above the core count: other work competed, so the tails are upper bounds)."
           if max(load_start, load, load5) > cores else "."),
    ])
    print(body)
    if not args.no_write:
        from _report import write_section

        write_section("compressed-serving", body)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_loadgen":
        loadgen_main(sys.argv[2:])
    else:
        main()
