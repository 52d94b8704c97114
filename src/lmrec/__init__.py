"""lmrec: predict user behaviour with language models.

The flow is data → text vectors → models → evaluation → serving; see DESIGN.md.

``Dataset`` and ``PAD`` are imported on first use, so that ``import lmrec`` (and the ``lmrec`` command's first
moment, when a Ctrl-C must already be handled cleanly) costs nothing.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# Idle OpenMP threads (PyTorch's intra-op pool) sleep instead of spinning, unless the user chose a policy.
# Set here, before lmrec imports torch, because the OpenMP runtime reads it once, when it loads. With a fixed
# thread count on a busy machine a spinning pool collapses (lmrec.training.threads; docs/benchmarks.md,
# section omp-wait-policy). A program that imports torch before lmrec keeps the runtime's own default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if TYPE_CHECKING:
    from lmrec.data.dataset import Dataset
    from lmrec.data.schema import PAD

__all__ = ["Dataset", "PAD", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Dataset":
        from lmrec.data.dataset import Dataset

        return Dataset
    if name == "PAD":
        from lmrec.data.schema import PAD

        return PAD
    raise AttributeError(f"module 'lmrec' has no attribute {name!r}")
