"""Who a front door acts for: the principal of a token, else the policy's local principal."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import NotPermitted
from ..events import Refusal, record
from ..governance import tokens
from ..home import Home

if TYPE_CHECKING:
    from ..platform import Platform


def identity(platform: Platform, token: str | None = None, home: Home | None = None) -> str:
    """The principal of `token` (or $UD_TOKEN); without one, the policy's local principal: whoever
    can read the home's signing key can mint any token anyway. A refused token is recorded."""
    token = token or os.environ.get("UD_TOKEN")
    if not token:
        if (why := _not_the_local_operator(platform, home or Home.current())) is not None:
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


def _not_the_local_operator(platform: Platform, home: Home) -> str | None:
    """Why a caller without a token is not the home's owner, or None. Without a token, `ud` acts
    for the local operator only on an embedded home: its signing key in the home and readable by
    the caller (who could mint any token anyway), its ledger a file of that home."""
    if os.environ.get("UD_SIGNING_KEY"):
        return "the signing key comes from outside the home (UD_SIGNING_KEY)"
    ledger_url = platform.ledger.url or home.ledger_url
    if not ledger_url.startswith(f"sqlite:///{home.root}"):
        return "the ledger is shared (not a file of this home)"
    key = home.root / "signing.key"
    if key.exists() and not os.access(key, os.R_OK):
        return f"{key} is not readable by this user"
    return None
