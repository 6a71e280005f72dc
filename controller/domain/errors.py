"""The one error hierarchy of the domain layer; HTTP statuses are mapped at the API edge."""

from __future__ import annotations


class MailyardError(Exception):
    """Base of every error a caller can act on. `message` is written for a person."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        # Machine-readable details added to the problem document (e.g. an apply's id).
        self.extra = extra or {}


class InvalidInput(MailyardError):
    """The request is well-formed but a value is unacceptable (HTTP 422)."""


class NotFound(MailyardError):
    """The object does not exist, or the caller may not know that it exists (HTTP 404)."""


class Conflict(MailyardError):
    """The change clashes with existing data, e.g. a duplicate address (HTTP 409)."""


class Forbidden(MailyardError):
    """The caller is known but its token does not allow this (HTTP 403)."""


class Unauthenticated(MailyardError):
    """No valid credentials were presented (HTTP 401)."""


class Unavailable(MailyardError):
    """A service the request needs is down or unreachable; retry later (HTTP 503)."""
