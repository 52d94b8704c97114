"""Shared by the serving tests: a tiny catalogue, a hashing text encoder, a uvicorn server on a free port."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl


class HashingEncoder:
    """A real, deterministic text encoder for tests: hashed bag of words (no model download, microseconds).

    Texts that share words get similar vectors, which is all the service's text features rely on.
    """

    name = "test-hashing-64"
    dim = 64

    def encode(self, texts: list[str], *, side: str = "document") -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for r, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                h = int(hashlib.md5(word.encode()).hexdigest(), 16)
                out[r, h % self.dim] += 1.0 if (h >> 64) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


ITEMS = pl.DataFrame({
    "item_id": ["toy", "aladdin", "lion", "heat", "ronin", "alien", "jaws", "up", "fargo", "brazil"],
    "title": ["Toy Story (1995)", "Aladdin (1992)", "The Lion King (1994)", "Heat (1995)", "Ronin (1998)",
              "Alien (1979)", "Jaws (1975)", "Up (2009)", "Fargo (1996)", "Brazil (1985)"],
    "description": ["animated toys cartoon friendship", "animated genie cartoon magic lamp",
                    "animated lions cartoon king savanna", "crime heist thriller detectives",
                    "crime heist thriller spies cars", "space monster horror ship",
                    "shark monster horror beach", "animated balloon house cartoon adventure",
                    "crime snow thriller kidnapping", "dystopia bureaucracy satire"],
    "categories": [["Animation", "Children's"], ["Animation", "Children's"], ["Animation", "Children's"],
                   ["Crime", "Thriller"], ["Crime", "Thriller"], ["Horror", "Sci-Fi"], ["Horror"],
                   ["Animation"], ["Crime"], ["Comedy", "Sci-Fi"]],
})


def make_events(seed: int = 0) -> pl.DataFrame:
    """Two taste clusters (animation, crime) plus horror fans; popularity is skewed so the top item is
    clear."""
    rng = np.random.default_rng(seed)
    clusters = {"anim": ["toy", "aladdin", "lion", "up"], "crime": ["heat", "ronin", "fargo"],
                "horror": ["alien", "jaws"]}
    rows = []
    t = 1_000_000
    for u in range(30):
        group = ["anim", "anim", "crime", "horror"][u % 4]
        pool = clusters[group]
        n = int(rng.integers(2, len(pool) + 1))
        for item in rng.choice(pool, size=n, replace=False):
            t += 1
            rows.append({"user_id": f"u{u}", "item_id": str(item), "timestamp": t, "event_type": "view"})
    return pl.DataFrame(rows)


def text_model_store(tmp_path: Path, name: str, vectors_meta: object,
                     **config: object) -> tuple[Any, HashingEncoder]:
    """A store with the tiny catalogue and events, and a text model ``name`` fitted on it with hashed item
    vectors (:class:`HashingEncoder`) and saved to ``tmp_path / "m"``; returns ``(store, encoder)``."""
    from lmrec.models import create_model
    from lmrec.serving.bundle import render_texts
    from lmrec.store import Store

    enc = HashingEncoder()
    store = Store(tmp_path / "s.duckdb")
    store.upsert_items(ITEMS)
    store.append_events(make_events())
    ds = store.to_dataset()
    vecs = np.vstack([np.zeros((1, enc.dim)), enc.encode(render_texts(ds.items))]).astype(np.float32)
    create_model(name, **config).fit(ds, item_vectors=vecs, vectors_meta=vectors_meta).save(tmp_path / "m")
    return store, enc


def eventually(check: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait until ``check()`` is truthy (events reach the store in batches, shortly after the request)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout}s: {check}")
        time.sleep(0.02)


def wait_ready(proc: Any, base: str, log: Path, timeout_s: float = 300, poll_s: float = 0.2) -> None:
    """Wait until the ``lmrec serve`` subprocess ``proc`` answers ``/health/ready`` at ``base``; its exit, or
    no answer within ``timeout_s``, raises with the end of its ``log``."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"lmrec serve exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/health/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"lmrec serve was not ready within {timeout_s:g} s: {log.read_text()[-3000:]}")
        time.sleep(poll_s)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def run_server(app: object) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",  # type: ignore[arg-type]
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


