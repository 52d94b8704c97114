"""Fixtures for lmrec.text: a real MiniLM encoder loaded once per session, and a fast fake encoder."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import polars as pl
import pytest


class FakeEncoder:
    """A deterministic :class:`~lmrec.text.TextEncoder` that counts the texts it is asked to encode."""

    def __init__(self, name: str = "fake", revision: str = "r1", dim: int = 8) -> None:
        self.name, self.revision, self.dim = name, revision, dim
        self.calls: list[list[str]] = []

    @property
    def n_encoded(self) -> int:
        return sum(len(c) for c in self.calls)

    def encode(self, texts: Sequence[str], *, side: str = "document") -> np.ndarray:
        self.calls.append(list(texts))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(f"{side}|{t}".encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        return out


@pytest.fixture(name="FakeEncoder")
def fake_encoder_class() -> type[FakeEncoder]:
    return FakeEncoder


@pytest.fixture
def fake() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture(scope="session")
def minilm():
    """The default encoder, loaded once (about 100 MB in memory)."""
    from lmrec.text import get_encoder

    enc = get_encoder(batch_size=32)
    enc.load()
    return enc


@pytest.fixture
def items() -> pl.DataFrame:
    return pl.DataFrame({
        "item_id": ["a", "b", "c", "d"],
        "title": ["Heat (1995)", "Toy Story (1995)", None, "Heat (1995)"],
        "description": [None, "Toys come alive.", "A quiet film.", None],
        "categories": [["Action", "Crime"], ["Animation"], [], ["Action", "Crime"]],
        "attributes": ['{"brand": "Warner", "tags": ["heist", "LA"]}', None, '{"brand": ""}',
                       '{"brand": "Warner", "tags": ["heist", "LA"]}'],
    })
