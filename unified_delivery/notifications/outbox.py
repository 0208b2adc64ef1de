"""The ledger as the outbox: what is due to be told, told, and recorded.

A reader keeps its place in `<home>/notify-cursor.json` (the entry before the oldest message
not yet delivered or dead-lettered); a platform that starts notifying begins with what was
recorded after its routes file was written, not with the ledger's whole history. One
deliverer at a time (a file lock): the sensor and `ud` never both send a message. Whether a
message still needs sending is read from its own `notification` entries, so a crash between
sending and recording sends it again (at least once, never lost).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from ..events import (
    ApprovalRequested,
    Drift,
    GateEvaluated,
    MonitorBreach,
    Notification,
    Refusal,
    Rollback,
    record,
)
from ..governance.authors import eligible_approvers
from ..home import Home
from ..targets.state_files import read_json, write_json
from .channels import DeliveryFailed, Message, send

if TYPE_CHECKING:
    from ..ledger import Ledger, LedgerEntry
    from ..platform import Platform

NOTIFIER = "service:ud-notify"
PENDING = "UD-GATE-APPROVAL-PENDING"
DONE = ("delivered", "dead-letter")


def deliver(
    platform: Platform,
    *,
    home: Home | None = None,
    budget_s: float | None = None,
    log: Callable[[str], None] = lambda text: None,
) -> dict[str, Any]:
    """Send what is due, within `budget_s` seconds if given (what is left waits for the next
    call), and record each attempt. Returns the counts and the failures."""
    notifications = platform.notifications
    report: dict[str, Any] = {"delivered": 0, "failed": 0, "dead_letter": 0, "waiting": 0}
    report["errors"] = []
    if not notifications.file.routes:
        return {**report, "configured": False}
    home = home or Home.current()
    try:
        with FileLock(str(home.root / "notify.lock"), timeout=0):
            _deliver(platform, home, budget_s, log, report)
    except Timeout:
        report["busy"] = True  # another deliverer is at it
    return report


def _deliver(platform, home, budget_s, log, report) -> None:
    ledger = platform.ledger.ledger()
    cursor_file = home.root / "notify-cursor.json"
    cursor = read_json(cursor_file)
    if cursor is None:  # a first delivery: from when the routes were written, not all history
        since = platform.notifications.since
        first = ledger.latest(predicate=lambda e: e.ts < since) if since else ledger.head()
        cursor = {"after_seq": first.seq if first else 0}
    entries = ledger.entries(after_seq=int(cursor["after_seq"]))
    tried = _attempts(entries)
    started, now = time.monotonic(), datetime.now(timezone.utc)
    retry = platform.notifications.file.retry
    oldest_open: int | None = None
    for message in messages(platform, ledger, entries):
        team_env = (message.team, message.env)
        for name in platform.notifications.channels_for(message.event, *team_env):
            last = tried.get((message.seq, name))
            if last is not None and last.outcome in DONE:
                continue
            due = last is None or datetime.fromisoformat(last.next_attempt_at) <= now
            over = budget_s is not None and time.monotonic() - started > budget_s
            if not due or over:
                report["waiting"] += 1
                oldest_open = min(oldest_open or message.seq, message.seq)
                continue
            attempt = (last.attempt + 1) if last else 1
            outcome, error, next_at = "delivered", "", ""
            try:
                send(name, platform.notifications.file.channels[name], message)
            except DeliveryFailed as exc:
                error = str(exc)
                if attempt >= retry.attempts:
                    outcome = "dead-letter"
                else:
                    outcome = "failed"
                    wait = timedelta(seconds=retry.wait(attempt))
                    next_at = (datetime.now(timezone.utc) + wait).isoformat()
                    oldest_open = min(oldest_open or message.seq, message.seq)
                report["errors"].append(error)
            report["dead_letter" if outcome == "dead-letter" else outcome] += 1
            because = f" ({error})" if error else ""
            log(f"{message.event} #{message.seq} -> {name}: {outcome}{because}")
            record(
                ledger,
                Notification(
                    event=message.event,
                    channel=name,
                    about_seq=message.seq,
                    outcome=outcome,
                    attempt=attempt,
                    error=error,
                    next_attempt_at=next_at,
                ),
                principal=NOTIFIER,
                unit=message.unit,
                env=message.env,
                version=message.version,
            )
    last_seen = entries[-1].seq if entries else int(cursor["after_seq"])
    write_json(cursor_file, {"after_seq": (oldest_open - 1) if oldest_open else last_seen})


def _attempts(entries: list[LedgerEntry]) -> dict[tuple[int, str], Notification]:
    """The newest attempt per (entry told about, channel)."""
    out: dict[tuple[int, str], Notification] = {}
    for entry in entries:
        if entry.action == Notification.ACTION:
            attempt = Notification.read(entry)
            out[(attempt.about_seq, attempt.channel)] = attempt
    return out


def messages(platform: Platform, ledger: Ledger, entries: list[LedgerEntry]) -> list[Message]:
    """What the entries have to tell, in ledger order. A run's failed gates are one message
    (`approval-pending` when waiting for an approval is all that stops it), about its first."""
    out: list[Message] = []
    gates: dict[tuple, list[LedgerEntry]] = {}
    for entry in entries:
        if entry.action == GateEvaluated.ACTION:
            gate = GateEvaluated.read(entry)
            if not gate.passed and not gate.overridden:
                key = (gate.run_id or entry.seq, entry.unit, entry.env, entry.version)
                gates.setdefault(key, []).append(entry)
            continue
        made = _message(platform, entry)
        if made is not None:
            out.append(made)
    out += [_refused_by_gates(platform, ledger, group) for group in gates.values()]
    return sorted(out, key=lambda m: m.seq)


def _base(platform: Platform, entry: LedgerEntry, event: str, title: str, text: str, **details):
    unit = platform.units.get(entry.unit or "")
    return Message(
        event=event,
        title=title,
        text=text,
        seq=entry.seq,
        ts=entry.ts,
        unit=entry.unit,
        env=entry.env,
        version=entry.version,
        principal=entry.principal,
        team=unit.team if unit else str(entry.payload.get("team", "")),
        details={k: v for k, v in details.items() if v},
    )


def _message(platform: Platform, entry: LedgerEntry) -> Message | None:
    where = f"{entry.unit} in {entry.env}" if entry.unit else "the platform"
    v = (entry.version or "")[:12]
    if entry.action == Refusal.ACTION:
        r = Refusal.read(entry)
        what = r.refused or "a promotion"
        text = f"{r.code}: {r.message}"
        return _base(platform, entry, "refused", f"{entry.principal} was refused {what}", text)
    if entry.action == "promotion":
        return _base(
            platform,
            entry,
            "promoted",
            f"{entry.unit} {v} is live in {entry.env}",
            "",
            **{"run_id": entry.payload.get("run_id", "")},
        )
    if entry.action == Rollback.ACTION:
        r = Rollback.read(entry)
        title = f"{where}: rolled back to {v} (from {(r.from_version or '')[:12]})"
        return _base(platform, entry, "rollback", title, r.reason, run_id=r.run_id)
    if entry.action in ("deploy-failed", "rollback-failed"):
        p = entry.payload
        title = f"{where}: {entry.action.replace('-', ' ')} for {v}; it keeps its version"
        text = f"{p.get('code', '')}: {p.get('message', '')}"
        return _base(platform, entry, "deploy-failed", title, text, run_id=p.get("run_id"))
    if entry.action == ApprovalRequested.ACTION:  # someone (an agent, say) asks for approvals
        r = ApprovalRequested.read(entry)
        command = f"ud approve {entry.unit} --env {entry.env} --version {entry.version}"
        title = f"{entry.principal} asks for approval of {entry.unit} {v} for {entry.env}"
        text = f"{r.approvals} of {r.required} approvals; {r.note or 'no note'}; `{command}`"
        return _base(
            platform, entry, "approval-pending", title, text, approvers=r.approvers, command=command
        )
    if entry.action == MonitorBreach.ACTION:
        b = MonitorBreach.read(entry)
        back = f"; rolling back to {b.rollback_to[:12]}" if b.rollback_to else "; a person must act"
        title = f"{where}: {v} broke its monitor in soak{back}"
        return _base(platform, entry, "monitor-breach", title, b.message, evidence=b.evidence)
    if entry.action == Drift.ACTION:
        d = Drift.read(entry)
        rec = (d.recorded_version or "nothing")[:12]
        title = f"{where} runs {v or 'nothing'} outside the platform"
        text = (
            f"the platform deployed {rec} there (noticed by {d.noticed_by}); put it back with "
            f"`ud rollback {entry.unit} --env {entry.env} --to {d.recorded_version}`"
            if d.recorded_version
            else f"the platform deployed nothing there (noticed by {d.noticed_by})"
        )
        return _base(platform, entry, "drift", title, text)
    return None


def _refused_by_gates(platform: Platform, ledger: Ledger, group: list[LedgerEntry]) -> Message:
    first = group[0]
    found = [GateEvaluated.read(e) for e in group]
    v = (first.version or "")[:12]
    run_id = found[0].run_id
    if all(g.code == PENDING for g in found):
        unit, version, env = first.unit or "", first.version or "", first.env or ""
        may = eligible_approvers(platform.governance, ledger, unit, version, env)
        command = f"ud approve {first.unit} --env {first.env} --version {first.version}"
        text = f"{found[0].message}; the command: `{command}`"
        title = f"{first.unit} {v} waits for approval for {first.env}"
        return _base(
            platform,
            first,
            "approval-pending",
            title,
            text,
            approvers=may,
            command=command,
            run_id=run_id,
        )
    text = "; ".join(f"{g.gate} ({g.code}): {g.message}" for g in found)
    title = f"{first.unit} {v} refused for {first.env} by {', '.join(g.gate for g in found)}"
    return _base(platform, first, "refused", title, text, run_id=run_id)
