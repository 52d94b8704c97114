"""`lmrec serve` runs one request's model inference on LMREC_MODEL_THREADS torch threads (1 by default)."""

from __future__ import annotations

import pytest
import torch

from lmrec.serving import ServingSettings
from lmrec.serving.server import limit_model_threads


def test_model_threads_default_to_one_and_are_applied(monkeypatch) -> None:
    assert ServingSettings().model_threads == 1
    monkeypatch.setenv("LMREC_MODEL_THREADS", "2")
    assert ServingSettings().model_threads == 2
    monkeypatch.setenv("LMREC_MODEL_THREADS", "0")
    with pytest.raises(ValueError, match="model_threads"):
        ServingSettings()
    before = torch.get_num_threads()
    try:
        limit_model_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_store_queries_use_one_duckdb_thread_once_serving(start, tmp_path) -> None:
    """After start-up the service's store runs its small queries on one DuckDB thread (``store_threads``),
    also after a compaction reopens the file; 0 leaves DuckDB's default."""
    served = start()
    assert served.store.execute("SELECT current_setting('threads')") == [(1,)]
    served.store.compact()
    assert served.store.execute("SELECT current_setting('threads')") == [(1,)]
    default = start(store_threads=0)
    assert default.store._threads is None  # never set: DuckDB's own default
    assert ServingSettings().store_threads == 1
