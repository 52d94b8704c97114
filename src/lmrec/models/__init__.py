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

for _optional in ("seqrec", "multitask", "auto"):
    try:
        importlib.import_module(f"lmrec.models.{_optional}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"lmrec.models.{_optional}":
            raise

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
    "model_class",
    "register",
    "topk",
]
