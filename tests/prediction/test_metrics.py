"""Prediction metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from lmrec.prediction import metrics as M


def test_rmse_and_mae_by_hand() -> None:
    # errors 1, -2, 0 → squared 1, 4, 0 → mean 5/3; absolute mean 1
    assert M.rmse([3, 1, 4], [2, 3, 4]) == pytest.approx(np.sqrt(5 / 3))
    assert M.mae([3, 1, 4], [2, 3, 4]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        M.rmse([1, 2], [1])


def test_log_loss_accuracy_by_hand() -> None:
    proba = np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    y = np.array([0, 1, 0])
    # -(ln .5 + ln .8 + ln .2) / 3
    assert M.log_loss(y, proba) == pytest.approx(-(np.log(0.5) + np.log(0.8) + np.log(0.2)) / 3)
    assert M.accuracy(y, proba) == pytest.approx(2 / 3)
    assert M.accuracy(y, np.array([0, 0, 0])) == pytest.approx(2 / 3)


def test_binary_and_macro_auc_by_hand() -> None:
    # positives score 0.9 and 0.4, negatives 0.5 and 0.1: pairs (0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1) → 3/4
    assert M.binary_auc([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1]) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half
    assert M.binary_auc([1, 0], [0.3, 0.3]) == pytest.approx(0.5)
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    y = np.array([0, 1, 1, 2])
    # class 0: pos {.7}, neg {.2,.6,.1} → 1; class 1: pos {.7,.3}, neg {.2,.2} → 1; class 2: pos {.7} neg .1s
    # → 1
    assert M.macro_auc(y, proba) == pytest.approx(1.0)
    proba[2] = [0.8, 0.1, 0.1]
    # class 0: pos .7 vs negs .2,.8,.1 → 2/3; class 1: pos .7,.1 vs negs .2,.2 → (1+1+0+0)/4 = .5; class 2: 1
    assert M.macro_auc(y, proba) == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)


def test_value_metrics_by_hand() -> None:
    y = np.array([0.0, 10.0, 0.0, 90.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    perfect = y.copy()
    assert M.top_decile_capture(y, perfect) == pytest.approx(0.9)  # the top 1 of 10 users holds 90 of 100
    wrong = np.arange(10, 0, -1.0)  # ranks user 0 first: holds 0
    assert M.top_decile_capture(y, wrong) == pytest.approx(0.0)
    # all tied: the single top slot gets the average value, 10 of 100
    assert M.top_decile_capture(y, np.zeros(10)) == pytest.approx(0.1)
    assert M.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert M.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1,2,3) vs (1,3,2): d² = 0+1+1 → 1 - 6·2/(3·8) = 0.5
    assert M.spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert M.rmse_log([0.0, np.e - 1], [np.e - 1, np.e - 1]) == pytest.approx(np.sqrt(0.5))
