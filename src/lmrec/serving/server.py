"""Running the service with uvicorn (one process: the per-user history overlay lives in its memory)."""

from __future__ import annotations

import logging

from lmrec.serving.app import create_app
from lmrec.serving.settings import ServingSettings


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
    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log, workers=1,
                timeout_graceful_shutdown=10)
