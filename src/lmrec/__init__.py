"""lmrec: predict user behaviour with language models.

The flow is data → text vectors → models → evaluation → serving; see DESIGN.md.

``Dataset`` and ``PAD`` are imported on first use, so that ``import lmrec`` (and the ``lmrec`` command's first
moment, when a Ctrl-C must already be handled cleanly) costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
