"""Kill -9 drill: does an acknowledged event survive a crash, and does a resend add no duplicate?

Per trial: a fresh copy of a MovieLens-100K store (item-kNN model), ``lmrec serve`` in its own process with
default settings, ``--clients`` concurrent clients streaming batches of events with unique ids, ``kill -9`` at
a random moment (``--kill-min``..``--kill-max`` s after streaming began), a restart on the same store, every
event sent before the kill (acknowledged or not) sent again, a clean stop, and then the store is checked:

* lost: acknowledged events (HTTP 200 before the kill) missing after the restart (before the resend);
* duplicates: event ids stored more than once after the resend;
* missing after resend: events sent but not stored even after the resend.

    python benchmarks/kill_drill.py                    # 20 trials; writes its section of docs/benchmarks.md
    python benchmarks/kill_drill.py --trials 2 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from serve_load import _free_port, _wait_ready  # noqa: E402


def build(folder: Path) -> Path:
    """The base store (MovieLens-100K) and an item-kNN model trained on it."""
    from lmrec.data.loaders import open_source
    from lmrec.models import create_model
    from lmrec.store import Store

    with Store(folder / "base.duckdb") as st:
        st.import_source(open_source("movielens-100k"))
        ds = st.to_dataset()
        st.execute("CHECKPOINT")
    path = folder / "models" / "v1"
    create_model("itemknn").fit(ds).save(path)
    return path


def _serve(model: Path, store: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "LMREC_TEXT_ENCODER": "none"}
    for k in [k for k in env if k.startswith("LMREC_") and k != "LMREC_TEXT_ENCODER"]:
        env.pop(k)  # default settings
    cmd = [sys.executable, "-c", "from lmrec.entry import main; main()", "serve", str(model),
           "--store", str(store), "--dev",
           "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(cmd, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115


def _client(url: str, trial: int, cid: int, batch: int, sent: list[str], acked: list[str],
            stop: threading.Event, rng: np.random.Generator) -> None:
    import httpx

    seq = 0
    with httpx.Client(base_url=url, timeout=10) as c:
        while not stop.is_set():
            ids = [f"t{trial}-c{cid}-{seq + i}" for i in range(batch)]
            seq += batch
            events = [{"event_id": e, "user_id": str(int(rng.integers(1, 944))),
                       "item_id": str(int(rng.integers(1, 1683))), "event_type": "view"} for e in ids]
            sent.extend(ids)
            try:
                r = c.post("/v1/events", json={"events": events})
            except httpx.HTTPError:
                return  # the server is gone
            if r.status_code == 200:
                acked.extend(ids)


def _stored(store: Path, ids: list[str]) -> tuple[set[str], int]:
    """(which of ``ids`` are stored, how many ids are stored more than once) — read after the server stops."""
    import duckdb
    import pyarrow as pa

    con = duckdb.connect(str(store), read_only=True)
    try:
        con.register("wanted", pa.table({"event_id": ids}))
        found = {r[0] for r in con.execute(
            "SELECT DISTINCT e.event_id FROM events e JOIN wanted USING (event_id)").fetchall()}
        dups = con.execute("SELECT count(*) FROM (SELECT event_id FROM events GROUP BY event_id "
                           "HAVING count(*) > 1)").fetchall()[0][0]
    finally:
        con.close()
    return found, int(dups)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def trial(i: int, model: Path, base: Path, work: Path, clients: int, batch: int, kill_at: float,
          rng: np.random.Generator) -> dict[str, object]:
    import httpx

    store = work / f"trial{i}.duckdb"
    shutil.copy(base, store)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / f"trial{i}.log"
    proc = _serve(model, store, port, log)
    _wait_ready(url, proc, timeout=300)
    sent: list[list[str]] = [[] for _ in range(clients)]
    acked: list[list[str]] = [[] for _ in range(clients)]
    stop = threading.Event()
    threads = [threading.Thread(target=_client, args=(url, i, c, batch, sent[c], acked[c], stop,
                                                      np.random.default_rng(rng.integers(2**32))))
               for c in range(clients)]
    for t in threads:
        t.start()
    time.sleep(kill_at)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    all_sent = [e for s in sent for e in s]
    all_acked = [e for a in acked for e in a]

    # Restart on the same store; the recovered store is what the new process sees.
    proc = _serve(model, store, port, log)
    _wait_ready(url, proc, timeout=300)
    _stop(proc)
    found, _ = _stored(store, all_acked)
    lost = len(set(all_acked) - found)

    # Resend everything sent before the kill (a client that got no answer retries), then check again.
    proc = _serve(model, store, port, log)
    _wait_ready(url, proc, timeout=300)
    accepted = duplicates = 0
    with httpx.Client(base_url=url, timeout=30) as c:
        for start in range(0, len(all_sent), 500):
            ids = all_sent[start:start + 500]
            r = c.post("/v1/events", json={"events": [
                {"event_id": e, "user_id": "resend", "item_id": "1", "event_type": "view"} for e in ids]})
            r.raise_for_status()
            accepted += r.json()["accepted"]
            duplicates += r.json()["duplicates"]
    _stop(proc)
    found_after, dup_ids = _stored(store, all_sent)
    store.unlink(missing_ok=True)
    Path(str(store) + ".wal").unlink(missing_ok=True)
    return {"trial": i, "kill_at_s": round(kill_at, 2), "sent": len(all_sent), "acknowledged": len(all_acked),
            "lost": lost, "resend_accepted": accepted, "resend_duplicates": duplicates,
            "missing_after_resend": len(set(all_sent) - found_after), "duplicate_ids": dup_ids}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--batch", type=int, default=10, help="Events per request.")
    ap.add_argument("--kill-min", type=float, default=0.3)
    ap.add_argument("--kill-max", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="lmrec-drill-") as tmp:
        work = Path(tmp)
        model = build(work)
        rows = []
        for i in range(args.trials):
            row = trial(i, model, work / "base.duckdb", work, args.clients, args.batch,
                        float(rng.uniform(args.kill_min, args.kill_max)), rng)
            rows.append(row)
            print(json.dumps(row), flush=True)
    load = os.getloadavg()
    total = {k: sum(int(r[k]) for r in rows) for k in ("sent", "acknowledged", "lost", "missing_after_resend",
                                                       "duplicate_ids")}
    print(json.dumps({"total": total, "loadavg": load}))
    if args.no_write:
        return
    from _report import write_section

    lines = ["## Kill -9 drill (acknowledged means committed)", "",
             f"MovieLens-100K store, item-kNN model, `lmrec serve --dev` with default settings (durable "
             f"acknowledgement, group commit); {args.clients} clients sending {args.batch} events per "
             f"request; `kill -9` at a random moment {args.kill_min}–{args.kill_max} s after streaming "
             "began; restart; "
             f"resend of every event sent; seed {args.seed}. Load average at the end: "
             f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}.", "",
             "| trials | events sent | acknowledged | acknowledged lost | missing after resend | "
             "duplicate ids |", "| --- | --- | --- | --- | --- | --- |",
             f"| {len(rows)} | {total['sent']:,} | {total['acknowledged']:,} | {total['lost']} | "
             f"{total['missing_after_resend']} | {total['duplicate_ids']} |", "",
             "Per trial (kill time, acknowledged, lost): " + "; ".join(
                 f"{r['kill_at_s']} s {r['acknowledged']:,} {r['lost']}" for r in rows) + "."]
    write_section("kill-drill", "\n".join(lines))


if __name__ == "__main__":
    main()
