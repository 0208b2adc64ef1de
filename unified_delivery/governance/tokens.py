"""Signed, expiring identity tokens, and run grants derived from them.

A token names a principal: `ud1.<payload>.<signature>`, the payload base64url JSON
`{"sub", "iat", "exp", "jti"}`, the signature HMAC-SHA256 with the platform's signing key
(`UD_SIGNING_KEY`, else `<home>/signing.key`, made on first use, mode 0600).

A token identifies a person, a service or an agent to `ud`; it never travels with a run.
What a run acts for is a run grant (governance/grants.py), which is not a token: a
signed object of its own kind, never accepted here. Objects that older versions put in
run tags (`run_id`/`run_key` claims) are refused too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time

from ..errors import NotPermitted, UDError
from ..home import Home

PREFIX = "ud1"
TOKEN_TYPE = "user"  # the only kind of signed object `verify` accepts
DURATION_RE = re.compile(r"^(\d{1,9})([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_S = 366 * 86400  # a token, an override or a freeze longer than a year is a mistake


def parse_duration(text: str) -> int:
    m = DURATION_RE.match(str(text).strip())
    if not m or int(m.group(1)) <= 0:
        raise UDError(
            "UD-USAGE",
            f"{str(text)[:40]!r} is not a duration",
            "use a number and a unit: 90s, 15m, 8h, 7d",
        )
    seconds = int(m.group(1)) * UNITS[m.group(2)]
    if seconds > MAX_DURATION_S:
        raise UDError(
            "UD-USAGE", f"{text!r} is longer than a year", "give a duration of at most 366d"
        )
    return seconds


def signing_key(home: Home | None = None) -> bytes:
    env = os.environ.get("UD_SIGNING_KEY")
    if env:
        return env.encode()
    home = home or Home.current()
    path = home.root / "signing.key"
    if not path.exists():
        home.ensure()
        # Written whole, then linked into place: a process that races this one reads either no
        # key or the whole key, and only one key ever wins.
        tmp = path.with_name(f".signing.key.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(claims: dict, key: bytes) -> str:
    body = _b64(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode())
    sig = _b64(hmac.new(key, f"{PREFIX}.{body}".encode(), hashlib.sha256).digest())
    return f"{PREFIX}.{body}.{sig}"


def issue(principal: str, ttl_s: int, *, key: bytes | None = None, **extra: str) -> str:
    now = int(time.time())
    claims = {
        "sub": principal,
        "iat": now,
        "exp": now + ttl_s,
        "jti": secrets.token_hex(8),
        "typ": TOKEN_TYPE,
        **extra,
    }
    return _sign(claims, key or signing_key())


def verify(token: str, *, key: bytes | None = None, now: float | None = None) -> dict:
    """The claims of a valid token; NotPermitted with its own code otherwise."""
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise NotPermitted(
            "UD-AUTH-TOKEN-MALFORMED",
            "the token is not a ud token",
            "get one with `ud token issue`",
        )
    expected = _b64(
        hmac.new(key or signing_key(), f"{PREFIX}.{parts[1]}".encode(), hashlib.sha256).digest()
    )
    if not hmac.compare_digest(expected, parts[2]):
        raise NotPermitted(
            "UD-AUTH-TOKEN-INVALID",
            "the token's signature does not match (tampered, or signed with another key)",
            "get a new token with `ud token issue`",
        )
    try:
        claims = json.loads(_unb64(parts[1]))
    except ValueError:
        raise NotPermitted(
            "UD-AUTH-TOKEN-MALFORMED", "the token's payload is unreadable", "get a new token"
        ) from None
    if not isinstance(claims, dict):
        raise NotPermitted(
            "UD-AUTH-TOKEN-MALFORMED", "the token's claims are not an object", "get a new token"
        )
    if claims.get("typ", TOKEN_TYPE) != TOKEN_TYPE or {"run_id", "run_key"} & set(claims):
        raise NotPermitted(
            "UD-AUTH-TOKEN-INVALID",
            "this is a run grant, not a token: it identifies no one",
            "get a token with `ud token issue`",
        )
    if (
        not isinstance(claims.get("sub"), str)
        or not claims["sub"]
        or not isinstance(claims.get("exp"), (int, float))
        or isinstance(claims.get("exp"), bool)
    ):
        raise NotPermitted(
            "UD-AUTH-TOKEN-MALFORMED",
            "the token's claims lack a principal (sub) or an expiry (exp)",
            "get a new token with `ud token issue`",
        )
    if claims["exp"] < (now or time.time()):
        raise NotPermitted(
            "UD-AUTH-TOKEN-EXPIRED",
            f"the token of {claims.get('sub')} has expired",
            "get a new token with `ud token issue`",
        )
    return claims
