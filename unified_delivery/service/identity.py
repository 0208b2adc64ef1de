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
        return platform.governance.local_principal
    try:
        principal = tokens.verify(token, key=tokens.signing_key(home))["sub"]
        platform.governance.principal(principal)
        return principal
    except NotPermitted as exc:
        record(platform.ledger.ledger(), Refusal(code=exc.code, message=exc.message, refused="authenticate"),
               principal=platform.governance.ui_principal)
        raise
