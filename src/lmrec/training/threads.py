"""CPU threads that stay fast when the machine is busy.

Giving every training process one thread per core is fastest on an idle machine and collapses on a busy one:
PyTorch's intra-op pool waits at a barrier after every parallel kernel, so when another process takes one of
the cores, the threads that did their share spin until the descheduled one runs again. Measured on a 2-core
machine with two CPU-burning processes beside a SeqRec fit, 2 threads took 9.1 s per epoch and 1 thread 6.0 s
(idle: 2.7 s and 3.7 s); at a load of 10–14 the gap grew to an order of magnitude.

:class:`ThreadGovernor` does not guess from the load average (which lags by a minute and counts our own
threads): it times the training steps themselves. Each step's seconds are divided by its work, an
exponential average per thread count is kept, the cheapest count is used, and every ``explore_every`` steps a
short burst tries another count so the choice follows the load as it changes.

A step's work is the elements of its batch plus a fixed part that every step pays whatever its size (a
network that encodes its whole item table each step, the optimiser): seconds per element alone make a short
batch look dear and a long one cheap, and length-bucketed batches then made the count that happened to
explore on long batches look faster (a quiet 2-core machine ran 1,260 of the 1,681 steps of SeqRec's default
fit on the Amazon Office set at 1 thread, which is about 1.3× slower there than 2; with this estimate, and the
short OpenMP spin below, 262 of 1,517; docs/benchmarks.md, section seqrec-defaults). The fixed part is
estimated from the steps themselves: a least-squares line of seconds against elements over the recent steps
at the best count, whose intercept over slope is that part in elements.

Exploring costs at most ``burst / explore_every`` of the steps at a worse count, and less while the choice
holds: each burst that confirms the best count doubles the interval (up to ``4 × explore_every``), and one
that overturns it brings it back to ``explore_every`` (a change of the best between bursts does not).

A fixed thread count (``num_threads``, a distributed rank, another library in the same process) has no
governor; what keeps it from collapsing is that idle pool threads spin only briefly before they sleep:
``import lmrec`` sets ``GOMP_SPINCOUNT=1000`` and ``KMP_BLOCKTIME=0`` unless the user set one of them or
``OMP_WAIT_POLICY`` (section ``omp-wait-policy`` of docs/benchmarks.md measures the runtime's long spin, no
spin and this short one, beside CPU-burning processes and on a quiet machine).
"""

from __future__ import annotations

import math

import torch

from lmrec.training.distributed import machine_threads


def thread_candidates(max_threads: int) -> list[int]:
    """``max_threads``, then 1, then the powers of two in between (largest first): the counts worth trying."""
    max_threads = max(1, max_threads)
    between = [2**i for i in range(int(math.log2(max_threads)), 0, -1) if 1 < 2**i < max_threads]
    return list(dict.fromkeys([max_threads, 1, *between]))


