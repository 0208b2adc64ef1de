"""Issuing tokens (admins only), recorded."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ..errors import NotPermitted
from ..events import TokenIssued, record
from ..governance import tokens
from ..home import Home
from .approvals import refuse

if TYPE_CHECKING:
    from ..platform import Platform


def issue_token(
    platform: Platform, caller: str, principal: str, ttl: str = "8h", *, dry_run: bool = False
) -> dict[str, Any]:
    """A signed token for `principal`, valid `ttl`; only an admin (role admin under `*`) may."""
    ttl_s = tokens.parse_duration(ttl)
    if not platform.governance.allowed(caller, "admin", "*"):
        raise refuse(
            platform,
            caller,
            NotPermitted(
                "UD-AUTH-FORBIDDEN",
                f"{caller} may not issue tokens",
                "ask an admin (role admin in every environment `*`)",
            ),
            action="token",
        )
    platform.governance.principal(principal)  # refuses an unknown principal
    if dry_run:
        return {"ok": True, "dry_run": True, "principal": principal, "ttl_seconds": ttl_s}
    token = tokens.issue(principal, ttl_s, key=tokens.signing_key(Home.current()))
    expires = datetime.now(timezone.utc) + timedelta(seconds=ttl_s)
    record(
        platform.ledger.ledger(),
        TokenIssued(subject=principal, expires_at=expires.isoformat()),
        principal=caller,
    )
    return {"ok": True, "principal": principal, "token": token, "expires_at": expires.isoformat()}
