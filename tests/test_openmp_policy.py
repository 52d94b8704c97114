"""``import lmrec`` makes idle OpenMP threads spin only briefly before they sleep (``GOMP_SPINCOUNT=1000``,
``KMP_BLOCKTIME=0``) unless the user chose, before anything loads the OpenMP runtime
(benchmarks/omp_wait_policy.py measures why)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
NAMES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def _openmp_env_after_import(**given: str) -> dict[str, str | None]:
    env = {k: v for k, v in os.environ.items() if k not in NAMES}
    env["PYTHONPATH"] = str(SRC)
    env.update(given)
    code = ("import json, lmrec, os, sys; assert 'torch' not in sys.modules; "
            f"print(json.dumps({{k: os.environ.get(k) for k in {NAMES!r}}}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=True)
    return json.loads(out.stdout.strip())


def test_lmrec_sets_a_short_spin_before_torch_loads() -> None:
    assert _openmp_env_after_import() == {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "1000",
                                          "KMP_BLOCKTIME": "0"}


@pytest.mark.parametrize("name", NAMES)
def test_a_choice_the_user_made_is_kept_and_nothing_is_added(name: str) -> None:
    got = _openmp_env_after_import(**{name: "7"})
    assert got == {k: ("7" if k == name else None) for k in NAMES}
