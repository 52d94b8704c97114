"""Write one benchmark's results into its own section of docs/benchmarks.md (other sections kept).

Each section is framed by ``<!-- BEGIN name -->`` / ``<!-- END name -->``; a file lock keeps concurrent
writers from losing each other's sections. Every section states the machine, the command and the seed.

What people write about a section's figures (what changed, why, what was tried) goes between
``<!-- NOTES name -->`` and ``<!-- END NOTES name -->`` inside it: a rerun replaces the generated part and
carries that block over unchanged, after the new body (before, such prose was lost at every rerun).
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Every number here was written by a script in `benchmarks/`; each section names its command, data, seed and
machine. Re-run a section with its command; the script replaces only its own section, and refuses to leave
it with fewer table rows unless `LMREC_SECTION_SHRINK=1` (the result caches in `benchmarks/.cache` are not in
git).
"""


def read_cached(cache: Path) -> list[dict]:
    """The runs a resumable benchmark cached, one JSON object per line (none when the file is absent)."""
    if not cache.exists():
        return []
    return [json.loads(line) for line in cache.read_text().splitlines() if line.strip()]


def append_cached(cache: Path, row: dict) -> None:
    """Cache one finished run (a line of JSON), so an interrupted benchmark resumes after it."""
    with open(cache, "a") as fh:
        fh.write(json.dumps(row) + "\n")


def machine() -> str:
    """A one-line description of this machine."""
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {gpu}, Python {platform.python_version()}"


def command() -> str:
    python = Path(sys.executable).name.replace("python3", "python")
    return " ".join(shlex.quote(a) for a in [python, *sys.argv])


def wall_and_load(t0: float) -> str:
    """The line a report ends with: wall time since ``t0`` (``time.perf_counter()``) and the load average."""
    import os
    import time

    load = os.getloadavg()
    return (f"Wall time {time.perf_counter() - t0:.0f} s; load average at the end {load[0]:.1f} / "
            f"{load[1]:.1f} / {load[2]:.1f} (1/5/15 min).")


class SectionShrinks(RuntimeError):
    """A rerun would replace a section with fewer table rows than it has (see :func:`write_section`)."""


#: Set to 1 to let a rerun replace a section with fewer table rows (a benchmark that now measures less).
SHRINK_ENV = "LMREC_SECTION_SHRINK"


def _table_rows(text: str) -> int:
    """Markdown table rows in ``text``, header rows included and separator rows (``|---|``) not."""
    return sum(1 for line in text.splitlines()
               if line.startswith("|") and not re.fullmatch(r"[|\s:-]+", line.strip()))


def write_section(name: str, body: str, doc: Path = DOC) -> Path:
    """Replace (or append) section ``name`` with ``body`` and a footer: date, machine and command; the
    section's notes block (``<!-- NOTES name -->`` … ``<!-- END NOTES name -->``), if any, is kept.

    A rerun that would leave the section with fewer table rows than it has is refused
    (:class:`SectionShrinks`) unless ``LMREC_SECTION_SHRINK=1``, and the new section is written beside the
    document instead (``benchmarks.<name>.new.md``): most sections are rebuilt from a result cache that git
    does not keep (``benchmarks/.cache``), so on a new checkout a script rerun for one row would otherwise
    drop every row measured before, silently."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    footer = f"\n_Measured {stamp} on {machine()}. Command: `{command()}`._\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    with open(doc.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = doc.read_text() if doc.exists() else HEADER
        pattern = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S)
        old = pattern.search(text)
        notes = re.search(rf"<!-- NOTES {re.escape(name)} -->.*?<!-- END NOTES {re.escape(name)} -->", old[0],
                          re.S) if old else None
        kept = f"\n{notes[0]}\n" if notes else ""
        block = f"<!-- BEGIN {name} -->\n{body.rstrip()}\n{kept}{footer}<!-- END {name} -->"
        if old and os.environ.get(SHRINK_ENV) != "1":
            before = _table_rows(old[0].replace(notes[0], "") if notes else old[0])
            after = _table_rows(body)
            if after < before:
                side = doc.with_name(f"{doc.stem}.{name}.new.md")
                side.write_text(block + "\n")
                raise SectionShrinks(
                    f"section {name!r} of {doc} would go from {before} to {after} table rows (is this "
                    f"checkout missing the result cache of its earlier runs?); left as it was, the new "
                    f"section is in {side}; {SHRINK_ENV}=1 replaces it")
        text = pattern.sub(lambda _: block, text) if old else text.rstrip() + "\n\n" + block + "\n"
        doc.write_text(text)
    return doc
