"""Secrets for privacy, and the keyed hashes made with them. Nothing here is ever written into a store.

Three secrets, each read from the environment or from a file named by the environment (see docs/privacy.md):

* **The erasure secret** (``LMREC_SECRET`` or ``LMREC_SECRET_FILE``). It keys the tombstones of erased users
  and the user hashes written to logs and to the audit log. A tombstone is ``HMAC(secret, user id)``, so
  someone holding the store alone cannot test candidate ids against it (a salt stored beside the hashes would
  not stop that). When neither variable is set, a random secret is created once in the user's config directory
  (``platformdirs``; mode 0600) — outside the store and outside any backup.
* **The pseudonym secret** (``LMREC_PSEUDONYM_SECRET`` or ``LMREC_PSEUDONYM_SECRET_FILE``; unset: pseudonyms
  off). When set, raw user ids are replaced by :func:`Pseudonymiser.pseudonym` at every boundary (file
  loaders and imports, the HTTP API, the CLI), so stores, models, logs and the audit log hold only pseudonyms.
  A file may hold several keys, one per line, oldest first: the pseudonym is the chain
  ``HMAC(k_n, … HMAC(k_1, raw))``, so a rotation (``lmrec privacy rotate-pseudonyms``) re-keys stored
  pseudonyms without ever seeing a raw id.
* **The store key** (``LMREC_STORE_KEY`` or ``LMREC_STORE_KEY_FILE``; unset: a plain store): DuckDB's database
  encryption (AES-GCM) for the store file, its write-ahead log and its temporary files.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from platformdirs import user_config_dir

SECRET_ENV, SECRET_FILE_ENV = "LMREC_SECRET", "LMREC_SECRET_FILE"
PSEUDONYM_ENV, PSEUDONYM_FILE_ENV = "LMREC_PSEUDONYM_SECRET", "LMREC_PSEUDONYM_SECRET_FILE"
STORE_KEY_ENV, STORE_KEY_FILE_ENV = "LMREC_STORE_KEY", "LMREC_STORE_KEY_FILE"
#: A pseudonym: ``p_`` and 32 hex digits (128 bits of HMAC-SHA256).
PSEUDONYM_RE = re.compile(r"^p_[0-9a-f]{32}$")


class SecretError(RuntimeError):
    """A secret is configured but cannot be read, or is empty."""


def _read_secret_file(path: Path, what: str) -> list[str]:
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
    except OSError as exc:
        raise SecretError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from None
    keys = [ln for ln in lines if ln and not ln.startswith("#")]
    if not keys:
        raise SecretError(f"the {what} file {path} holds no key")
    return keys


def _configured(env: str, file_env: str, what: str) -> list[str] | None:
    """The keys set by ``env`` (one) or ``file_env`` (one per line), or ``None`` when neither is set.
    Read once per (variable values, file modification time): a request does not reread the file."""
    file = os.environ.get(file_env)
    try:
        stamp = Path(file).expanduser().stat().st_mtime_ns if file else None
    except OSError:
        stamp = None
    return _configured_cached(env, file_env, what, os.environ.get(env), file, stamp)


@functools.lru_cache(maxsize=32)
def _configured_cached(env: str, file_env: str, what: str, value: str | None, file: str | None,
                       stamp: int | None) -> list[str] | None:
    if value is not None:
        if not value.strip():
            raise SecretError(f"{env} is set but empty")
        return [value.strip()]
    if file:
        return _read_secret_file(Path(file).expanduser(), what)
    return None


def default_secret_path() -> Path:
    """Where the erasure secret is created when none is configured: the user's config directory."""
    return Path(user_config_dir("lmrec")) / "secret"


def erasure_secret() -> bytes:
    """The erasure secret (created once, at :func:`default_secret_path`, when none is configured)."""
    keys = _configured(SECRET_ENV, SECRET_FILE_ENV, "erasure secret")
    if keys is not None:
        return keys[-1].encode()
    path = default_secret_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (secrets.token_hex(32) + "\n").encode())
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    keys = _configured_cached(SECRET_ENV, str(path), "erasure secret", None, str(path),
                              path.stat().st_mtime_ns)
    assert keys is not None
    return keys[-1].encode()


def keyed_hash(secret: bytes, value: str, purpose: str) -> str:
    """``HMAC-SHA256(secret, purpose NUL value)`` in hex; ``purpose`` keeps hashes of one use from matching
    another's."""
    return hmac.new(secret, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()


def user_tag(user_id: str) -> str:
    """What logs and the audit log write instead of a user id: 16 hex digits keyed by the erasure secret."""
    return "u:" + keyed_hash(erasure_secret(), str(user_id), "log")[:16]


@dataclass(frozen=True)
class Pseudonymiser:
    """Raw user id → pseudonym, with a chain of keys (oldest first) so that rotations compose."""

    keys: tuple[str, ...]

    def pseudonym(self, raw_id: str) -> str:
        value = str(raw_id)
        for key in self.keys:
            value = self._step(key, value)
        return value

    @staticmethod
    def _step(key: str, value: str) -> str:
        return "p_" + hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]

    def rotate(self, stored: str, new_key: str) -> str:
        """The pseudonym under ``keys + (new_key,)`` of an id whose pseudonym under ``keys`` is ``stored``."""
        return self._step(new_key, stored)

    def frame(self, df: pl.DataFrame | None, column: str = "user_id") -> pl.DataFrame | None:
        """``df`` with ``column`` replaced by pseudonyms (unchanged when it has no such column)."""
        if df is None or column not in df.columns or df.height == 0:
            return df
        raw = df[column].cast(pl.String)
        uniq = raw.unique().drop_nulls().to_list()
        mapping = {u: self.pseudonym(u) for u in uniq}
        keyed = raw.replace_strict(mapping, default=None, return_dtype=pl.String)
        return df.with_columns(keyed.alias(column))


def pseudonymiser() -> Pseudonymiser | None:
    """The configured :class:`Pseudonymiser`, or ``None`` when pseudonyms are off."""
    keys = _configured(PSEUDONYM_ENV, PSEUDONYM_FILE_ENV, "pseudonym secret")
    return None if keys is None else Pseudonymiser(tuple(keys))


def user_key(raw_id: str) -> str:
    """The id under which lmrec stores a user: the pseudonym when pseudonyms are on, the raw id otherwise."""
    p = pseudonymiser()
    return str(raw_id) if p is None else p.pseudonym(raw_id)


def rotation_marker(new_key: str) -> str:
    """A name for the rotation to ``new_key`` that says nothing about the key (it is kept in the store and in
    model folders so that an interrupted rotation can be run again)."""
    return hashlib.sha256(f"lmrec-rotation\0{new_key}".encode()).hexdigest()[:16]


def store_key() -> str | None:
    """The store's encryption key, or ``None`` for a plain store."""
    keys = _configured(STORE_KEY_ENV, STORE_KEY_FILE_ENV, "store key")
    return None if keys is None else keys[-1]
