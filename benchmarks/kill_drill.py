"""Kill -9 drill: does an acknowledged event survive a crash, and does a resend add no duplicate?

Per trial: a fresh copy of a MovieLens-100K store (item-kNN model), ``lmrec serve`` in its own process with
default settings, ``--clients`` concurrent clients streaming batches of events with unique ids, ``kill -9`` at
a random moment (``--kill-min``..``--kill-max`` s after streaming began), a restart on the same store, every
event sent before the kill (acknowledged or not) sent again, a clean stop, and then the store is checked:

* lost: acknowledged events (HTTP 200 before the kill) missing after the restart (before the resend);
* duplicates: event ids stored more than once after the resend;
* missing after resend: events sent but not stored even after the resend.

With ``--store postgresql`` (a throw-away durable PostgreSQL server, ``fsync=on``; or ``--store
postgresql://…`` naming a server, on which the drill creates its databases) each trial runs **two** replicas
on one database, clients spread over both, and ``kill -9`` hits one of them; the killed replica is restarted
and the checks read the database.

    python benchmarks/kill_drill.py                    # 20 trials; writes its section of docs/benchmarks.md
    python benchmarks/kill_drill.py --trials 2 --no-write
    python benchmarks/kill_drill.py --store postgresql --trials 10
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
sys.path.insert(0, str(REPO))

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


def _serve(model: Path, store: Path | str, port: int, log: Path) -> subprocess.Popen:
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
    accepted, duplicates = _resend(url, all_sent, timeout=30)
    _stop(proc)
    found_after, dup_ids = _stored(store, all_sent)
    store.unlink(missing_ok=True)
    Path(str(store) + ".wal").unlink(missing_ok=True)
    return {"trial": i, "kill_at_s": round(kill_at, 2), "sent": len(all_sent), "acknowledged": len(all_acked),
            "lost": lost, "resend_accepted": accepted, "resend_duplicates": duplicates,
            "missing_after_resend": len(set(all_sent) - found_after), "duplicate_ids": dup_ids}


# ---------------------------------------------------------------------- PostgreSQL: two replicas, one killed
def build_pg(work: Path, server_url: str) -> tuple[Path, str]:
    """The base data in a PostgreSQL database (a template for each trial's database) and the model."""
    import psycopg
    from tests._postgres import create_database

    from lmrec.store import Store

    model = build(work)
    base_url = create_database(server_url, "drill_base")
    with Store(work / "base.duckdb") as src, Store(base_url) as dst:
        dst.upsert_items(src.items())
        dst.transaction(lambda: dst._insert_events(src.events()))  # noqa: SLF001 - a bulk copy
        dst.set_meta("dataset", src.dataset_name())
    with psycopg.connect(server_url, autocommit=True) as con:  # no session may stay on a template
        con.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                    "AND pid <> pg_backend_pid()", [base_url.rsplit("/", 1)[1]])
    return model, base_url.rsplit("/", 1)[1]


def _stored_pg(url: str, ids: list[str]) -> tuple[set[str], int]:
    import psycopg

    with psycopg.connect(url) as con:
        found = {r[0] for r in con.execute("SELECT event_id FROM events WHERE event_id = ANY(%s)", [ids])}
        dups = con.execute("SELECT count(*) FROM (SELECT event_id FROM events GROUP BY event_id "
                           "HAVING count(*) > 1) d").fetchone()
    return found, int(dups[0]) if dups else 0


def _resend(url: str, ids: list[str], timeout: float) -> tuple[int, int]:
    """Send every event id again (a client that got no answer retries), 500 a request; returns how many the
    service accepted as new and how many it answered as duplicates."""
    import httpx

    accepted = duplicates = 0
    with httpx.Client(base_url=url, timeout=timeout) as c:
        for start in range(0, len(ids), 500):
            r = c.post("/v1/events", json={"events": [
                {"event_id": e, "user_id": "resend", "item_id": "1", "event_type": "view"}
                for e in ids[start:start + 500]]})
            r.raise_for_status()
            accepted += r.json()["accepted"]
            duplicates += r.json()["duplicates"]
    return accepted, duplicates


