"""One error type for everything a user can get wrong, with a stable code.

Every code is listed in docs/errors.md. The exit code tells scripts and agents which
family of failure happened without parsing text.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2  # usage or configuration error
EXIT_GATE = 3  # a gate refused
EXIT_FORBIDDEN = 4  # not permitted
EXIT_TARGET = 5  # a deploy target failed


def one_line(text: object, limit: int = 300) -> str:
    """Any text as one line of at most `limit` characters: what a user error message quotes
    (a YAML parser's report, a value from a file) must not break the one-line contract."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class UDError(Exception):
    """A failure the user can act on: a code, what is wrong, and what to do."""

    exit_code = EXIT_USAGE

    def __init__(
        self, code: str, message: str, remediation: str = "", *, exit_code: int | None = None
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.remediation = remediation
        if exit_code is not None:
            self.exit_code = exit_code

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "message": self.message,
            "remediation": self.remediation,
            "exit_code": self.exit_code,
        }

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" + (
            f" ({self.remediation})" if self.remediation else ""
        )


class ConfigError(UDError):
    """A unit, gate or resource declaration that cannot be loaded."""

    exit_code = EXIT_USAGE


class GateRefused(UDError):
    exit_code = EXIT_GATE


class NotPermitted(UDError):
    exit_code = EXIT_FORBIDDEN


class TargetError(UDError):
    """A deploy target failed; the environment stays on its previous version."""

    exit_code = EXIT_TARGET
