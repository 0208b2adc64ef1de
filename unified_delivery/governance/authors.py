"""Who wrote a change, as the platform itself knows it: the four-eyes rule rests on this.

A commit's author and committer fields are whatever the committer typed, so they can only
ever add suspects, never clear one. What the platform establishes itself:

- the principal who built the candidate through `ud` (a token it verified, or the local
  operator): for a model, data product or wrapped asset that is who trained or registered
  it; for an app, who asked for that commit to be built and so answers for it.

Services (sensors, the UI) are never authors: a candidate only a sensor built has no
established author, and an approval of it is refused until someone takes responsibility
for it by building it under their own identity. (A push does not establish its pusher: a
hook on the Git server cannot verify a ud token without the platform's key.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import NotPermitted
from ..events import Candidate


@dataclass(frozen=True)
class Authors:
    established: frozenset[str]  # principals the platform itself saw create the change
    claimed: frozenset[str] = frozenset()  # principals named by the commit's own fields
    evidence: dict[str, Any] = field(default_factory=dict)

    def includes(self, principal: str) -> bool:
        return principal in self.established or principal in self.claimed

    def to_dict(self) -> dict[str, Any]:
        return {
            "established": sorted(self.established),
            "claimed": sorted(self.claimed),
            **self.evidence,
        }


def is_service(principal: str) -> bool:
    return principal.startswith("service:")


def of_version(governance: Any, ledger: Any, unit: str, version: str) -> Authors:
    """The authors of `version` of `unit`, from the ledger's candidate entries (every build of
    that version counts: each builder answers for it)."""
    builds = [e for e in ledger.entries(unit=unit, action=Candidate.ACTION) if e.version == version]
    established = {e.principal for e in builds if not is_service(e.principal)}
    claimed: set[str] = set()
    texts: list[str] = []
    for e in builds:
        details = Candidate.read(e).artifact.get("details", {})
        texts += [details.get(k) or "" for k in ("author", "committer")]
    for name in governance.policy.principals:
        if any(governance.is_author(name, text) for text in texts if text):
            claimed.add(name)
    evidence = {
        "built_by": sorted({e.principal for e in builds}),
        "commit_author": next((t for t in texts if t), ""),
    }
    return Authors(frozenset(established), frozenset(claimed), evidence)


def eligible_approvers(
    governance: Any, ledger: Any, unit: str, version: str, env: str
) -> list[str]:
    """Who may approve `version` of `unit` for `env`: the principals with the approve role there
    who are not services and not among its authors (four eyes)."""
    authors = of_version(governance, ledger, unit, version)
    return [
        p
        for p in governance.policy.principals
        if not is_service(p) and governance.allowed(p, "approve", env) and not authors.includes(p)
    ]


def check_may_approve(
    governance: Any, ledger: Any, unit: str, version: str, caller: str
) -> Authors:
    """Refuse the author's own approval, and any approval of a change nobody answers for."""
    authors = of_version(governance, ledger, unit, version)
    if authors.includes(caller):
        raise NotPermitted(
            "UD-APPROVAL-SELF",
            f"{caller} is an author of {unit} {version[:12]} "
            f"({_why(authors, caller)}) and may not approve it",
            "four eyes: ask another approver",
        )
    if not authors.established:
        raise NotPermitted(
            "UD-APPROVAL-AUTHOR-UNKNOWN",
            f"nobody the platform knows answers for {unit} {version[:12]}: it was built by "
            f"{', '.join(authors.evidence['built_by']) or 'no one'} only",
            "whoever answers for it builds it again under their own identity (`ud promote` to the "
            "first environment with their token and --ref naming this version); then approve",
        )
    return authors


def _why(authors: Authors, caller: str) -> str:
    if caller in authors.established:
        return "built it"
    return f"named in the commit: {authors.evidence.get('commit_author', '')}"
