"""A change of governance is a promotion of its own: proposed by one principal (the whole
document recorded), adopted by an admin who did not propose it, under the policy in force
before the change, and refused once another change was adopted in between. What is in force
and what a working copy would change: `policy_show`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import NotPermitted, UDError
from ..events import PolicyAdopted, PolicyProposed, record
from ..governance import in_force
from .approvals import refuse

if TYPE_CHECKING:
    from ..ledger import LedgerEntry
    from ..platform import Platform


def _pending(platform: Platform) -> list[LedgerEntry]:
    """Proposals not adopted since they were made, newest first, one per digest (a stale one,
    made against a policy replaced since, included: its approval is refused by name)."""
    ledger = platform.ledger.ledger()
    adopted_at = {
        PolicyAdopted.read(e).digest: e.seq for e in ledger.entries(action=PolicyAdopted.ACTION)
    }
    seen, out = set(), []
    for entry in reversed(ledger.entries(action=PolicyProposed.ACTION)):
        proposal = PolicyProposed.read(entry)
        if proposal.digest in seen or adopted_at.get(proposal.digest, 0) > entry.seq:
            continue
        seen.add(proposal.digest)
        out.append(entry)
    return out


def _in_force(platform: Platform) -> tuple[LedgerEntry, PolicyAdopted]:
    found = in_force.adopted(platform.ledger.ledger())
    if found is None:  # the first `ud` command or run records it; none has run yet
        in_force.ensure(platform, platform.governance.local_principal)
        found = in_force.adopted(platform.ledger.ledger())
    assert found is not None
    return found


def policy_show(platform: Platform) -> dict[str, Any]:
    """The governance in force (who adopted it, when, how), this copy's digest and what it would
    change, and the proposals waiting."""
    entry, adopted = _in_force(platform)
    local = in_force.document(platform)
    here = in_force.digest(local)
    return {
        "in_force": {
            "digest": adopted.digest,
            "adopted_by": entry.principal,
            "adopted_at": entry.ts,
            "proposed_by": adopted.proposed_by,
            "how": "bootstrap"
            if adopted.bootstrap
            else "self-approved"
            if adopted.self_approved
            else "approved",
            "seq": entry.seq,
        },
        "local": {
            "digest": here,
            "source": platform.governance.source,
            "in_force": here == adopted.digest,
            "diff": in_force.diff(adopted.document, local, "in force", "this copy"),
        },
        "pending": [
            {
                "digest": (p := PolicyProposed.read(e)).digest,
                "proposed_by": e.principal,
                "proposed_at": e.ts,
                "reason": p.reason,
                "stale": p.previous != adopted.digest,
                "diff": in_force.diff(adopted.document, p.document, "in force", "proposed"),
            }
            for e in _pending(platform)
        ],
    }


def policy_propose(
    platform: Platform, caller: str, *, reason: str = "", dry_run: bool = False
) -> dict[str, Any]:
    """Record this copy's governance as a proposed change, for an admin to adopt."""
    entry, adopted = _in_force(platform)
    local = in_force.document(platform)
    here = in_force.digest(local)
    if here == adopted.digest:
        raise UDError(
            "UD-POLICY-UNCHANGED",
            f"this copy's governance is the one in force ({in_force.short(here)}): nothing to "
            "propose",
            "change resources/policy.yaml, the price table or a budget in the platform's "
            "repository, then propose that change",
        )
    change = in_force.diff(adopted.document, local, "in force", "proposed")
    out: dict[str, Any] = {
        "digest": here,
        "previous": adopted.digest,
        "proposed_by": caller,
        "diff": change,
    }
    if not dry_run:
        proposal = PolicyProposed(
            digest=here, previous=adopted.digest, document=local, reason=reason
        )
        recorded = record(
            platform.ledger.ledger(), proposal, principal=caller, version=in_force.short(here)
        )
        out["seq"] = recorded.seq
    return out


def policy_approve(
    platform: Platform, caller: str, digest: str, *, dry_run: bool = False
) -> dict[str, Any]:
    """Adopt a proposed governance: `caller` needs the admin role under the policy in force and
    did not propose it; the proposal must still be a change of what is in force."""
    entry, adopted = _in_force(platform)
    where = {"action": "policy-approve", "version": in_force.short(digest)}
    wanted = digest if digest.startswith("sha256:") else f"sha256:{digest}"
    matches = [e for e in _pending(platform) if PolicyProposed.read(e).digest.startswith(wanted)]
    if not matches:
        raise refuse(
            platform,
            caller,
            UDError(
                "UD-POLICY-NO-PROPOSAL",
                f"no proposed policy change {in_force.short(wanted)} waits for approval",
                "see `ud policy show` for the proposals waiting",
            ),
            **where,
        )
    if len(matches) > 1:
        raise UDError(
            "UD-POLICY-NO-PROPOSAL",
            f"{in_force.short(wanted)} names {len(matches)} proposals",
            "give more of the digest (`ud policy show`)",
        )
    found = matches[0]
    proposal = PolicyProposed.read(found)
    governing = in_force.governance_of(adopted.document)
    if not governing.allowed(caller, "admin", "*"):
        raise refuse(
            platform,
            caller,
            NotPermitted(
                "UD-AUTH-FORBIDDEN",
                f"{caller} may not adopt a policy change: that needs the admin role in every "
                "environment under the policy in force",
                "ask an admin who did not propose the change to adopt it",
            ),
            **where,
        )
    if found.principal == caller:
        raise refuse(
            platform,
            caller,
            NotPermitted(
                "UD-POLICY-SELF-APPROVAL",
                f"{caller} proposed this change and may not adopt it",
                "ask another admin to adopt it",
            ),
            **where,
        )
    if proposal.previous != adopted.digest:
        raise refuse(
            platform,
            caller,
            UDError(
                "UD-POLICY-STALE",
                f"the change was proposed against {in_force.short(proposal.previous)}, and "
                f"{in_force.short(adopted.digest)} has been adopted since",
                "propose it again from the policy in force, so the approver sees the whole change",
            ),
            **where,
        )
    out: dict[str, Any] = {
        "digest": proposal.digest,
        "previous": adopted.digest,
        "proposed_by": found.principal,
        "approved_by": caller,
    }
    if not dry_run:
        adoption = PolicyAdopted(
            digest=proposal.digest,
            previous=adopted.digest,
            document=proposal.document,
            proposed_by=found.principal,
            proposal_seq=found.seq,
        )
        recorded = record(
            platform.ledger.ledger(),
            adoption,
            principal=caller,
            version=in_force.short(proposal.digest),
        )
        out["seq"] = recorded.seq
    return out
