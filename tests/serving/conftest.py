"""A tiny catalogue, models trained on it, and a real uvicorn server on a free loopback port."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest

from lmrec.models import create_model
from lmrec.serving import ServingSettings, create_app
from lmrec.store import Store


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
    """Two taste clusters (animation, crime) plus horror fans; popularity is skewed so the top item is clear."""
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


@dataclass
class Served:
    """A running service and what it was built from."""

    url: str
    client: httpx.Client
    store: Store
    models_dir: Path
    app: object

    def get(self, path: str, **kw: object) -> httpx.Response:
        return self.client.get(path, **kw)  # type: ignore[arg-type]


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


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``v1`` (MostPopular) and ``v2`` (ItemKNN) trained on the tiny dataset."""
    root = tmp_path_factory.mktemp("models")
    with Store(":memory:") as st:
        st.upsert_items(ITEMS)
        st.append_events(make_events())
        ds = st.to_dataset()
    create_model("most-popular").fit(ds).save(root / "v1")
    create_model("itemknn", k=20).fit(ds).save(root / "v2")
    return root


@pytest.fixture
def start(models_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """``start(**settings)`` runs a fresh store (tiny catalogue and events) and server; all stopped afterwards."""
    stack: list[tuple[object, Store, httpx.Client]] = []

    def _start(*, text: bool = True, version: str = "v1", **overrides: object) -> Served:
        store = Store(tmp_path / f"store{len(stack)}.duckdb")
        store.upsert_items(ITEMS)
        store.append_events(make_events())
        settings = ServingSettings(model_dir=models_dir / version, store=str(store.path),
                                   **{"dev_mode": True, **overrides})  # type: ignore[arg-type]
        app = create_app(settings, store=store, encoder=HashingEncoder() if text else None)
        cm = run_server(app)
        url = cm.__enter__()
        client = httpx.Client(base_url=url, timeout=30)
        stack.append((cm, store, client))
        return Served(url, client, store, models_dir, app)

    yield _start
    for cm, store, client in reversed(stack):
        client.close()
        cm.__exit__(None, None, None)  # type: ignore[attr-defined]
        store.close()
