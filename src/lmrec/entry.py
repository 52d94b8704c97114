"""The ``lmrec`` command's entry point: Ctrl-C at any moment is one line and exit status 130, never a trace.

This module imports nothing heavy, so the handler is in place before the command line is even built. Until a
command runs, Ctrl-C exits at once (nothing can have been written); while one runs, it raises
:class:`Interrupted`, which unwinds like an error (transactions roll back) and ends as the same one line.
"""

from __future__ import annotations

import os
import signal
import sys

from lmrec.interrupt import MESSAGE, Interrupted

__all__ = ["MESSAGE", "Interrupted", "main"]

_running = False


def _on_sigint(signum: int, frame: object) -> None:
    if not _running:
        sys.stderr.write(MESSAGE + "\n")
        sys.stderr.flush()
        os._exit(130)
    raise Interrupted


def main() -> None:
    global _running
    signal.signal(signal.SIGINT, _on_sigint)
    from lmrec.cli import app

    _running = True
    try:
        app()
    except (Interrupted, KeyboardInterrupt):
        sys.stderr.write(MESSAGE + "\n")
        sys.exit(130)


if __name__ == "__main__":  # python -m lmrec.entry (how torchrun starts the command's worker processes)
    main()
