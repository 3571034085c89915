"""Errors of the config layer, split by what the caller should do about them.

The API maps them to HTTP answers: ``NotFound`` -> 404, ``AlreadyExists`` -> 409, any other
``ValidationError`` -> 400 (its message says what to fix), ``StoreError`` -> 503.
"""

from __future__ import annotations


class ConfigError(Exception):
    """Base class of every error raised by ``gateway.config``."""


class ValidationError(ConfigError):
    """A request or a resulting state breaks a rule; ``str(err)`` says what to fix."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(ValidationError):
    """The request names an entity that does not exist."""


class AlreadyExists(ValidationError):
    """The request would create an entity that already exists."""


class ConflictError(ConfigError):
    """A compare-and-set lost: the stored version is not the one the change was based on."""

    def __init__(self, expected: int, message: str = "") -> None:
        super().__init__(message or f"config changed since version {expected} was read")
        self.expected = expected


class RetriesExhausted(ConfigError):
    """``update`` lost the compare-and-set too many times in a row."""


class StoreError(ConfigError):
    """The store could not be read or written (cluster unreachable, object unreadable...)."""


class SecretError(ConfigError):
    """A CHAP secret could not be encrypted or decrypted (key files missing or wrong)."""
