"""Who owns a home: the one caller who may act without a token, as the policy's local principal.

Only on an embedded home: its signing key in the home and readable by the caller (who could
mint any token anyway), its ledger a file of that home. Never once the key comes from outside
(`UD_SIGNING_KEY`) or the ledger is shared.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..home import Home

if TYPE_CHECKING:
    from ..platform import Platform


def why_not_home_owner(platform: Platform, home: Home | None = None) -> str | None:
    """Why this process is not the home's owner, or None when it is."""
    home = home or Home.current()
    if os.environ.get("UD_SIGNING_KEY"):
        return "the signing key comes from outside the home (UD_SIGNING_KEY)"
    ledger_url = platform.ledger.url or home.ledger_url
    if not ledger_url.startswith(f"sqlite:///{home.root}"):
        return "the ledger is shared (not a file of this home)"
    key = home.root / "signing.key"
    if key.exists() and not os.access(key, os.R_OK):
        return f"{key} is not readable by this user"
    return None
