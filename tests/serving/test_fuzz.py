"""Schemathesis against the running service, with and without keys: no generated request is a server error.

A short run here (the long one is ``benchmarks/fuzz_api.py``). Requests are counted by the service's own
metrics, so the test knows how many it answered and with which statuses.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lmrec.store.keys import KeyStore

pytestmark = pytest.mark.slow

st_bin = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))


def _statuses(metrics: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in re.finditer(r'lmrec_requests_total\{[^}]*status="(\d+)"\} ([0-9.e+]+)', metrics):
        out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(2))
    return out


@pytest.mark.skipif(not Path(st_bin).exists(), reason="schemathesis is not installed")
@pytest.mark.parametrize("with_keys", [True, False])
def test_generated_requests_get_no_server_error(start, tmp_path: Path, with_keys: bool) -> None:
    s = start(dev_mode=not with_keys, backup_dir=tmp_path / "backups")
    headers = []
    if with_keys:
        key, _ = KeyStore(s.store).create("fuzz", ["admin"])
        headers = ["-H", f"X-API-Key: {key}"]
    cmd = [st_bin, "run", f"{s.url}/openapi.json", "--checks", "not_a_server_error", "--max-examples", "25",
           "--seed", "1", "--request-timeout", "30", "--no-color", "--continue-on-failure", *headers]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    statuses = _statuses(s.get("/metrics").text)
    served = sum(statuses.values())
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert not any(code.startswith("5") for code in statuses), statuses
    assert served >= 500, (served, proc.stdout[-2000:])
