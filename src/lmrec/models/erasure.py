"""Erasure in saved models: drop erased users from model folders, and mark what was trained on their events.

A model folder holds two kinds of user data: the user's id and training history (``model.json``,
``arrays.npz``, MultiTask's event arrays), which :func:`forget_in_folder` removes at once; and what the model
learned from the user's events (item similarities, network weights), which only retraining removes
(``lmrec models forget --retrain``). Until then the folder's ``privacy.json`` says how many erased users it
was trained on — never who.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lmrec.data.dataset import Dataset
from lmrec.models.base import ERASED_ID_PREFIX, MODEL_FILE, Recommender, create_model, load_model

PRIVACY_FILE = "privacy.json"


def model_folders(root: str | Path) -> list[Path]:
    """``root`` itself when it is a model folder, else every model folder directly under it."""
    root = Path(root)
    if (root / MODEL_FILE).is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / MODEL_FILE).is_file())


def privacy_record(path: str | Path) -> dict[str, Any]:
    """What ``privacy.json`` says of a model folder (empty when no erased user was ever trained on)."""
    f = Path(path) / PRIVACY_FILE
    return json.loads(f.read_text()) if f.is_file() else {}


def _write_record(path: Path, record: dict[str, Any]) -> None:
    tmp = path / f".{PRIVACY_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path / PRIVACY_FILE)


def forget_in_model(model: Recommender, path: str | Path, raw_ids: Iterable[str]) -> int:
    """Drop ``raw_ids`` from a loaded model and rewrite its folder; returns how many of them it knew."""
    ids = [str(r) for r in raw_ids]
    n = model.forget_users(ids)
    if n:
        path = Path(path)
        model.save(path)
        record = privacy_record(path)
        record["erased_users_trained_on"] = int(record.get("erased_users_trained_on", 0)) + n
        record["last_erasure"] = datetime.now(UTC).isoformat(timespec="seconds")
        record["retrain_needed"] = True
        record["note"] = ("ids and histories of erased users are removed; what the model learned from their "
                          "events stays until `lmrec models forget --retrain`")
        _write_record(path, record)
    return n


def forget_in_folder(path: str | Path, raw_ids: Iterable[str]) -> int:
    """:func:`forget_in_model` for a saved folder (loaded, patched, saved in place)."""
    ids = [str(r) for r in raw_ids]
    return forget_in_model(load_model(path), path, ids)


def mark_retrained(path: str | Path) -> None:
    """Record that a folder was retrained without the erased users' events."""
    path = Path(path)
    record = privacy_record(path)
    if record:
        record["retrain_needed"] = False
        record["retrained_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        record["note"] = "retrained on the store's events after the erasures counted here"
        _write_record(path, record)


def erased_in_folder(path: str | Path, is_erased: Callable[[str], bool]) -> int:
    """Drop from a saved folder every user ``is_erased`` says was erased (the store's keyed tombstones);
    returns how many."""
    meta = json.loads((Path(path) / MODEL_FILE).read_text())
    gone = [u for u in meta.get("user_ids", []) if not u.startswith(ERASED_ID_PREFIX) and is_erased(u)]
    return forget_in_folder(path, gone) if gone else 0


def retrain_folder(path: str | Path, dataset: Dataset) -> float:
    """Fit the folder's model again, same name and settings, on ``dataset`` (every event: no validation
    split), and replace the folder with the result; returns the seconds the fit took."""
    path = Path(path)
    meta = json.loads((path / MODEL_FILE).read_text())
    model = create_model(meta["model"], **meta.get("config", {}))
    t0 = time.perf_counter()
    model.fit(dataset)
    seconds = time.perf_counter() - t0
    fresh = path.with_name(f".{path.name}.retrain")
    old = path.with_name(f".{path.name}.old")
    for leftover in (fresh, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    model.save(fresh)
    for extra in (PRIVACY_FILE, "training.json"):
        if (path / extra).is_file():
            shutil.copy2(path / extra, fresh / extra)
    os.replace(path, old)
    os.replace(fresh, path)
    shutil.rmtree(old)
    mark_retrained(path)
    return seconds


def rekey_folder(path: str | Path, new_id: Callable[[str], str], marker: str) -> bool:
    """Replace every user id of a saved folder (and of its component folders) by ``new_id(id)`` — a
    pseudonym rotation. ``marker`` names the rotation: a folder that already carries it is left alone, so an
    interrupted rotation can be run again. Returns whether the folder changed."""
    path = Path(path)
    record = privacy_record(path)
    if marker in record.get("rotations", []):
        return False
    for model_json in sorted(path.rglob(MODEL_FILE)):
        meta = json.loads(model_json.read_text())
        meta["user_ids"] = [u if u.startswith(ERASED_ID_PREFIX) else new_id(u)
                            for u in meta.get("user_ids", [])]
        tmp = model_json.with_name(f".{MODEL_FILE}.tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, model_json)
    record.setdefault("rotations", []).append(marker)
    _write_record(path, record)
    return True
