"""Online experiments inside the service: which model version answers a user, and the record of each answer.

The running experiments (:mod:`lmrec.store.experiments`) are held in memory; a recommendation for a known
user asks :meth:`ExperimentRuntime.route` for the user's arm (:meth:`lmrec.evaluation.abtest.ExperimentSpec.
assign`: the first running experiment, oldest first, whose shares cover the user), is scored by that arm's
model version, and its answer (list id, arm, version, user, time, items) is queued and written to the store
in batches by a background thread (at most every ``flush_s`` seconds, and before any report is read). Every
arm's version is loaded when the experiment is created or the service starts, never at a request; a version
is any model folder of the registry, and the active model's bundle is shared when an arm names it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmrec.evaluation.abtest import Arm, ExperimentSpec, experiment_report
from lmrec.models.base import MODEL_FILE
from lmrec.serving.bundle import ModelBundle
from lmrec.serving.errors import NotFoundError
from lmrec.store.duckdb_store import Store
from lmrec.store.experiments import ExperimentTable

log = logging.getLogger("lmrec.serving")


@dataclass(frozen=True)
class Assignment:
    """A user's place in a running experiment, and the bundle that answers them."""

    experiment: ExperimentSpec
    arm: Arm
    bundle: ModelBundle


class ExperimentRuntime:
    """Running experiments, the bundles of their arms, and the queue of answers to record.

    Parameters
    ----------
    store:
        The service's store.
    load:
        Loads a model version of the registry into a bundle (``Engine.load_version``).
    active:
        The active bundle now (arms naming its version share it).
    flush_s:
        Longest time an answer waits in memory before it is written.
    """

    def __init__(self, store: Store, load: Callable[[str], ModelBundle], active: Callable[[], ModelBundle],
                 flush_s: float = 0.5) -> None:
        self.table = ExperimentTable(store)
        self._load = load
        self._active = active
        self._lock = threading.Lock()  # the running list and the bundles
        self._queue_lock = threading.Lock()
        self._running: tuple[ExperimentSpec, ...] = ()
        self._bundles: dict[str, ModelBundle] = {}
        self._pending: list[tuple[str, str, str, str, str, float, list[str]]] = []
        self._flush_s = flush_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="lmrec-experiment-answers", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ definitions
    def refresh(self) -> None:
        """Re-read the running experiments and load the bundles their arms need (others are dropped). An
        experiment whose version cannot be loaded any more is skipped with an error in the log."""
        specs = []
        for record in self.table.list():
            if record["stopped_at"] is None:
                spec = ExperimentSpec.from_dict(record)
                try:
                    for a in spec.arms:
                        self.bundle(a.version)
                except Exception as exc:  # noqa: BLE001 - a broken folder must not stop the service
                    log.error("experiment %s is not served: %s", spec.name, exc)
                    continue
                specs.append(spec)
        with self._lock:
            self._running = tuple(specs)
            wanted = {a.version for s in specs for a in s.arms}
            self._bundles = {v: b for v, b in self._bundles.items() if v in wanted}

    def bundle(self, version: str) -> ModelBundle:
        """The bundle of a model version: the active one when it is that version, else loaded once."""
        active = self._active()
        if version == active.version:
            return active
        with self._lock:
            b = self._bundles.get(version)
        if b is None:
            b = self._load(version)
            with self._lock:
                b = self._bundles.setdefault(version, b)
        return b

    def bundles(self) -> list[ModelBundle]:
        """The bundles loaded for arms besides the active one (catalogue updates and erasures reach them)."""
        active = self._active()
        with self._lock:
            return [b for b in self._bundles.values() if b is not active]

    def create(self, spec: ExperimentSpec) -> dict[str, Any]:
        """Start an experiment: every arm's version is loaded first (an unknown or unservable version fails
        here), then the definition is stored and users are routed from the next request."""
        if self.table.get(spec.name) is not None:
            raise ValueError(f"an experiment named {spec.name!r} exists; choose another name")
        for a in spec.arms:
            self.bundle(a.version)
        record = self.table.create({**spec.to_dict(), "arms": [a.__dict__ for a in spec.arms]})
        self.refresh()
        log.info("experiment %s started: %s", spec.name,
                 ", ".join(f"{a.name}={a.version} ({a.share:.0%})" for a in spec.arms))
        return record

    def stop(self, name: str) -> dict[str, Any]:
        record = self.table.stop(name)
        if record is None:
            if self.table.get(name) is None:
                raise NotFoundError(f"no experiment named {name!r}")
            raise NotFoundError(f"experiment {name!r} is already stopped")
        self.refresh()
        log.info("experiment %s stopped", name)
        return record

    def running(self) -> tuple[ExperimentSpec, ...]:
        return self._running

    # ------------------------------------------------------------------ routing and recording
    def route(self, user_id: str) -> Assignment | None:
        """The user's arm in the first running experiment that covers them, or ``None``."""
        for spec in self._running:
            arm = spec.assign(user_id)
            if arm is not None:
                return Assignment(spec, arm, self.bundle(arm.version))
        return None

    def record(self, list_id: str, a: Assignment, user_id: str, items: list[str]) -> None:
        """Queue one answer for the store."""
        with self._queue_lock:
            self._pending.append((list_id, a.experiment.name, a.arm.name, a.bundle.version, user_id,
                                  time.time(), items))
            if len(self._pending) >= 1000:
                self._wake.set()

    def flush(self) -> None:
        """Write every queued answer now."""
        with self._queue_lock:
            rows, self._pending = self._pending, []
        if rows:
            try:
                self.table.record(rows)
            except Exception:
                with self._queue_lock:  # kept for the next try
                    self._pending[:0] = rows
                raise

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._flush_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - logged and retried; the thread must live on
                log.exception("recording experiment answers failed; retrying")

    def forget_user(self, user_id: str) -> None:
        """Drop a user's queued answers (erasure; their stored ones go with the store's rows)."""
        with self._queue_lock:
            self._pending = [r for r in self._pending if r[4] != user_id]

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self.flush()

    # ------------------------------------------------------------------ reading
    def report(self, name: str) -> dict[str, Any]:
        """The experiment's definition, state and per-arm metrics with intervals and tests."""
        self.flush()
        record = self.table.get(name)
        if record is None:
            raise NotFoundError(f"no experiment named {name!r}")
        return experiment_report(record, self.table.user_outcomes(name, int(record["window_s"])))

    def reports(self) -> list[dict[str, Any]]:
        self.flush()
        return [experiment_report(r, self.table.user_outcomes(r["name"], int(r["window_s"])))
                for r in self.table.list()]


