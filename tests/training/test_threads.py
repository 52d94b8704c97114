"""The thread governor picks the count whose steps cost least, follows a change of load, and bounds the steps
it spends exploring. Step times are given, not measured, so nothing here depends on the machine's load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmrec.training.threads import ThreadGovernor, thread_candidates


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _run(gov: ThreadGovernor, cost_of, steps: int) -> list[int]:
    """Drive ``steps`` steps where a step at ``n`` threads costs ``cost_of(step, n)`` seconds per unit."""
    used = []
    for i in range(steps):
        n = gov.before_step()
        assert torch.get_num_threads() == n
        used.append(n)
        gov.after_step(cost_of(i, n) * 100.0, 100.0)
    return used


@pytest.mark.parametrize(("cores", "want"), [(1, [1]), (2, [2, 1]), (4, [4, 1, 2]), (16, [16, 1, 8, 4, 2]),
                                              (6, [6, 1, 4, 2])])
def test_candidates(cores: int, want: list[int]) -> None:
    assert thread_candidates(cores) == want


def test_fixed_count_never_switches() -> None:
    gov = ThreadGovernor.for_training(num_threads=1, world_size=1)
    assert not gov.adaptive
    assert set(_run(gov, lambda i, n: 1.0, 40)) == {1}


def test_not_adaptive_takes_the_share_of_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lmrec.training.threads.machine_threads", lambda: 8)
    assert ThreadGovernor.for_training(0, world_size=2, adaptive=False).candidates == [4]
    assert ThreadGovernor.for_training(0, world_size=2).candidates == [4, 1, 2]


def test_busy_machine_settles_on_one_thread() -> None:
    """As measured beside two CPU burners: 2 threads cost 5x what 1 does."""
    gov = ThreadGovernor([2, 1], explore_every=16, burst=3)
    used = _run(gov, lambda i, n: 5.0 if n == 2 else 1.0, 200)
    assert gov.best == 1
    tail = used[6:]  # after measuring both once
    assert tail.count(2) <= len(tail) * 3 / 16 + 3  # exploring costs at most burst/explore_every


def test_idle_machine_uses_every_core() -> None:
    gov = ThreadGovernor([2, 1])
    used = _run(gov, lambda i, n: 1.0 / n, 100)
    assert gov.best == 2 and used[-1] == 2


def test_follows_a_change_of_load() -> None:
    """Idle for 100 steps (2 threads best), then busy (1 thread best): the choice moves within a few
    exploration rounds."""
    gov = ThreadGovernor([2, 1], explore_every=8, burst=3)
    used = _run(gov, lambda i, n: (1.0 / n) if i < 100 else (4.0 if n == 2 else 1.0), 200)
    assert used[95] == 2
    assert used[-1] == 1 and gov.best == 1


def test_first_step_after_a_switch_is_not_measured() -> None:
    gov = ThreadGovernor([2, 1], burst=3)
    gov.before_step()
    gov.after_step(1000.0, 1.0)  # pool resizing: ignored
    assert gov.cost == {}
    gov.before_step()
    gov.after_step(1.0, 1.0)
    assert gov.cost == {2: 1.0}


def test_no_candidates_is_an_error() -> None:
    with pytest.raises(ValueError, match="no thread count"):
        ThreadGovernor([])


def test_the_fixed_part_of_a_step_does_not_bias_the_choice() -> None:
    """Length-bucketed batches of 512 to 3,072 elements, each step also paying a fixed 10,000 elements' worth
    (a whole item table encoded every step), 1 thread 1.2× the seconds of 2: seconds per element alone make
    whichever count explored on long batches look cheaper; with the fixed part estimated, 2 threads hold."""
    rng = np.random.default_rng(0)
    gov = ThreadGovernor([2, 1])
    used = []
    for _ in range(2000):
        n = gov.before_step()
        used.append(n)
        work = float(rng.integers(512, 3072))
        gov.after_step((1.0 if n == 2 else 1.2) * (10_000 + work) * 1e-5 * rng.uniform(0.9, 1.1), work)
    assert gov.best == 2
    assert used[200:].count(2) >= 0.9 * len(used[200:])
    assert abs(gov.fixed_work - 10_000) < 1_000


def test_batches_of_one_size_leave_no_fixed_part() -> None:
    gov = ThreadGovernor([2, 1])
    _run(gov, lambda i, n: 1.0 / n, 100)
    assert gov.fixed_work == 0.0


def test_exploring_grows_rarer_while_the_best_holds_and_not_past_four_intervals() -> None:
    gov = ThreadGovernor([2, 1], explore_every=16, burst=3)
    used = _run(gov, lambda i, n: 1.0 / n, 1000)
    late = used[500:]
    assert late.count(1) <= len(late) * 3 / 64 + 3  # bursts every 64 steps, no more often
    assert late.count(1) >= len(late) * 3 / 64 - 6  # and still every 64 (the load may change)
