"""``import lmrec`` makes idle OpenMP threads sleep (``OMP_WAIT_POLICY=PASSIVE``) unless the user chose a
policy, before anything loads the OpenMP runtime (benchmarks/omp_wait_policy.py measures why)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _policy_after_import(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(SRC)
    if env_value is not None:
        env["OMP_WAIT_POLICY"] = env_value
    code = "import lmrec, os, sys; assert 'torch' not in sys.modules; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=True)
    return out.stdout.strip()


def test_lmrec_sets_a_passive_wait_policy_before_torch_loads() -> None:
    assert _policy_after_import(None) == "PASSIVE"


def test_a_policy_the_user_set_is_kept() -> None:
    assert _policy_after_import("ACTIVE") == "ACTIVE"