def trial_pg(i: int, model: Path, server_url: str, template: str, work: Path, clients: int, batch: int,
             kill_at: float, rng: np.random.Generator) -> dict[str, object]:
    import psycopg

    name = f"drill_trial{i}"
    with psycopg.connect(server_url, autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name}")
        con.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    url = server_url.rsplit("/", 1)[0] + "/" + name
    ports = [_free_port(), _free_port()]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    logs = [work / f"trial{i}-{r}.log" for r in "ab"]
    procs = [_serve(model, url, p, log) for p, log in zip(ports, logs, strict=True)]
    for u, p, log in zip(urls, procs, logs, strict=True):
        try:
            _wait_ready(u, p, timeout=300)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; its log ({log}):\n{log.read_text()[-3000:]}") from None
    sent: list[list[str]] = [[] for _ in range(clients)]
    acked: list[list[str]] = [[] for _ in range(clients)]
    stop = threading.Event()
    threads = [threading.Thread(target=_client, args=(urls[c % 2], i, c, batch, sent[c], acked[c], stop,
                                                      np.random.default_rng(rng.integers(2**32))))
               for c in range(clients)]
    for t in threads:
        t.start()
    time.sleep(kill_at)
    procs[0].send_signal(signal.SIGKILL)  # replica A dies; replica B keeps serving its clients meanwhile
    procs[0].wait(timeout=30)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    all_sent = [e for s in sent for e in s]
    all_acked = [e for a in acked for e in a]
    acked_by_a = sum(len(acked[c]) for c in range(0, clients, 2))

    procs[0] = _serve(model, url, ports[0], logs[0])  # restart the killed replica on the same database
    _wait_ready(urls[0], procs[0], timeout=300)
    found, _ = _stored_pg(url, all_acked)
    lost = len(set(all_acked) - found)

    accepted, duplicates = _resend(urls[0], all_sent, timeout=60)  # every event sent, to the restarted one
    for p in procs:
        _stop(p)
    found_after, dup_ids = _stored_pg(url, all_sent)
    with psycopg.connect(server_url, autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name}")
    return {"trial": i, "kill_at_s": round(kill_at, 2), "sent": len(all_sent), "acknowledged": len(all_acked),
            "acknowledged_by_killed": acked_by_a, "lost": lost, "resend_accepted": accepted,
            "resend_duplicates": duplicates, "missing_after_resend": len(set(all_sent) - found_after),
            "duplicate_ids": dup_ids}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--batch", type=int, default=10, help="Events per request.")
    ap.add_argument("--kill-min", type=float, default=0.3)
    ap.add_argument("--kill-max", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--store", default="duckdb",
                    help="duckdb (a file, one replica), postgresql (a throw-away durable server, two "
                         "replicas) or a postgresql:// URL of a server to create the drill's databases on.")
    args = ap.parse_args()
    if args.store != "duckdb":
        return main_pg(args)
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


def main_pg(args: argparse.Namespace) -> None:
    from tests._postgres import TempPostgres

    rng = np.random.default_rng(args.seed)
    wall0 = time.perf_counter()
    server = TempPostgres(durable=True) if args.store == "postgresql" else None
    server_url = server.url if server is not None else args.store
    try:
        with tempfile.TemporaryDirectory(prefix="lmrec-drill-pg-") as tmp:
            work = Path(tmp)
            model, template = build_pg(work, server_url)
            rows = []
            for i in range(args.trials):
                row = trial_pg(i, model, server_url, template, work, args.clients, args.batch,
                               float(rng.uniform(args.kill_min, args.kill_max)), rng)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        if server is not None:
            server.stop()
    load, wall = os.getloadavg(), time.perf_counter() - wall0
    keys = ("sent", "acknowledged", "acknowledged_by_killed", "lost", "missing_after_resend", "duplicate_ids")
    total = {k: sum(int(r[k]) for r in rows) for k in keys}
    print(json.dumps({"total": total, "loadavg": load, "wall_s": wall}))
    if args.no_write:
        return
    from _report import write_section

    where = "a throw-away PostgreSQL 16 server started by the drill" if server is not None else "PostgreSQL"
    lines = ["## Kill -9 drill on PostgreSQL: one replica of two killed", "",
             f"MovieLens-100K in {where} (durable settings: `fsync=on`, `synchronous_commit=on`), item-kNN "
             "model; per trial a fresh database, **two** `lmrec serve --dev` replicas on it with default "
             f"settings; {args.clients} clients, half on each replica, sending {args.batch} events per "
             f"request; `kill -9` of replica A at a random moment {args.kill_min}–{args.kill_max} s after "
             "streaming began (replica B keeps serving); A restarted on the same database; every event sent "
             f"resent to A; seed {args.seed}. Command: `python benchmarks/kill_drill.py --store postgresql "
             f"--trials {args.trials}`. Load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
             f"wall time {wall:.0f} s.", "",
             "| trials | events sent | acknowledged | acknowledged by the killed replica | "
             "acknowledged lost | missing after resend | duplicate ids |",
             "| --- | --- | --- | --- | --- | --- | --- |",
             f"| {len(rows)} | {total['sent']:,} | {total['acknowledged']:,} | "
             f"{total['acknowledged_by_killed']:,} | {total['lost']} | {total['missing_after_resend']} | "
             f"{total['duplicate_ids']} |", "",
             "Per trial (kill time, acknowledged, lost): " + "; ".join(
                 f"{r['kill_at_s']} s {r['acknowledged']:,} {r['lost']}" for r in rows) + "."]
    write_section("kill-drill-postgresql", "\n".join(lines))


if __name__ == "__main__":
    main()
