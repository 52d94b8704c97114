"""A throw-away PostgreSQL server for tests and benchmarks: ``initdb`` into a temporary folder, ``postgres``
on a free port, removed on :meth:`TempPostgres.stop`.

The server binaries come from, in order: ``LMREC_PG_BINDIR``; the ``pgserver`` wheel (PyPI, installed by
``make test`` through the ``pg`` extra: it ships PostgreSQL 16 built for manylinux, no system package
needed); ``pg_config --bindir``; ``/usr/lib/postgresql/*/bin``; ``initdb`` on ``PATH``. ``LMREC_TEST_PG_URL``
points the tests at a server already running instead (a CI service container). PostgreSQL refuses to run as
root: under root the server runs as the ``postgres`` user (or ``nobody``).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``, or ``None``."""
    env = os.environ.get("LMREC_PG_BINDIR")
    candidates: list[Path] = [Path(env)] if env else []
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        candidates.append(Path(out.stdout.strip()))
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    if (which := shutil.which("initdb")) is not None:
        candidates.append(Path(which).resolve().parent)
    for c in candidates:
        if (c / "initdb").is_file() and (c / "postgres").is_file():
            return c
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TempPostgres:
    """A PostgreSQL server in a temporary folder.

    Parameters
    ----------
    durable:
        ``False`` (tests): ``fsync=off`` and friends; a crash may lose data, but nothing crashes the server
        in a test. ``True`` (durability drills, load figures): the server's defaults (``fsync=on``,
        ``synchronous_commit=on``).
    """

    def __init__(self, durable: bool = False, max_connections: int = 200) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise FileNotFoundError(
                "no PostgreSQL server binaries: `pip install pgserver` (the `pg` extra, which `make test` "
                "installs), install the Debian `postgresql` package, or set LMREC_PG_BINDIR")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="lmrec-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                with contextlib.suppress(KeyError):
                    self.user = pwd.getpwnam(name)
                    break
        self.root.chmod(0o755)
        self.data.mkdir(mode=0o700)
        if self.user is not None:
            for p in (self.root, self.data):
                os.chown(p, self.user.pw_uid, self.user.pw_gid)
        self._run([str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                   "--encoding=UTF8", "--no-sync"])
        opts = ["-c", f"max_connections={max_connections}", "-c", "listen_addresses=127.0.0.1",
                "-c", f"unix_socket_directories={self.root}", "-c", "shared_buffers=128MB"]
        if not durable:
            opts += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        self.log = self.root / "server.log"
        logf = open(self.log, "ab")  # noqa: SIM115 - kept open by the server process
        if self.user is not None:
            os.chown(self.log, self.user.pw_uid, self.user.pw_gid)
        self.proc = subprocess.Popen([str(bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                                      *opts], stdout=logf, stderr=subprocess.STDOUT, **self._as_user())
        logf.close()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._wait_ready(60.0)

    def _as_user(self) -> dict[str, object]:
        return {"user": self.user.pw_uid, "group": self.user.pw_gid} if self.user is not None else {}

    def _run(self, cmd: list[str]) -> None:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **self._as_user())  # type: ignore[call-overload]
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip() or done.stdout.strip()}")

    def _wait_ready(self, timeout_s: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not accept connections within {timeout_s:g} s: "
                                       f"{self.log.read_text()[-2000:]}") from None
                time.sleep(0.1)

    def new_database(self, prefix: str = "t") -> str:
        """Create an empty database; returns its URL."""
        return create_database(self.url, prefix)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # smart shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> TempPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def create_database(server_url: str, prefix: str = "t") -> str:
    """A new empty database on the server of ``server_url``; returns its URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    base, _, rest = server_url.rpartition("/")
    query = rest.partition("?")[2]
    return f"{base}/{name}" + (f"?{query}" if query else "")
