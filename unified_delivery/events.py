"""The ledger's events: one dataclass per action, used by the code that writes an entry and
by the code that reads it back, instead of a dict spelled again in each place.

An entry's columns say who (principal), what (unit, version) and where (env); the event is
its payload. `record` writes one, `Event.read` (or `read`) turns an entry back into its
event: fields an older entry lacks take their defaults, and keys a newer writer added are
kept in `extra`, so old ledgers stay readable and nothing stored is dropped on the way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from .ledger import Ledger, LedgerEntry

E = TypeVar("E", bound="Event")


@dataclass(frozen=True)
class Event:
    ACTION: ClassVar[str]
    extra: dict[str, Any] = field(default_factory=dict, kw_only=True)

    @classmethod
    def _fields(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if f.name != "extra"]

    def payload(self) -> dict[str, Any]:
        out = dict(self.extra)
        for f in self._fields():
            out[f.metadata.get("key", f.name)] = getattr(self, f.name)
        return out

    @classmethod
    def from_payload(cls: type[E], payload: dict[str, Any]) -> E:
        known, values = set(), {}
        for f in cls._fields():
            key = f.metadata.get("key", f.name)
            known.add(key)
            if key in payload:
                values[f.name] = payload[key]
        return cls(**values, extra={k: v for k, v in payload.items() if k not in known})

    @classmethod
    def read(cls: type[E], entry: LedgerEntry) -> E:
        if entry.action != cls.ACTION:
            raise ValueError(f"ledger entry {entry.seq} is a {entry.action}, not a {cls.ACTION}")
        return cls.from_payload(entry.payload)


@dataclass(frozen=True)
class Candidate(Event):
    """A version built (or picked up from the registry) and not yet deployed anywhere."""

    ACTION: ClassVar[str] = "candidate"
    artifact: dict[str, Any] = field(default_factory=dict)  # targets.base.Artifact as a dict
    run_id: str = ""
    team: str = ""
    kind: str = ""
    usage: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None


@dataclass(frozen=True)
class BuildFailed(Event):
    ACTION: ClassVar[str] = "build-failed"
    code: str = ""
    message: str = ""
    run_id: str = ""


@dataclass(frozen=True)
class GateEvaluated(Event):
    """One gate's result for one version, on the stage it checks (the entry's env is the
    environment the gate guards)."""

    ACTION: ClassVar[str] = "gate"
    gate: str = ""
    family: str = ""
    stage: str = ""
    passed: bool = False
    code: str = ""
    message: str = ""
    remediation: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    overridden: bool = False
    run_id: str = ""
    team: str = ""
    kind: str = ""


@dataclass(frozen=True)
class Refusal(Event):
    """Something a principal asked for and was refused (a promotion when `refused` is empty)."""

    ACTION: ClassVar[str] = "refusal"
    code: str = ""
    message: str = ""
    refused: str = field(default="", metadata={"key": "action"})
    run_id: str = ""


@dataclass(frozen=True)
class Forgery(Event):
    """A run that claimed a principal it had no grant for, or did not fit its grant."""

    ACTION: ClassVar[str] = "forgery"
    code: str = ""
    message: str = ""
    claimed: str = ""
    run_id: str = ""
    job: str = ""


@dataclass(frozen=True)
class AlreadyDeployed(Event):
    ACTION: ClassVar[str] = "already-deployed"
    reason: str = ""
    run_id: str = ""


@dataclass(frozen=True)
class DeployStarted(Event):
    """The intent, recorded before the target changes anything: a crash after it leaves an
    intent without an outcome, which the next command completes from the target (recovery.py)."""

    ACTION: ClassVar[str] = "deploy-started"
    from_version: str | None = None
    to_version: str = ""
    run_id: str = ""


@dataclass(frozen=True)
class RollbackStarted(Event):
    ACTION: ClassVar[str] = "rollback-started"
    from_version: str | None = None
    to_version: str = ""
    reason: str = ""
    run_id: str = ""


@dataclass(frozen=True)
class Promotion(Event):
    """A version deployed to an environment: what DORA, showback and the audit export count."""

    ACTION: ClassVar[str] = "promotion"
    from_version: str | None = None
    reason: str = ""
    digest: str = ""
    run_id: str = ""
    team: str = ""
    kind: str = ""
    deploy_seconds: float = 0.0
    change_created_at: str | None = None
    gates: dict[str, str | None] = field(default_factory=dict)  # gate name -> its code
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None
    recovered: bool = False  # completed from the target's state after the deploying run died


@dataclass(frozen=True)
class DeployFailed(Event):
    ACTION: ClassVar[str] = "deploy-failed"
    code: str = ""
    message: str = ""
    stayed_on: str | None = None
    run_id: str = ""
    recovered: bool = False


@dataclass(frozen=True)
class Rollback(Event):
    ACTION: ClassVar[str] = "rollback"
    from_version: str | None = None
    reason: str = ""
    run_id: str = ""
    team: str = ""
    kind: str = ""
    consumers: list[str] = field(default_factory=list)
    recovered: bool = False


@dataclass(frozen=True)
class RollbackFailed(Event):
    ACTION: ClassVar[str] = "rollback-failed"
    code: str = ""
    message: str = ""
    reason: str = ""
    run_id: str = ""
    recovered: bool = False


@dataclass(frozen=True)
class Approval(Event):
    ACTION: ClassVar[str] = "approval"
    authors: dict[str, Any] = field(default_factory=dict)  # governance.authors.Authors.to_dict()
    team: str = ""
    comment: str = ""


@dataclass(frozen=True)
class Override(Event):
    """Break-glass past one gate for one version, until `expires_at`, for whom `for_` names.
    A scoped override (`file` and `rule` set, no version on the entry) covers one finding of
    the gate instead, in every version, until it expires: what the gate lists as covered."""

    ACTION: ClassVar[str] = "override"
    gate: str = ""
    family: str = ""
    stage: str = ""
    justification: str = ""
    expires_at: str = ""
    for_: list[str] = field(default_factory=list, metadata={"key": "for"})
    file: str = ""  # scoped: the finding's file, relative to the unit's source tree
    rule: str = ""  # scoped: the finding's rule (a bandit test id, a detect-secrets kind)

    @property
    def scoped(self) -> bool:
        return bool(self.file and self.rule)


@dataclass(frozen=True)
class OverrideUsed(Event):
    """A scoped override let one finding of a gate through for one version (the entry's
    version): the finding, the override (its ledger seq) and the run that used it."""

    ACTION: ClassVar[str] = "override-used"
    gate: str = ""
    stage: str = ""
    file: str = ""
    rule: str = ""
    line: int = 0
    override_seq: int = 0
    overridden_by: str = ""
    expires_at: str = ""
    run_id: str = ""


@dataclass(frozen=True)
class CommitsSkipped(Event):
    """A push of several commits: only the newest is built; the older ones, and what superseded
    them, are recorded here rather than lost in a sensor's log."""

    ACTION: ClassVar[str] = "commits-skipped"
    repository: str = ""
    branch: str = ""
    superseded_by: str = ""
    skipped: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Drift(Event):
    """What an environment runs is not what the platform last deployed there: changed outside
    it (a registry alias set by hand, a release switched, a view re-pointed). Recorded once per
    change, when first noticed; the entry's version is what actually runs."""

    ACTION: ClassVar[str] = "drift"
    recorded_version: str | None = None
    actual_version: str | None = None
    noticed_by: str = ""  # a promotion out of the environment, or the reconcile sensor


