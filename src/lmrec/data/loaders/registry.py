"""The registries of built-in datasets, formats and format detectors, which the loader modules fill.

A loader module registers itself on import (:func:`register_format`, :func:`register_detector`);
:mod:`lmrec.data.loaders` imports every loader module once, so the registries are complete as soon as the
package is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lmrec.data.loaders.base import Source
from lmrec.data.loaders.movielens import load_movielens, movielens_100k

#: Built-in datasets by name: nothing to download by hand.
BUILTIN: dict[str, Callable[..., Source]] = {
    "movielens-100k": movielens_100k,
    "ml-100k": movielens_100k,
}

#: Formats by name: ``lmrec data import --format NAME PATH``. Other loader modules add themselves here.
FORMATS: dict[str, Callable[..., Source]] = {
    "movielens": load_movielens,
}

DEFAULT_DATASET = "movielens-100k"


def register_format(name: str, fn: Callable[..., Source]) -> None:
    """Make ``fn(path, **options) -> Source`` available as ``--format NAME``."""
    FORMATS[name] = fn


def register_detector(fmt: str, probe: Callable[[Path], bool], *, fallback: bool = False) -> None:
    """Let :func:`detect_format` recognise ``fmt`` when ``probe(path)`` is true.

    Probes look at names and first lines only. ``fallback`` probes (the generic table reader, which accepts
    any ``.csv``) run after every specific one, whatever the order the modules were imported in.
    """
    target = _FALLBACK_DETECTORS if fallback else _DETECTORS
    if all(f != fmt for f, _ in target):
        target.append((fmt, probe))


#: (format, predicate) pairs tried in order by :func:`detect_format`; loader modules append to it.
_DETECTORS: list[tuple[str, Callable[[Path], bool]]] = []
#: Detectors tried after all of :data:`_DETECTORS` (see :func:`register_detector`).
_FALLBACK_DETECTORS: list[tuple[str, Callable[[Path], bool]]] = []
