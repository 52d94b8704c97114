"""Running the service with uvicorn: one process, or ``workers`` processes on one PostgreSQL store."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from lmrec.serving.app import create_app
from lmrec.serving.settings import ServingSettings
from lmrec.store.postgres_store import is_postgres_url


def limit_model_threads(n: int) -> None:
    """Let model inference (torch) use ``n`` threads in this process. A request scores one user: with two
    threads on a busy 2-core machine one auto request on the 100,000-item catalogue of
    ``benchmarks/serve_load.py`` took 40-74 ms, with one 6-7 ms: the threads' spin-waits, not the work, were
    the cost."""
    import torch

    torch.set_num_threads(n)


def settings_environment(settings: ServingSettings) -> dict[str, str]:
    """``LMREC_*`` variables that rebuild ``settings`` in another process (the workers of :func:`serve`)."""
    env = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is not None:
            env[f"LMREC_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def app_from_environment() -> Any:
    """The app of one worker process, from the ``LMREC_*`` variables :func:`serve` set (a uvicorn factory)."""
    settings = ServingSettings()
    limit_model_threads(settings.model_threads)
    return create_app(settings)


def serve(settings: ServingSettings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          access_log: bool = False, workers: int = 1) -> None:
    """Build the app from ``settings`` and serve it until interrupted.

    ``workers`` > 1 runs that many processes on one port (uvicorn's process manager; the kernel spreads the
    connections). They behave as one service only on a store they all share, a PostgreSQL database
    (:mod:`lmrec.serving.replicas`); with a DuckDB file, which one process holds, more workers are refused.
    The same holds for replicas on several machines behind any load balancer.
    """
    import sys

    import uvicorn

    # Threads hand the GIL over every 5 ms by default: a request thread can wait that long behind the event
    # commit thread or a model swap. A shorter interval trades a little throughput for shorter tails.
    sys.setswitchinterval(0.001)

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if workers > 1:
        if not is_postgres_url(settings.store):
            raise ValueError(f"--workers {workers} needs a store the processes share: a PostgreSQL store "
                             "(--store postgresql://... or LMREC_STORE); a DuckDB file is held by one "
                             "process")
        os.environ.update(settings_environment(settings))
        uvicorn.run("lmrec.serving.server:app_from_environment", factory=True, host=host, port=port,
                    log_level=log_level, access_log=access_log, workers=workers, timeout_graceful_shutdown=10)
        return
    limit_model_threads(settings.model_threads)
    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log, workers=1,
                timeout_graceful_shutdown=10)