def version_info(path: Path) -> dict[str, Any]:
    """What a model folder says about itself: model name, when it was saved, and its offline figures (the
    validation metrics and fitting time of ``training.json``; a ``metrics.json`` of flat numbers, if any)."""
    model_file = path / MODEL_FILE
    try:
        saved = model_file.stat().st_mtime
    except OSError:
        saved = None
    return dict(_version_info(str(path), saved))


@functools.lru_cache(maxsize=256)
def _version_info(folder: str, saved: float | None) -> dict[str, Any]:
    """:func:`version_info` of one state of a folder (``model.json`` holds every id: read it once)."""
    path = Path(folder)
    info: dict[str, Any] = {"version": path.name, "model": None, "saved_at": saved, "offline": {}}
    with contextlib.suppress(OSError, ValueError):
        info["model"] = json.loads((path / MODEL_FILE).read_text()).get("model")
    offline: dict[str, Any] = {}
    for name in ("training.json", "metrics.json"):
        try:
            data = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        if name == "training.json":
            for k, v in (data.get("validation") or {}).items():
                if isinstance(v, (int, float)):
                    offline[k] = v
            for k in ("fit_seconds", "dataset", "split"):
                if data.get(k) is not None:
                    offline[k] = data[k]
        else:
            offline.update({k: v for k, v in data.items() if isinstance(v, (int, float, str))})
    info["offline"] = offline
    return info
