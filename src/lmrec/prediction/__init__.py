"""Predictions beyond the next item: rating of a given item, type of the next action, and user value.

``metrics`` holds the pure metric functions, ``tasks`` cuts labelled examples from a dataset without leakage,
``baselines`` the reference models (bias, MF, majority, Markov, RFM, last period, gradient boosting); the
multi-task model that shares one sequence representation across heads is :mod:`lmrec.models.multitask`.
"""

from lmrec.prediction import baselines, metrics, tasks

__all__ = ["baselines", "metrics", "tasks"]
