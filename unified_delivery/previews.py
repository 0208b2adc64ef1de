"""Preview environments per branch: the names, the Git note on the commit, and the live ones.

A push to a branch other than a unit's own builds the candidate at that commit, runs the gates
of the unit's first environment and deploys it to `preview-<slug>` (engine/preview.py). This
module holds what needs no Dagster: how a branch becomes an environment name, how the verdict
is written as a note under `refs/notes/ud` (so `git notes --ref=ud show <sha>` prints it with
plain git), and which previews are live, read from the ledger (`ud previews`).

A branch name becomes a slug of lower-case letters, digits and `-`. A branch that already is
one keeps its name; any other (`feature/Login`, a long name) gets the sanitised name and six
hex digits of the branch name's hash, so two branches that sanitise alike (`feat/x`, `feat-x`)
never share an environment.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .ledger import Ledger, LedgerEntry

PREFIX = "preview-"
MAX_SLUG = 40
DEFAULT_TTL_HOURS = 72.0
NOTES_REF = "refs/notes/ud"
_SAFE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
_RUN = re.compile(r"[^a-z0-9]+")
NOTE_PUSH_TRIES = 3


def slug(branch: str) -> str:
    """The environment suffix of `branch`: the name itself when it is a safe slug, else the
    sanitised name with a hash of the branch name (distinct branches, distinct slugs)."""
    if _SAFE.match(branch) and "--" not in branch:
        return branch
    digest = hashlib.sha256(branch.encode()).hexdigest()[:6]
    base = _RUN.sub("-", branch.lower()).strip("-")[: MAX_SLUG - 7].strip("-")
    return f"{base}-{digest}" if base else digest


def env_for(branch: str) -> str:
    return PREFIX + slug(branch)


def is_preview(env: str | None) -> bool:
    return bool(env) and str(env).startswith(PREFIX)


def expiry(ttl_hours: float, now: datetime | None = None) -> str:
    at = (now or datetime.now(UTC)) + timedelta(hours=ttl_hours)
    return at.isoformat(timespec="seconds")


# ---- the Git note ------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What a preview came to, as the ledger records it and the Git note prints it."""

    unit: str
    branch: str
    env: str
    sha: str
    version: str
    passed: bool
    code: str
    message: str
    where: str  # the URL, schema or alias
    gates: dict[str, Any]
    at: str
    expires_at: str

    def note_block(self) -> str:
        gates = ", ".join(f"{g}={c}" for g, c in sorted(self.gates.items())) or "none"
        lines = [
            f"ud preview {self.unit}: {'PASSED' if self.passed else 'REFUSED'}",
            f"  branch:  {self.branch}",
            f"  env:     {self.env}",
            f"  version: {self.version}",
        ]
        if self.passed:
            lines.append(f"  at:      {self.where}")
        else:
            lines.append(f"  why:     {self.code}: {self.message}")
        lines += [
            f"  gates:   {gates}",
            f"  when:    {self.at}",
            f"  expires: {self.expires_at}",
        ]
        return "\n".join(lines)


def merged_note(existing: str, unit: str, block: str) -> str:
    """The note `existing` with `unit`'s block replaced by `block` (other units' kept): a
    commit two units build from holds one block each."""
    blocks, current = [], []
    for line in existing.splitlines():
        if line.startswith("ud preview ") and current:
            blocks.append("\n".join(current))
            current = []
        if line.strip() or current:
            current.append(line)
    if current:
        blocks.append("\n".join(current))
    head = f"ud preview {unit}:"
    kept = [b.rstrip() for b in blocks if not b.startswith(head)]
    return "\n\n".join([*kept, block]) + "\n"


