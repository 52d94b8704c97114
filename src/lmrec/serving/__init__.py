"""The lmrec HTTP service: ``create_app(settings)`` builds it, :func:`serve` runs it with uvicorn.

See ``docs/serving.md`` for the endpoints, security, retrieval and hot swaps.
"""

from lmrec.serving.app import create_app
from lmrec.serving.server import serve
from lmrec.serving.settings import ServingSettings

__all__ = ["ServingSettings", "create_app", "serve"]