class ThreadGovernor:
    """Chooses, step by step, the intra-op thread count that trains fastest right now.

    Call :meth:`before_step` before a training step (it sets ``torch.set_num_threads``) and
    :meth:`after_step` with the step's wall seconds and its work. With one candidate (a 1-core machine, or
    a fixed ``num_threads``) it only sets that count once.

    Parameters
    ----------
    candidates:
        Thread counts to choose among (see :func:`thread_candidates`); the first is tried first.
    explore_every:
        Steps between two exploration bursts.
    burst:
        Consecutive steps an exploration runs at the other count (the first of them is not measured: the
        pool may be resizing).
    alpha:
        Weight of the newest measurement in each count's running cost.
    """

    def __init__(self, candidates: list[int], explore_every: int = 16, burst: int = 3,
                 alpha: float = 0.3) -> None:
        if not candidates:
            raise ValueError("no thread count to choose from")
        self.candidates = list(dict.fromkeys(int(c) for c in candidates))
        self.explore_every = max(2, explore_every)
        self.burst = max(2, burst)
        self.alpha = alpha
        self.cost: dict[int, float] = {}  # seconds per unit of work, running average
        self.steps: dict[int, int] = dict.fromkeys(self.candidates, 0)
        self._step = 0
        self._current = 0
        self._run = 0  # consecutive steps at the current count
        self._exploring: int | None = None
        self._next_explore = 0  # round-robin over the non-best counts
        self._interval = self.explore_every  # steps between bursts now (grows while the best holds)
        self._explore_at = self.explore_every  # the step of the next burst
        self._burst_best = 0  # the best count when the running burst began
        #: decayed sums (weight, elements, seconds, elements², elements·seconds) of the steps at the best
        #: count, for the line whose intercept is the fixed part of a step (:attr:`fixed_work`)
        self._line = [0.0] * 5

    @classmethod
    def for_training(cls, num_threads: int, world_size: int, adaptive: bool = True) -> ThreadGovernor:
        """``num_threads > 0``: exactly that many. ``0``: this process's share of the cores (the cores
        divided by the processes on them), or, when ``adaptive``, whichever count from 1 to that share
        trains fastest."""
        if num_threads > 0:
            return cls([num_threads])
        share = max(1, machine_threads() // max(1, world_size))
        return cls(thread_candidates(share) if adaptive else [share])

    @property
    def adaptive(self) -> bool:
        return len(self.candidates) > 1

    @property
    def best(self) -> int:
        """The cheapest count measured so far (the first candidate before any measurement)."""
        if not self.cost:
            return self.candidates[0]
        return min(self.cost, key=self.cost.__getitem__)

    @property
    def current(self) -> int:
        return self._current or self.candidates[0]

    def choose(self) -> int:
        """The count for the next step."""
        if not self.adaptive:
            return self.candidates[0]
        untried = [c for c in self.candidates if self.steps[c] < self.burst]
        if untried:  # measure every count once before trusting any
            return untried[0]
        if self._exploring is not None:
            if self._run < self.burst:
                return self._exploring
            self._exploring = None
            # the burst confirmed the best count: explore less often; it overturned it: as often as at first
            held = self.best == self._burst_best
            self._interval = min(4 * self.explore_every, 2 * self._interval) if held else self.explore_every
            self._explore_at = self._step + self._interval
        if self._step >= self._explore_at:
            others = [c for c in self.candidates if c != self.best]
            self._burst_best = self.best
            self._exploring = others[self._next_explore % len(others)]
            self._next_explore += 1
            return self._exploring
        return self.best

    @property
    def fixed_work(self) -> float:
        """The part of a step's work that does not grow with its elements, in elements (0 until the recent
        steps at the best count vary enough in size to tell, or when they say nothing fixed)."""
        w, sx, sy, sxx, sxy = self._line
        if w < 8:
            return 0.0
        mx, my = sx / w, sy / w
        var = sxx / w - mx * mx
        if var <= (0.05 * mx) ** 2:  # batches (nearly) all one size: the intercept is not identified
            return 0.0
        slope = (sxy / w - mx * my) / var
        if slope <= 0:
            return 0.0
        return max(0.0, min(my / slope - mx, 100.0 * mx))

    def before_step(self) -> int:
        n = self.choose()
        if n != self._current:
            torch.set_num_threads(n)
            self._current, self._run = n, 0
        return n

    def after_step(self, seconds: float, work: float) -> None:
        """Record one step run at the current count: its wall time and its work (> 0)."""
        n = self.current
        self._step += 1
        self._run += 1
        self.steps[n] = self.steps.get(n, 0) + 1
        if not self.adaptive or self._run == 1 or work <= 0:
            return  # the first step after a switch may pay for resizing the pool
        if n == self.best:
            decay = 1.0 - self.alpha / 8  # the line spans a few dozen steps, so it follows the load slowly
            self._line = [decay * a + b for a, b in
                          zip(self._line, (1.0, work, seconds, work * work, work * seconds), strict=True)]
        c = seconds / (work + self.fixed_work)
        self.cost[n] = c if n not in self.cost else (1 - self.alpha) * self.cost[n] + self.alpha * c