def _git(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def write_note(mirror: Path, repository: str, verdict: Verdict) -> str:
    """Write `verdict` as the note of its commit under refs/notes/ud in the unit's mirror and
    push the notes ref to the unit's repository. Returns where it went, or why it could not be
    pushed (the note is then in the mirror only); never raises for a push refused."""
    if not (mirror / "HEAD").exists():
        return f"not written: no mirror at {mirror}"
    why = ""
    for attempt in range(NOTE_PUSH_TRIES):
        # Start from the repository's notes: another unit's preview may have added its own. By
        # URL, not `origin`: pushing to a mirror's remote pushes every ref.
        fetched = _git(mirror, "fetch", "--quiet", repository, f"+{NOTES_REF}:{NOTES_REF}")
        if fetched.returncode != 0 and "couldn't find remote ref" not in fetched.stderr:
            why = fetched.stderr.strip()[-200:]
        shown = _git(mirror, "notes", f"--ref={NOTES_REF}", "show", verdict.sha)
        existing = shown.stdout if shown.returncode == 0 else ""
        text = merged_note(existing, verdict.unit, verdict.note_block())
        added = subprocess.run(
            ["git", "notes", f"--ref={NOTES_REF}", "add", "-f", "-F", "-", verdict.sha],
            cwd=mirror,
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=_committer(),
        )
        if added.returncode != 0:
            return f"not written: {added.stderr.strip()[-200:]}"
        pushed = _git(mirror, "push", "--quiet", repository, f"{NOTES_REF}:{NOTES_REF}")
        if pushed.returncode == 0:
            return f"{NOTES_REF} of {repository}"
        why = pushed.stderr.strip()[-200:]
        time.sleep(0.2 * (attempt + 1))  # another writer moved the ref: fetch theirs, again
    return f"in the platform's mirror only ({mirror}); push refused: {why}"


def _committer() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.setdefault("GIT_AUTHOR_NAME", "unified-delivery")
    env.setdefault("GIT_AUTHOR_EMAIL", "ud@localhost")
    env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
    env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    return env


# ---- the live previews --------------------------------------------------------------------


def live(ledger: Ledger, unit: str | None = None, now: datetime | None = None) -> list[dict]:
    """Every preview environment whose newest record is a deploy, not a teardown: unit, branch,
    env, version, verdict, URL or schema, age and expiry."""
    from .events import PreviewDeployed, PreviewTornDown

    now = now or datetime.now(UTC)
    newest = ledger.latest_by_place((PreviewDeployed.ACTION, PreviewTornDown.ACTION))
    rows = []
    for (name, env), entry in sorted(newest.items()):
        if entry.action != PreviewDeployed.ACTION or (unit and name != unit):
            continue
        rows.append(row(entry, now))
    return rows


def is_live(ledger: Ledger, unit: str, env: str) -> bool:
    """Whether `unit`'s newest record in `env` is a preview, not its teardown."""
    from .events import PreviewDeployed, PreviewTornDown

    actions = (PreviewDeployed.ACTION, PreviewTornDown.ACTION)
    newest = ledger.latest(unit=unit, env=env, action=actions)
    return newest is not None and newest.action == PreviewDeployed.ACTION


def row(entry: LedgerEntry, now: datetime) -> dict:
    from .events import PreviewDeployed

    event = PreviewDeployed.read(entry)
    at = datetime.fromisoformat(entry.ts)
    expires = datetime.fromisoformat(event.expires_at) if event.expires_at else None
    return {
        "unit": entry.unit,
        "branch": event.branch,
        "env": entry.env,
        "version": entry.version,
        "sha": event.sha,
        "repository": event.repository,
        "verdict": "passed" if event.passed else "refused",
        "code": event.code,
        "url": event.url,
        "schema": event.schema,
        "alias": event.alias,
        "serving": event.serving,
        "at": entry.ts,
        "age_s": round((now - at).total_seconds()),
        "expires_at": event.expires_at,
        "expired": bool(expires and expires <= now),
        "seq": entry.seq,
    }


def age(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)}s"
    if seconds < 7200:
        return f"{int(seconds // 60)}m"
    if seconds < 172800:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"
