"""Domain errors. They know nothing about HTTP; ``http/errors.py`` maps them to responses."""

from typing import Any


class FlowyardError(Exception):
    """Base of every error a client can cause or observe."""

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Invalid(FlowyardError):
    """The request is malformed or a field is out of range."""


class Unauthorized(FlowyardError):
    """No key, an unknown key, or a revoked key."""


class Forbidden(FlowyardError):
    """The key lacks a scope or is not an admin key."""


class NotFound(FlowyardError):
    """The object does not exist in the caller's project."""


class MethodNotAllowed(FlowyardError):
    """The route exists but not with this method."""


class Conflict(FlowyardError):
    """The object's state does not allow the operation."""


class PayloadTooLarge(FlowyardError):
    """A body, payload or result is over its size limit."""


class UnsupportedMediaType(FlowyardError):
    """The body is not sent as JSON."""


class InsufficientTokens(FlowyardError):
    """The project's token balance does not cover the call."""


class RateLimited(FlowyardError):
    """The project is over its request rate."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(FlowyardError):
    """Not ready yet, shutting down, or overloaded."""


class MailboxFull(Unavailable):
    """An actor's bounded mailbox cannot take another message."""


def invalid_field(path: str, message: str) -> Invalid:
    """A 400 naming one field."""
    return Invalid(f"{path}: {message}", [{"path": path, "message": message}])
