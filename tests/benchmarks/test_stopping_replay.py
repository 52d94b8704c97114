"""The stopping rules that benchmarks/seqrec_defaults.py replays on recorded validation curves."""

from __future__ import annotations

import pytest

from tests.benchmarks.scripts import load_benchmark

replay_stop = load_benchmark("seqrec_defaults").replay_stop


def _curve(values: list[float]) -> list[list[float]]:
    return [[epoch, v] for epoch, v in enumerate(values, start=1)]


def test_patience_counts_validations_without_a_gain_as_the_trainer_does() -> None:
    # best at epoch 3, then three validations without a gain: patience 3 stops after epoch 6
    curve = _curve([0.1, 0.2, 0.30, 0.29, 0.30, 0.25, 0.5])
    assert replay_stop(curve, 3) == (6, 3, 0.30)
    # patience 4 sees epoch 7's gain and runs to the end of the record
    assert replay_stop(curve, 4) == (7, 7, 0.5)


def test_a_gain_below_min_delta_keeps_the_best_but_does_not_reset_the_count() -> None:
    curve = _curve([0.10, 0.20, 0.2005, 0.201, 0.2015, 0.21])
    # 0.25 % steps are gains (the best moves) but not above 1 %: the count runs from epoch 2
    stop, best_epoch, best = replay_stop(curve, 3, min_delta=0.01)
    assert (stop, best_epoch) == (5, 5)
    assert best == pytest.approx(0.2015)
    # without min_delta every small gain resets the count: the record ends first
    assert replay_stop(curve, 3)[0] == 6
