"""API keys on requests: ``X-API-Key: lmrec_<id>_<secret>`` (or ``Authorization: Bearer ...``), with scopes.

``read`` for recommendations and lookups, ``write`` for events and items, ``admin`` for erasure and model
swaps. In dev mode (``LMREC_DEV_MODE=1``) no key is needed. Verified keys are trusted in memory for a few
seconds, so a request costs no store round trip; a revocation takes effect within that time (at once where
replicas share a PostgreSQL store: its notice drops the cache). Rate limits are a token bucket per key, in
this process's memory, or, where replicas share the store, one bucket in the database for all of them.
"""

from __future__ import annotations

import math
import threading
import time

from lmrec.serving.errors import RateLimitedError
from lmrec.serving.replicas import shares_store
from lmrec.store.keys import ApiKey, KeyStore


class AuthError(Exception):
    """401 (no or bad key) or 403 (the key lacks the scope)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Authenticator:
    """Checks presented keys against the store.

    Parameters
    ----------
    keys:
        Where keys live.
    required:
        ``False`` in dev mode: every request is allowed.
    cache_seconds:
        How long a verified key is trusted without asking the store again.
    """

    def __init__(self, keys: KeyStore, required: bool, cache_seconds: float = 2.0, rate_per_s: float = 0.0,
                 burst: float = 0.0) -> None:
        self.keys = keys
        self.required = required
        self.cache_seconds = cache_seconds
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # key id → (tokens, when counted)
        self._lock = threading.Lock()
        #: Replicas share the store: the buckets live there (one per key for every replica).
        self.shared = shares_store(keys.store)

    def forget(self) -> None:
        """Drop every cached verification (after a key is revoked here: it is refused from the next
        request)."""
        with self._lock:
            self._cache.clear()

    def take(self, key: ApiKey | None) -> None:
        """Spend one request of the key's rate (a token bucket); :class:`RateLimitedError` when it is
        empty."""
        if key is None:
            return
        rate = key.rate_limit if key.rate_limit is not None else self.rate_per_s
        if not rate or rate <= 0:
            return
        cap = max(1.0, self.burst or rate)
        if self.shared:
            wait = self.keys.store.take_token(key.key_id, rate, cap)
            if wait > 0:
                raise RateLimitedError(f"key {key.key_id} is limited to {rate:g} requests/s; retry in "
                                       f"{math.ceil(wait)} s", retry_after=wait)
            return
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key.key_id, (cap, now))
            tokens = min(cap, tokens + (now - then) * rate)
            if tokens < 1.0:
                self._buckets[key.key_id] = (tokens, now)
                wait = (1.0 - tokens) / rate
                raise RateLimitedError(f"key {key.key_id} is limited to {rate:g} requests/s; retry in "
                                       f"{math.ceil(wait)} s", retry_after=wait)
            self._buckets[key.key_id] = (tokens - 1.0, now)

    def check(self, presented: str | None, scope: str) -> ApiKey | None:
        """The key record when ``presented`` grants ``scope``; ``None`` in dev mode; :class:`AuthError`
        otherwise."""
        if not self.required:
            return None
        if not presented:
            raise AuthError(401, "an API key is required: send it as the X-API-Key header")
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(presented)
        if hit is not None and hit[0] > now:
            record = hit[1]
        else:
            record = self.keys.verify(presented)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[presented] = (now + self.cache_seconds, record)
        if record is None:
            raise AuthError(401, "invalid or revoked API key")
        if not record.allows(scope):
            raise AuthError(403, f"this key has scopes {list(record.scopes)}; this request needs {scope!r}")
        return record
