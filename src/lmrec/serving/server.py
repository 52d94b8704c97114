"""Running the service with uvicorn (one process: the per-user history overlay lives in its memory)."""

from __future__ import annotations

import logging

from lmrec.serving.app import create_app
from lmrec.serving.settings import ServingSettings


def limit_model_threads(n: int) -> None:
    """Let model inference (torch) use ``n`` threads in this process. A request scores one user: with two
    threads on a busy 2-core machine one auto request on the 100,000-item catalogue of
    ``benchmarks/serve_load.py`` took 40-74 ms, with one 6-7 ms: the threads' spin-waits, not the work, were
    the cost."""
    import torch

    torch.set_num_threads(n)


def serve(settings: ServingSettings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          access_log: bool = False) -> None:
    """Build the app from ``settings`` and serve it until interrupted.

    One worker process on purpose: recent events live in that process's memory, which is what makes the next
    recommendation reflect them at once. Scale out behind a load balancer that routes a user to one replica.
    """
    import sys

    import uvicorn

    # Threads hand the GIL over every 5 ms by default: a request thread can wait that long behind the event
    # commit thread or a model swap. A shorter interval trades a little throughput for shorter tails.
    sys.setswitchinterval(0.001)

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limit_model_threads(settings.model_threads)
    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log, workers=1,
                timeout_graceful_shutdown=10)
