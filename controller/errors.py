"""The one error hierarchy of the controller; HTTP statuses are mapped at the API edge.

It sits below every layer (domain, engine, services, runtime): a service that fails raises
the same errors a use case does, without importing the domain layer.

An error is read by a person who came in one of two ways: the REST API or the `mailyard`
command. Its `message` says what is wrong and what to do in words that fit both ("create
it first"); when the remedy is a particular request or command, the error carries an
`Action` naming it for each way in, and each edge renders its own: the API says
"POST /api/v1/domains", the command says "mailyard domain add example.org". Neither edge
ever shows the other's paths or commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Audience = Literal["api", "cli"]


@dataclass(frozen=True)
class Action:
    """The request (`api`) and the command line (`cli`) that do what a message asks."""

    api: str
    cli: str


class MailyardError(Exception):
    """Base of every error a caller can act on. `message` is written for a person;
    `action`, if any, is appended as ': <how>' in the reader's terms (see `text`)."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        extra: dict[str, object] | None = None,
        action: Action | None = None,
    ) -> None:
        self.message = message
        self.action = action
        super().__init__(self.text("api"))
        self.field = field
        # Machine-readable details added to the problem document (e.g. an apply's id).
        self.extra = extra or {}

    def text(self, audience: Audience) -> str:
        """The whole sentence for a reader of the API or of the `mailyard` command."""
        if self.action is None:
            return self.message
        return f"{self.message}: {getattr(self.action, audience)}"

    def __str__(self) -> str:
        # Server-side logs and API answers: the API's words.
        return self.text("api")


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
