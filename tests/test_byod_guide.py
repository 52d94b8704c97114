"""docs/data.md, "bring your own data", walked end to end: the commands are read from the page itself (its
```bash block under "## The commands") and run as a user would, on the shipped examples/byod files, in a fresh
folder: import → embed → train → evaluate → recommend → serve (one request)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import polars as pl
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "data.md"
#: Longest any one command may take on a busy 2-core machine (embedding loads MiniLM; serve loads it too).
COMMAND_TIMEOUT_S = 600


def guide_commands() -> list[str]:
    """The shell lines of the guide's command block, continuation lines joined, comments dropped."""
    text = GUIDE.read_text()
    section = text.split("## The commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the guide's commands are one ```bash block under '## The commands'"
    joined = blocks[0].replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_the_guide_names_every_step() -> None:
    cmds = guide_commands()
    verbs = [shlex.split(c)[:2] for c in cmds]
    for step in (["lmrec", "data"], ["lmrec", "embed"], ["lmrec", "train"], ["lmrec", "evaluate"],
                 ["lmrec", "recommend"], ["lmrec", "serve"], ["curl"]):
        assert any(v[: len(step)] == step for v in verbs), f"the guide has no {' '.join(step)} step"
    assert all(c.startswith(("lmrec ", "curl ")) for c in cmds), cmds


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_bring_your_own_data_guide_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(REPO / "examples")
    env = {k: v for k, v in os.environ.items() if k != "LMREC_STORE"}
    env.update(PYTHONPATH=str(REPO / "src"), HF_HUB_OFFLINE="1", LMREC_CACHE_DIR=str(tmp_path / "cache"))
    lmrec = [sys.executable, "-c", "from lmrec.entry import main; main()"]
    port = _free_port()
    outputs: dict[str, str] = {}
    server: subprocess.Popen[bytes] | None = None
    answer = None
    try:
        for line in guide_commands():
            args = shlex.split(line)
            if args[0] == "curl":
                url = re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", args[-1])
                assert server is not None, "the guide asks the service before starting it"
                deadline = time.monotonic() + COMMAND_TIMEOUT_S
                while True:  # the service loads the model and the text encoder first
                    if server.poll() is not None:
                        raise AssertionError(f"lmrec serve exited: {(tmp_path / 'serve.log').read_text()}")
                    try:
                        answer = httpx.get(url, timeout=30)
                        if answer.status_code != 503:
                            break
                    except httpx.HTTPError:
                        pass
                    assert time.monotonic() < deadline, "lmrec serve did not answer in time"
                    time.sleep(0.5)
                continue
            assert args[0] == "lmrec"
            if args[1] == "serve":
                args = [a if a != "8000" else str(port) for a in args]
                log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 (kept open while it runs)
                server = subprocess.Popen(lmrec + args[1:], cwd=tmp_path, env=env, stdout=log,
                                          stderr=subprocess.STDOUT)
                continue
            r = subprocess.run(lmrec + args[1:], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=COMMAND_TIMEOUT_S)
            out = " ".join((r.stdout + r.stderr).split())
            assert r.returncode == 0, f"{line}\n{out[-3000:]}"
            assert "Traceback" not in out, out[-3000:]
            outputs[" ".join(args[1:3])] = outputs.get(" ".join(args[1:3]), "") + out
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)

    # what the guide says each step prints
    assert "read 813 rows, kept 813, dropped 0" in outputs["data import"]
    assert "user_id←visitor, item_id←product, timestamp←when, event_type←action" in outputs["data import"]
    assert "(dataset 'clicks') now holds 813 events, 48 items" in outputs["data import"]
    assert "2024-03-01 → 2024-03-16" in outputs["data stats"]
    assert "data: store lmrec.duckdb (the store here" in outputs["embed items"]
    assert "48 items of clicks" in outputs["embed items"]
    assert "of clicks" in outputs["train ease"] and "NDCG@10" in outputs["evaluate ease"]
    assert (tmp_path / "reports" / "shop" / "report.html").exists()
    assert "wrote top-5 for 80 users to top5.csv" in outputs["recommend models/shop-ease"]
    top = pl.read_csv(tmp_path / "top5.csv")
    assert top.height == 400 and top["user_id"].n_unique() == 80
    # one request to the service: the visitor's top 5 with titles and categories
    assert answer is not None and answer.status_code == 200, answer and answer.text
    body = answer.json()
    assert body["user_id"] == "v001" and len(body["items"]) == 5 and body["fallback"] is None
    products = pl.read_csv(REPO / "examples" / "byod" / "products.csv")
    titles = dict(zip(products["sku"], products["name"], strict=True))
    assert all(i["title"] == titles[i["item_id"]] and i["categories"] for i in body["items"])