@dataclass(frozen=True)
class TokenIssued(Event):
    ACTION: ClassVar[str] = "token-issued"
    subject: str = ""
    expires_at: str = ""


@dataclass(frozen=True)
class ApprovalRequested(Event):
    """A principal (an agent, typically) asks for the approvals a version still needs in an
    environment; it approves nothing. The entry's principal is who asks."""

    ACTION: ClassVar[str] = "approval-requested"
    note: str = ""
    required: int = 0
    approvals: int = 0
    approvers: list[str] = field(default_factory=list)  # who may approve it, authors excepted


@dataclass(frozen=True)
class McpCall(Event):
    """One call to the MCP server (`ud mcp`), under the principal of the token it came with
    (the policy's least-privileged one when it came with none or a refused one). `arguments`
    are the call's own (redacted like every payload), `digest` their canonical SHA-256."""

    ACTION: ClassVar[str] = "mcp-call"
    tool: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    digest: str = ""
    ok: bool = False
    code: str = ""  # the UD- code of a refusal or failure; empty when ok
    exit_code: int = 0  # the exit class `ud` would have ended with (errors.py)
    transport: str = ""  # stdio or http
    seconds: float = 0.0


@dataclass(frozen=True)
class PolicyProposed(Event):
    """A change of the governance in force (roles, quotas, freezes, prices, budgets), proposed
    for an admin who did not write it to adopt. `document` is the whole proposed governance,
    so the approver reviews what the ledger holds, not a working copy."""

    ACTION: ClassVar[str] = "policy-proposed"
    digest: str = ""
    previous: str = ""  # the digest in force when it was proposed
    document: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True)
class PolicyAdopted(Event):
    """The governance in force from this entry on: the first one a platform ran with
    (`bootstrap`), one a proposal's approver adopted, or the home owner's own change on an
    embedded home (`self_approved`: whoever holds its key may do anything anyway)."""

    ACTION: ClassVar[str] = "policy-adopted"
    digest: str = ""
    previous: str = ""
    document: dict[str, Any] = field(default_factory=dict)
    proposed_by: str = ""
    proposal_seq: int | None = None
    bootstrap: bool = False
    self_approved: bool = False


