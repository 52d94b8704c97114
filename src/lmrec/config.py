"""Process-wide locations and device choice. Nothing here holds mutable state."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where lmrec keeps downloaded data and models: ``$LMREC_CACHE_DIR`` or the user's cache directory."""
    env = os.environ.get("LMREC_CACHE_DIR")
    if env:
        path = Path(env).expanduser()
    else:
        from platformdirs import user_cache_dir

        path = Path(user_cache_dir("lmrec"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_device() -> str:
    """``cuda`` when a GPU is present, else ``mps`` on Apple silicon, else ``cpu``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_device(device: str | None) -> str:
    """``None`` or ``"auto"`` picks :func:`default_device`; anything else is passed through."""
    return default_device() if device in (None, "auto") else str(device)
