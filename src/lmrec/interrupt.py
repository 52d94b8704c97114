"""What Ctrl-C is inside a command: :class:`Interrupted`, and the one line it ends with.

Its own tiny module so that the ``lmrec`` entry point (:mod:`lmrec.entry`, which installs the handler before
anything heavy is imported) and the CLI's error handling share it without importing each other.
"""

from __future__ import annotations

MESSAGE = "interrupted, nothing written"


class Interrupted(BaseException):  # noqa: N818 - not an error; a BaseException so no `except Exception` eats it
    """Ctrl-C while a command runs."""