@dataclass(frozen=True)
class Notification(Event):
    """One attempt to tell a channel about an entry (`about_seq`) that ended: `delivered`,
    `failed` (tried again after `next_attempt_at`) or `dead-letter` (the last attempt failed;
    nobody will try again)."""

    ACTION: ClassVar[str] = "notification"
    event: str = ""
    channel: str = ""
    about_seq: int = 0
    outcome: str = ""
    attempt: int = 1
    error: str = ""
    next_attempt_at: str = ""


@dataclass(frozen=True)
class MonitorBreach(Event):
    """A unit in soak broke its monitor's bounds (soak.py): the evidence (PSI per feature, row
    counts, freshness) as the target's health measured it, and the version it is rolled back
    to (none: a person must act). Recorded once per version and environment, by the health
    sensor, before it asks for the rollback."""

    ACTION: ClassVar[str] = "monitor-breach"
    message: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    soak_until: str = ""
    rollback_to: str | None = None
    noticed_by: str = ""


@dataclass(frozen=True)
class ModelUndeclared(Event):
    """A registered model of the registry that no unit declares: its versions are not gated or
    promoted. Recorded once per model, by the registry sensor."""

    ACTION: ClassVar[str] = "model-undeclared"
    model: str = ""


@dataclass(frozen=True)
class PreviewDeployed(Event):
    """A branch's candidate built, gated as for the unit's first environment and (when the gates
    passed) deployed to its ephemeral environment `preview-<slug>` (the entry's env; previews.py).
    `passed` False: refused by a gate or a failed build or deploy, `code` says which."""

    ACTION: ClassVar[str] = "preview"
    branch: str = ""
    sha: str = ""
    repository: str = ""
    passed: bool = False
    code: str = ""
    message: str = ""
    url: str = ""  # an app's
    schema: str = ""  # a data unit's
    alias: str = ""  # the model URI an app's preview serves
    serving: str = ""  # the version the environment serves (a refused push leaves the last)
    gates: dict[str, Any] = field(default_factory=dict)  # gate -> its code
    # What the build did: a data unit's models built, reused or deferred to production's.
    build: dict[str, Any] = field(default_factory=dict)
    expires_at: str = ""
    seconds: float = 0.0  # build, gates and deploy
    note: str = ""  # where the Git note went (refs/notes/ud), or why it did not
    run_id: str = ""
    team: str = ""
    kind: str = ""
    usage: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None


@dataclass(frozen=True)
class PreviewTornDown(Event):
    """A preview environment removed: its branch deleted or merged, or its time to live over."""

    ACTION: ClassVar[str] = "preview-teardown"
    branch: str = ""
    why: str = ""  # "deleted", "merged", "expired", "manual"
    removed: list[str] = field(default_factory=list)  # what went: the service, release dir, schema
    run_id: str = ""


EVENTS: dict[str, type[Event]] = {
    cls.ACTION: cls
    for cls in (
        Candidate,
        BuildFailed,
        GateEvaluated,
        Refusal,
        Forgery,
        AlreadyDeployed,
        DeployStarted,
        Promotion,
        DeployFailed,
        RollbackStarted,
        Rollback,
        RollbackFailed,
        Approval,
        Override,
        OverrideUsed,
        CommitsSkipped,
        Drift,
        TokenIssued,
        ApprovalRequested,
        McpCall,
        PolicyProposed,
        PolicyAdopted,
        Notification,
        MonitorBreach,
        ModelUndeclared,
        PreviewDeployed,
        PreviewTornDown,
    )
}
CHANGES = (Promotion.ACTION, Rollback.ACTION)  # what changes what an environment runs
INTENTS = (DeployStarted.ACTION, RollbackStarted.ACTION)
# What ends an intent: one of these with the intent's run id.
OUTCOMES = (Promotion.ACTION, DeployFailed.ACTION, Rollback.ACTION, RollbackFailed.ACTION)


def record(
    ledger: Ledger,
    event: Event,
    *,
    principal: str,
    unit: str | None = None,
    env: str | None = None,
    version: str | None = None,
) -> LedgerEntry:
    """Append `event` to the ledger as one entry."""
    return ledger.append(
        event.ACTION,
        principal=principal,
        unit=unit,
        env=env,
        version=version,
        payload=event.payload(),
    )


def read(entry: LedgerEntry) -> Event:
    """The event an entry holds (an action this version does not know is refused, not guessed)."""
    cls = EVENTS.get(entry.action)
    if cls is None:
        raise ValueError(f"ledger entry {entry.seq} has an unknown action {entry.action!r}")
    return cls.from_payload(entry.payload)
