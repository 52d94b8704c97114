"""lmrec: predict user behaviour with language models.

The flow is data → text vectors → models → evaluation → serving; see DESIGN.md.
"""

from lmrec.data.dataset import Dataset
from lmrec.data.schema import PAD

__all__ = ["Dataset", "PAD", "__version__"]
__version__ = "0.1.0"
