"""A unit's Git repository as builds read it: a mirror per unit in the home's builds folder,
fetched under a lock (concurrent builds share it), and a branch or commit resolved in it.
Used by every kind whose source is a repository (apps, data units by repository)."""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

from .errors import UDError


def git(*args: str, cwd: Path | str | None = None, timeout: float = 120) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise UDError(
            "UD-GIT",
            f"git {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}",
            "check that the repository exists and is reachable",
        )
    return proc.stdout.strip()


def is_local(repository: str) -> bool:
    return "://" not in repository and not (":" in repository and "@" in repository.split(":")[0])


def fetch_commit(repo: str, mirror: Path, ref: str, *, unit: str, code: str) -> str:
    """The commit `ref` names in `repo`, fetched into `mirror` first; `code` refuses a ref that
    names no commit (the kind's own code)."""
    mirror.parent.mkdir(parents=True, exist_ok=True)
    with open(mirror.parent / ".mirror.lock", "w") as lock:  # concurrent builds share one mirror
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not mirror.exists():
            git("clone", "--quiet", "--mirror", repo, str(mirror))
        else:
            git("remote", "set-url", "origin", repo, cwd=mirror)
            git("fetch", "--quiet", "--prune", "--force", "origin", "+refs/*:refs/*", cwd=mirror)
        try:
            return git("rev-parse", "--verify", f"{ref}^{{commit}}", cwd=mirror)
        except UDError:
            raise UDError(
                code,
                f"unit {unit}: {ref!r} is not a commit or branch of {repo}",
                "push the branch or give an existing commit",
            ) from None
