"""Secrets out of everything the platform stores or shows: ledger payloads, error messages,
gate output, run metadata.

Two nets, because either alone misses: known secret *shapes* (ud tokens, cloud keys,
private key blocks, `password=...`, credentials in URLs), and the exact *values* this
process knows to be secret (the signing key, the values of secret-named environment
variables). A value shorter than 8 characters is not matched by value: it would blank out
ordinary words.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from .home import Home

REDACTED = "[redacted]"
MIN_SECRET_LEN = 8

# A field or variable whose name says it holds a secret.
SECRET_NAME = re.compile(
    r"pass(word|wd)?|secret|token|api[_-]?key|private[_-]?key|credential|signing[_-]?key|"
    r"auth|session[_-]?key|access[_-]?key",
    re.IGNORECASE,
)
_NAME_MARKERS = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "private_key",
    "credential",
    "signing_key",
)

_SHAPES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
        REDACTED,
    ),
    (
        re.compile(r"\bud1\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
        REDACTED,
    ),  # this platform's tokens
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), REDACTED),  # JWTs
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),  # AWS access key ids
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"), REDACTED),  # GitHub tokens
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), REDACTED),  # Slack tokens
    (re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"), REDACTED),  # OpenAI-style API keys
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{12,}"), r"\1 " + REDACTED),
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+(@)"), r"\1" + REDACTED + r"\2"),  # user:password@ in URLs
    # NAME=value / NAME: value where NAME says secret (env dumps, config echoes, tracebacks).
    (
        re.compile(
            r"(?i)\b([A-Za-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|private[_-]?key|signing[_-]?key)"
            r"[A-Za-z0-9_.-]*[\"']?\s*[=:]\s*[\"']?)([^\s\"',;]{4,})"
        ),
        r"\1" + REDACTED,
    ),
]


@lru_cache(maxsize=4096)
def secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


@lru_cache(maxsize=8)
def _file_secret(path: str, mtime_ns: int) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def known_secret_values(
    environ: dict[str, str] | None = None, home: Home | None = None
) -> list[str]:
    """The secret values this process holds: secret-named environment variables and the
    signing keys of the current home and of `home` (read if they exist, never created here).
    Longest first, so a value that contains another is replaced whole."""
    env = os.environ if environ is None else environ
    named = tuple(
        sorted((k, v) for k, v in env.items() if secret_name(k) and len(v) >= MIN_SECRET_LEN)
    )
    try:
        homes = {Home.current(), *([home] if home else [])}
    except OSError:  # no working directory to find the current home from
        homes = {home} if home else set()
    keys = []
    for h in homes:
        key = h.root / "signing.key"
        try:
            keys.append((str(key), key.stat().st_mtime_ns))
        except OSError:
            pass
    return list(_known(named, tuple(sorted(keys))))


@lru_cache(maxsize=64)
def _known(
    named: tuple[tuple[str, str], ...], keys: tuple[tuple[str, int], ...]
) -> tuple[str, ...]:
    # Every ledger append redacts: the same environment and keys give the same answer.
    values = {v for _, v in named} | {_file_secret(path, mtime) for path, mtime in keys}
    return tuple(sorted((v for v in values if len(v) >= MIN_SECRET_LEN), key=len, reverse=True))


def redact_text(text: str, values: Iterable[str] | None = None) -> str:
    """`text` with every known secret value and every secret shape replaced by [redacted]."""
    if not text:
        return text
    for value in known_secret_values() if values is None else values:
        if value and value in text:
            text = text.replace(value, REDACTED)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any, values: list[str] | None = None) -> Any:
    """A structure with secret-named fields blanked and every string passed through redact_text."""
    if values is None:
        values = known_secret_values()
    if isinstance(value, dict):
        return {
            k: REDACTED if _secret_key(k) and v not in (None, "", False) else redact(v, values)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(v, values) for v in value]
    if isinstance(value, str):
        return redact_text(value, values)
    return value


def _secret_key(key: Any) -> bool:
    lowered = str(key).lower()
    return any(m in lowered for m in _NAME_MARKERS)
