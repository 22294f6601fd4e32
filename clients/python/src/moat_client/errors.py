"""Exceptions for failures at the HTTP level.

A Python exception raised by the user's code is *not* one of these: Moat answers it with
HTTP 200 and the client returns it in `RunResult.error`, because the model must see it.
These classes are for what the caller's program must handle: a wrong token, an unknown
session, a full server.
"""

from __future__ import annotations

from typing import Any


class MoatError(Exception):
    """Base class of every error this package raises on its own."""


class MoatConnectionError(MoatError):
    """The server could not be reached, or did not answer in time."""


class MoatHTTPError(MoatError):
    """Moat answered with a non-2xx status.

    `name` and `message` come from the JSON body `{"error": {"name", "message"}}`; when the
    body is not of that shape (a proxy in front of Moat, say), `message` is the raw body.
    """

    def __init__(self, status: int, name: str, message: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status} {name}: {message}")
        self.status = status
        self.name = name
        self.message = message
        self.body = body


class BadRequestError(MoatHTTPError):
    """400: the request was refused: a malformed body (`message` names the field and why) or a
    `timeout_ms` above the policy's `limits.maxTimeoutMs` (`message` names the limit)."""


class AuthenticationError(MoatHTTPError):
    """401: the token is missing or wrong."""


class SessionNotFoundError(MoatHTTPError):
    """404: no session has that id (it was deleted, evicted, or never existed)."""


class PayloadTooLargeError(MoatHTTPError):
    """413: the request body is larger than the server's policy allows."""


class TooManyRequestsError(MoatHTTPError):
    """429: too many sessions or requests; retry later or delete unused sessions."""


class ServiceUnavailableError(MoatHTTPError):
    """503: the server is shutting down or has no capacity right now."""


class MoatServerError(MoatHTTPError):
    """Any other status (5xx included); a bug in Moat rather than in the caller."""


_BY_STATUS: dict[int, type[MoatHTTPError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: SessionNotFoundError,
    413: PayloadTooLargeError,
    429: TooManyRequestsError,
    503: ServiceUnavailableError,
}


def error_for_status(status: int, name: str, message: str, body: Any = None) -> MoatHTTPError:
    """Builds the exception class that fits `status`, so callers can catch just that case."""
    cls = _BY_STATUS.get(status, MoatServerError)
    return cls(status, name, message, body)
