"""Errors the serving engine raises; the app turns each into one HTTP status with a plain message."""

from __future__ import annotations


class ServingError(Exception):
    """Base class: ``status`` is the HTTP status the app answers with, ``code`` a short machine-readable
    name."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(ServingError):
    """An unknown (or erased) user, item or model version."""

    status = 404
    code = "not_found"


class CapabilityError(ServingError):
    """The active model (or the service's configuration) cannot answer this request."""

    status = 409
    code = "not_supported"

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class InvalidRequestError(ServingError):
    """A well-formed request that asks for something impossible (e.g. more items than the batch limit)."""

    status = 422
    code = "invalid_request"


class CommitError(ServingError):
    """Events could not be committed to the store (named by index); nothing else was lost."""

    status = 503
    code = "not_stored"


class RateLimitedError(ServingError):
    """The key sent more requests than its rate allows; retry after ``retry_after`` seconds."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
