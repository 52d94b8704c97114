"""Fixtures: models trained on the tiny dataset, and a real uvicorn server on a free loopback port."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lmrec.models import create_model
from lmrec.serving import ServingSettings, create_app
from lmrec.store import Store
from tests.serving.serving_helpers import ITEMS, HashingEncoder, make_events, run_server


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
    """``start(**settings)`` runs a fresh store (tiny catalogue and events) and server; all stopped
    afterwards."""
    stack: list[tuple[object, Store, httpx.Client]] = []

    def _start(*, text: bool = True, version: str = "v1", **overrides: object) -> Served:
        # Each server gets its own copy of the registry: an erasure patches every folder in it.
        registry = tmp_path / f"models{len(stack)}"
        shutil.copytree(models_dir, registry)
        store = Store(tmp_path / f"store{len(stack)}.duckdb")
        store.upsert_items(ITEMS)
        store.append_events(make_events())
        settings = ServingSettings(model_dir=registry / version, store=str(store.path),
                                   **{"dev_mode": True, **overrides})  # type: ignore[arg-type]
        app = create_app(settings, store=store, encoder=HashingEncoder() if text else None)
        cm = run_server(app)
        url = cm.__enter__()
        client = httpx.Client(base_url=url, timeout=30)
        stack.append((cm, store, client))
        return Served(url, client, store, registry, app)

    yield _start
    for cm, store, client in reversed(stack):
        client.close()
        cm.__exit__(None, None, None)  # type: ignore[attr-defined]
        store.close()
