"""Checkpoints: the ledger's head (sequence number, hash, time, the public key that signs it),
signed with the ledger key and kept outside the ledger's database, so that a history cut
short or rewritten whole is still found out.

`write` keeps each one as a file under the home (`checkpoints/<seq>.json`) and, when the
platform repository is a Git repository, as a commit on `refs/ud/checkpoints` (one commit
per checkpoint, each the child of the last): push that ref to a remote, or copy the files,
and the checkpoints live off the machine. `newest` reads both and keeps the highest one
whose signature holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UDError
from ..home import Home
from .keys import LedgerKey, verify_with

if TYPE_CHECKING:
    from .chain import Ledger

REF = "refs/ud/checkpoints"
FILE_NAME = "checkpoint.json"


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    ts: str
    key: str  # the public key (base64) that signed the ledger up to here
    first_signed: int | None  # the first signed entry, so stripped signatures are noticed
    signature: str = ""

    def message(self) -> bytes:
        return (
            f"ud-checkpoint:{self.seq}:{self.hash}:{self.ts}:{self.key}:{self.first_signed}"
        ).encode()

    def valid(self) -> bool:
        return bool(self.signature) and verify_with(self.key, self.signature, self.message())

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        doc = json.loads(text)
        return cls(
            seq=int(doc["seq"]),
            hash=str(doc["hash"]),
            ts=str(doc["ts"]),
            key=str(doc["key"]),
            first_signed=doc.get("first_signed"),
            signature=str(doc.get("signature", "")),
        )


def _git(repo: Path, *args: str, input_text: str | None = None) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        input=input_text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if proc.returncode != 0:
        raise UDError(
            "UD-CHECKPOINT-GIT",
            f"git {' '.join(args[:2])} failed: {proc.stderr.strip()}",
            "check that the platform repository is a writable Git repository",
        )
    return proc.stdout.strip()


def is_git(repo: Path | None) -> bool:
    return (
        bool(repo)
        and subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--git-dir"], capture_output=True, timeout=30
        ).returncode
        == 0
    )


def write(
    ledger: Ledger, key: LedgerKey, home: Home, repo: Path | None = None
) -> tuple[Checkpoint, list[str]]:
    """Checkpoint the head as it is now; returns it and where it was kept."""
    head = ledger.head()
    if head is None:
        raise UDError(
            "UD-CHECKPOINT-EMPTY",
            "the ledger is empty: there is no head to checkpoint",
            "checkpoint after the first promotion",
        )
    report = ledger.verify(public_key=key.public)
    if not report.ok:
        raise UDError(
            "UD-LEDGER-BROKEN",
            f"the ledger does not verify ({report.finding}: {report.reason}); a "
            "checkpoint would vouch for it",
            "find out what happened first: `ud audit verify`",
            exit_code=3,
        )
    cp = Checkpoint(
        seq=head.seq,
        hash=head.hash,
        ts=datetime.now(timezone.utc).isoformat(),
        key=key.public,
        first_signed=report.signed_from,
    )
    cp = Checkpoint(**{**asdict(cp), "signature": key.sign(cp.message())})
    folder = home.root / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cp.seq:012d}.json"
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as fh:
        fh.write(cp.to_json())
    os.replace(fh.name, path)
    kept = [str(path)]
    if repo is not None and is_git(repo):
        blob = _git(repo, "hash-object", "-w", "--stdin", input_text=cp.to_json())
        tree = _git(repo, "mktree", input_text=f"100644 blob {blob}\t{FILE_NAME}\n")
        parent = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--verify", "-q", REF],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        env_args = ["-c", "user.name=ud", "-c", "user.email=ud@localhost"]
        commit = _git(
            repo,
            *env_args,
            "commit-tree",
            tree,
            *(["-p", parent] if parent else []),
            "-m",
            f"ud ledger checkpoint: entry {cp.seq}, {cp.hash[:12]}",
        )
        _git(repo, "update-ref", REF, commit, *([parent] if parent else []))
        kept.append(f"{repo}:{REF}")
    return cp, kept


def newest(home: Home, repo: Path | None = None) -> tuple[Checkpoint | None, list[str]]:
    """The highest checkpoint whose signature holds, from the home's files and the Git ref;
    and the problems met on the way (an unreadable or badly signed checkpoint is reported,
    never trusted)."""
    found: list[Checkpoint] = []
    problems: list[str] = []
    folder = home.root / "checkpoints"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found.append(Checkpoint.from_json(path.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"{path}: unreadable ({exc})")
    if repo is not None and is_git(repo):
        ref = subprocess.run(
            ["git", "-C", str(repo), "show", f"{REF}:{FILE_NAME}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if ref.returncode == 0:
            try:
                found.append(Checkpoint.from_json(ref.stdout))
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(f"{repo}:{REF}: unreadable ({exc})")
    problems += [
        f"checkpoint {cp.seq}: its signature does not hold" for cp in found if not cp.valid()
    ]
    return max((cp for cp in found if cp.valid()), key=lambda cp: cp.seq, default=None), problems
