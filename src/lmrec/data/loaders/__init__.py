"""Loaders for real formats. :func:`open_source` picks one by name or by looking at the files.

Every loader returns a :class:`~lmrec.data.loaders.base.Source` with lmrec's column names; cleaning happens
afterwards, in :func:`~lmrec.data.loaders.base.read_dataset` or in the store's import.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmrec.data.cleaning import CleaningConfig, CleaningReport
from lmrec.data.dataset import Dataset
from lmrec.data.loaders.base import Source, read_dataset
from lmrec.data.loaders.movielens import _Files
from lmrec.data.loaders.registry import (
    _DETECTORS,
    _FALLBACK_DETECTORS,
    BUILTIN,
    DEFAULT_DATASET,
    FORMATS,
    register_detector,
    register_format,
)
from lmrec.data.source import pseudonymised

# The loader modules register their formats and detectors on import, in this order (detectors are tried
# in registration order; the generic table reader's are fallbacks, tried last whatever the order).
from lmrec.data.loaders import amazon, given, sequences, recbole, generic, ecommerce  # noqa: F401  # isort: skip
from lmrec.data.loaders.items import attach_items  # noqa: E402  # isort: skip

#: Formats whose own ``items`` option reads a file kind of theirs (Amazon's metadata dumps); every other
#: format's ``items`` is read by :func:`~lmrec.data.loaders.items.attach_items`, whatever the file's kind.
NATIVE_ITEMS = frozenset({"amazon"})
#: Options about the item file that :func:`open_source` takes for every format.
ITEM_OPTIONS = ("items", "item_map", "item_mapping", "category_separator")


def detect_format(path: Path) -> str:
    """Guess a format from a path: a MovieLens folder/zip, a file a loader recognises, or a generic table."""
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


def open_source(spec: str | Path, fmt: str | None = None, **options: Any) -> Source:
    """A built-in dataset name (``movielens-100k``) or a path, in ``fmt`` or a detected format.

    Every format takes ``items`` (an item file of any kind: a table, a RecBole ``.item``/``.text`` file or
    ``item_id<TAB>text`` lines) and ``item_map`` (an ``item2index`` file, for item files keyed by another id
    than the events): see :mod:`lmrec.data.loaders.items`.
    """
    key = str(spec)
    if fmt is None and key in BUILTIN:
        loader, name, path = BUILTIN[key], key, None
    else:
        path = Path(key).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{spec}: no such file or folder, and not a built-in dataset "
                                    f"({', '.join(sorted(BUILTIN))})")
        name = fmt = fmt or detect_format(path)
        try:
            loader = FORMATS[fmt]
        except KeyError:
            raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(sorted(FORMATS))}") from None
    item_opts = _item_options(name, loader, options)
    _check_options(name, loader, options)
    source = loader(**options) if path is None else loader(path, **options)
    if item_opts.get("items") is not None or item_opts.get("item_map") is not None:
        attach_items(source, item_opts.get("items"), item_map=item_opts.get("item_map"),
                     mapping=item_opts.get("item_mapping"),
                     category_separator=item_opts.get("category_separator") or "|")
    return pseudonymised(source)


def _item_options(fmt: str, loader: Callable[..., Source], options: dict[str, Any]) -> dict[str, Any]:
    """Take the item-file options out of ``options`` (in place) when :func:`attach_items` reads the file
    rather than the loader: always ``items`` and ``item_map`` (except for :data:`NATIVE_ITEMS`), and the
    loader's ``item_mapping``/``category_separator`` when an item file is given or the loader lacks them."""
    if fmt in NATIVE_ITEMS:
        return {}
    try:
        params = set(inspect.signature(loader).parameters)
    except (TypeError, ValueError):
        params = set()
    taken = {k: options.pop(k) for k in ("items", "item_map") if k in options}
    for k in ("item_mapping", "category_separator"):
        if k in options and (taken.get("items") is not None or k not in params):
            taken[k] = options.pop(k)
    return taken


def _check_options(fmt: str, loader: Callable[..., Source], options: dict[str, Any]) -> None:
    """A clear error for an option the format does not take (``--map`` given to MovieLens, a typo in a
    config)."""
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


__all__ = ["BUILTIN", "DEFAULT_DATASET", "FORMATS", "Source", "detect_format", "load_dataset", "open_source",
           "read_dataset", "register_detector", "register_format"]
