"""Who a front door acts for: the principal of a token, else the policy's local principal."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from ..errors import NotPermitted
from ..events import Refusal, record
from ..governance import in_force, tokens
from ..governance.owner import why_not_home_owner
from ..home import Home

if TYPE_CHECKING:
    from ..platform import Platform


def identity(
    platform: Platform,
    token: str | None = None,
    home: Home | None = None,
    *,
    policy_in_force: bool = True,
) -> str:
    """The principal of `token` (or $UD_TOKEN); without one, the policy's local principal: whoever
    can read the home's signing key can mint any token anyway. A refused token is recorded.
    Unless `policy_in_force` is False (reading or proposing a policy change), the platform must
    have been loaded with the governance in force (governance/in_force.py)."""
    principal = _principal(platform, token, home)
    if policy_in_force:
        try:
            in_force.ensure(platform, principal, home, announce=_to_stderr)
        except NotPermitted as exc:
            record(
                platform.ledger.ledger(),
                Refusal(code=exc.code, message=exc.message, refused="authenticate"),
                principal=principal,
            )
            raise
    return principal


def _to_stderr(text: str) -> None:
    print(f"ud: {text}", file=sys.stderr)


def _principal(platform: Platform, token: str | None, home: Home | None) -> str:
    token = token or os.environ.get("UD_TOKEN")
    if not token:
        if (why := why_not_home_owner(platform, home)) is not None:
            exc = NotPermitted(
                "UD-AUTH-TOKEN-REQUIRED",
                f"acting without a token is not possible here: {why}",
                "give a token (--token or $UD_TOKEN); an admin issues one with `ud token issue`",
            )
            record(
                platform.ledger.ledger(),
                Refusal(code=exc.code, message=exc.message, refused="authenticate"),
                principal=platform.governance.ui_principal,
            )
            raise exc
        return platform.governance.local_principal
    try:
        principal = tokens.verify(token, key=tokens.signing_key(home))["sub"]
        platform.governance.principal(principal)
        return principal
    except NotPermitted as exc:
        record(
            platform.ledger.ledger(),
            Refusal(code=exc.code, message=exc.message, refused="authenticate"),
            principal=platform.governance.ui_principal,
        )
        raise
