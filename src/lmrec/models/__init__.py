"""Recommenders. Importing this package registers every built-in model by name.

Optional model packages written alongside (``lmrec.models.seqrec``, ``lmrec.models.multitask``) register
themselves when present, so :func:`available_models` and the contract tests see them without a hand-kept list.
"""

import importlib

from lmrec.models.base import (
    NotFittedError,
    Recommender,
    available_models,
    create_model,
    load_model,
    model_class,
    register,
    topk,
)
from lmrec.models.content import ContentLM
from lmrec.models.ease import EASE, CatalogueTooLargeError
from lmrec.models.factorization import ALS, BPR
from lmrec.models.itemknn import ItemKNN, UserKNN
from lmrec.models.popularity import MostPopular, UnseenRandom

for _optional in ("seqrec", "multitask", "auto", "pipeline"):
    try:
        importlib.import_module(f"lmrec.models.{_optional}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"lmrec.models.{_optional}":
            raise



def model_catalogue() -> list[tuple[str, str, list[tuple[str, str, object]]]]:
    """Every registered model as ``(name, first line of its docstring, [(setting, type, default), ...])``."""
    import dataclasses
    import typing

    out = []
    for name in available_models():
        cls = model_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()
        cfg = getattr(cls, "Config", None)
        fields = []
        if cfg is not None and dataclasses.is_dataclass(cfg):
            hints = typing.get_type_hints(cfg)
            for f in dataclasses.fields(cfg):
                default = (f.default if f.default is not dataclasses.MISSING else
                           f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
                kind = getattr(hints.get(f.name), "__name__", None) or str(hints.get(f.name, "")).replace(
                    "typing.", "")
                fields.append((f.name, kind, default))
        out.append((name, doc[0] if doc else "", fields))
    return out


def _catalogue_text() -> str:
    lines = ["", "Models and their settings (name: setting=default, ...):", ""]
    for name, summary, fields in model_catalogue():
        lines.append(f"{name} — {summary}")
        settings = ", ".join(f"{f}={d!r}" for f, _, d in fields)
        lines.append(f"    {settings}" if fields else "    (no settings)")
    return "\n".join(lines)


# help(create_model) lists every registered model and setting with its default (built once, here, after
# every model has registered).
create_model.__doc__ = (create_model.__doc__ or "") + "\n" + _catalogue_text()

__all__ = [
    "ALS",
    "BPR",
    "EASE",
    "CatalogueTooLargeError",
    "ContentLM",
    "ItemKNN",
    "MostPopular",
    "NotFittedError",
    "Recommender",
    "UnseenRandom",
    "UserKNN",
    "available_models",
    "create_model",
    "load_model",
    "model_catalogue",
    "model_class",
    "register",
    "topk",
]
