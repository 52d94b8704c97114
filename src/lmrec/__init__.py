"""lmrec: predict user behaviour with language models.

The flow is data → text vectors → models → evaluation → serving; see DESIGN.md.

``Dataset`` and ``PAD`` are imported on first use, so that ``import lmrec`` (and the ``lmrec`` command's first
moment, when a Ctrl-C must already be handled cleanly) costs nothing.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# Idle OpenMP threads (PyTorch's intra-op pool) spin only briefly before they sleep, unless the user chose:
# GNU OpenMP (Linux wheels) 1,000 rounds instead of its 300,000, LLVM/Intel OpenMP (macOS) no spin at all.
# Set here, before lmrec imports torch, because the runtime reads it once, when it loads. The long spin
# collapses a fixed thread count beside other processes (2 threads beside one CPU burner: 2-3x the wall time
# of not spinning); no spin at all (OMP_WAIT_POLICY=PASSIVE, the earlier default) made a quiet fused SeqRec
# fit 1.14x the runtime's wall time, the short spin 0.93x: each of its steps is many short parallel regions
# (docs/benchmarks.md, section omp-wait-policy; lmrec.training.threads). A program that imports torch before
# lmrec, or sets any of these variables, keeps the runtime's own behaviour.
OPENMP_DEFAULTS = {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "0"}
if not any(k in os.environ for k in ("OMP_WAIT_POLICY", *OPENMP_DEFAULTS)):
    os.environ.update(OPENMP_DEFAULTS)

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
