"""Recommenders. Importing this package registers every built-in model by name."""

from lmrec.models.base import (
    Recommender,
    available_models,
    create_model,
    load_model,
    model_class,
    register,
    topk,
)
from lmrec.models.popularity import MostPopular

__all__ = ["MostPopular", "Recommender", "available_models", "create_model", "load_model", "model_class",
           "register", "topk"]
