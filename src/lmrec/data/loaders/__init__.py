"""Loaders for real formats. :func:`open_source` picks one by name or by looking at the files.

Every loader returns a :class:`~lmrec.data.loaders.base.Source` with lmrec's column names; cleaning happens
afterwards, in :func:`~lmrec.data.loaders.base.read_dataset` or in the store's import.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmrec.data.cleaning import CleaningConfig, CleaningReport
from lmrec.data.dataset import Dataset
from lmrec.data.loaders.base import Source, read_dataset
from lmrec.data.loaders.movielens import _Files, load_movielens, movielens_100k

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


def detect_format(path: Path) -> str:
    """Guess a format from a path: a MovieLens folder/zip, a file a loader recognises, or a generic table."""
    _load_optional_formats()
    try:
        files = _Files(path)
        if any(files.find(n) for n in ("u.data", "ratings.dat", "ratings.csv")):
            return "movielens"
    except FileNotFoundError:
        pass
    for fmt, probe in [*_DETECTORS, *_FALLBACK_DETECTORS]:
        try:
            if probe(path):
                return fmt
        except OSError:
            continue
    raise ValueError(f"cannot tell the format of {path}; pass --format (one of {', '.join(sorted(FORMATS))})")


#: (format, predicate) pairs tried in order by :func:`detect_format`; loader modules append to it.
_DETECTORS: list[tuple[str, Callable[[Path], bool]]] = []
#: Detectors tried after all of :data:`_DETECTORS` (see :func:`register_detector`).
_FALLBACK_DETECTORS: list[tuple[str, Callable[[Path], bool]]] = []


def open_source(spec: str | Path, fmt: str | None = None, **options: Any) -> Source:
    """A built-in dataset name (``movielens-100k``) or a path, in ``fmt`` or a detected format."""
    _load_optional_formats()
    key = str(spec)
    if fmt is None and key in BUILTIN:
        _check_options(key, BUILTIN[key], options)
        return BUILTIN[key](**options)
    path = Path(key).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{spec}: no such file or folder, and not a built-in dataset "
                                f"({', '.join(sorted(BUILTIN))})")
    fmt = fmt or detect_format(path)
    try:
        loader = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(sorted(FORMATS))}") from None
    _check_options(fmt, loader, options)
    return loader(path, **options)


def _check_options(fmt: str, loader: Callable[..., Source], options: dict[str, Any]) -> None:
    """A clear error for an option the format does not take (``--map`` given to MovieLens, a typo in a
    config)."""
    import inspect

    try:
        params = inspect.signature(loader).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    names = list(params)
    positional_path = (
        names[:1] if names and params[names[0]].kind is not inspect.Parameter.KEYWORD_ONLY else []
    )
    accepted = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                and n not in positional_path]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"format {fmt!r} does not take option(s) {unknown}; it takes {accepted or 'none'}")


def load_dataset(spec: str | Path = DEFAULT_DATASET, fmt: str | None = None,
                 cleaning: CleaningConfig | None = None, **options: Any) -> tuple[Dataset, CleaningReport]:
    """Open, clean and build in one call: ``ds, report = load_dataset("movielens-100k")``."""
    return read_dataset(open_source(spec, fmt, **options), cleaning)


def _load_optional_formats() -> None:
    """Import the loader modules that register further formats (kept lazy so ``import lmrec`` stays light)."""
    import importlib

    for mod in ("amazon", "sequences", "recbole", "generic", "ecommerce"):
        try:
            importlib.import_module(f"lmrec.data.loaders.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"lmrec.data.loaders.{mod}":
                raise


__all__ = ["BUILTIN", "DEFAULT_DATASET", "FORMATS", "Source", "detect_format", "load_dataset", "open_source",
           "read_dataset", "register_detector", "register_format"]
