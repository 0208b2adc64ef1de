"""The governance in force: what the ledger says the platform was deployed with, not what the
caller's working copy says.

Governance is the policy file (principals, roles, quotas, freezes), the price table and team
budgets, and each unit's budget: one document with one digest. The ledger records the digest
in force (`policy-adopted`, with the whole document); every front door and every run checks
that the governance it loaded is that one, and refuses with UD-POLICY-NOT-IN-FORCE when it is
not. A change is proposed (`policy-proposed`) and adopted by an admin who did not propose it,
under the policy in force before the change (service/policy_changes.py).

Two adoptions need nobody's approval: the first document a platform ever runs with
(`bootstrap`, trust on first use, see docs/governance.md), and, on an embedded home, a change
by its owner (the local principal, acting where it holds the signing key: whoever holds it can
mint any token, so a second pair of eyes would be theatre). Both are recorded.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import NotPermitted
from ..events import PolicyAdopted, record
from .owner import why_not_home_owner
from .policy import Governance, PolicyFile

if TYPE_CHECKING:
    from ..home import Home
    from ..ledger import Ledger, LedgerEntry
    from ..platform import Platform

NOT_IN_FORCE = "UD-POLICY-NOT-IN-FORCE"


def document(platform: Platform) -> dict[str, Any]:
    """The platform's governance as loaded, as plain data (what a digest is taken of)."""
    budgets = {}
    for name, unit in sorted(platform.units.items()):
        budget = unit.budget.model_dump(mode="json", exclude_defaults=True)
        if budget:
            budgets[name] = budget
    return {
        "policy": platform.governance.policy.model_dump(mode="json", exclude_none=True),
        "costs": (
            platform.costs.file.model_dump(mode="json", exclude_none=True)
            if platform.costs
            else None
        ),
        "budgets": budgets,
    }


def digest(doc: dict[str, Any]) -> str:
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def short(d: str) -> str:
    return d.removeprefix("sha256:")[:12]


def adopted(ledger: Ledger) -> tuple[LedgerEntry, PolicyAdopted] | None:
    """The newest adoption: the governance in force, who adopted it and when."""
    entry = ledger.latest(action=PolicyAdopted.ACTION)
    return (entry, PolicyAdopted.read(entry)) if entry is not None else None


def governance_of(doc: dict[str, Any]) -> Governance:
    """The Governance a recorded document describes (to decide with the policy in force)."""
    return Governance(PolicyFile(**(doc.get("policy") or {})), "(the ledger: policy in force)")


def diff(old: dict[str, Any], new: dict[str, Any], old_name: str, new_name: str) -> str:
    """What a change of governance changes, as a unified diff of the two documents in YAML."""

    def lines(doc: dict[str, Any]) -> list[str]:
        return yaml.safe_dump(doc, sort_keys=True, default_flow_style=False).splitlines(True)

    return "".join(difflib.unified_diff(lines(old), lines(new), old_name, new_name))


def ensure(
    platform: Platform,
    principal: str,
    home: Home | None = None,
    *,
    announce: Callable[[str], None] | None = None,
) -> str:
    """The digest in force, after checking that `platform` was loaded with it; else
    UD-POLICY-NOT-IN-FORCE. Adopts (and records) the first governance a ledger sees, and the
    embedded home owner's own change, which `announce` is told of (a person should know their
    edit is now the platform's policy)."""
    ledger = platform.ledger.ledger()
    local = document(platform)
    here = digest(local)
    found = adopted(ledger)
    if found is None:
        record(
            ledger,
            PolicyAdopted(digest=here, document=local, proposed_by=principal, bootstrap=True),
            principal=principal,
            version=short(here),
        )
        return here
    entry, in_force = found
    if in_force.digest == here:
        return here
    owner = governance_of(in_force.document).local_principal
    if principal == owner and why_not_home_owner(platform, home) is None:
        record(
            ledger,
            PolicyAdopted(
                digest=here,
                previous=in_force.digest,
                document=local,
                proposed_by=principal,
                self_approved=True,
            ),
            principal=principal,
            version=short(here),
        )
        if announce is not None:
            announce(
                f"the policy in force is now this copy's ({short(here)}, was "
                f"{short(in_force.digest)}), adopted by {principal}, the home's owner: "
                "`ud policy show` says what it holds"
            )
        return here
    raise NotPermitted(
        NOT_IN_FORCE,
        f"the governance this copy of the platform loaded ({platform.governance.source}: "
        f"{short(here)}) is not the one in force ({short(in_force.digest)}, adopted by "
        f"{entry.principal} at {entry.ts})",
        "act from the platform as deployed (`ud policy show` says what differs); to change the "
        "policy, propose it with `ud policy propose` for an admin who did not write it to adopt",
    )
