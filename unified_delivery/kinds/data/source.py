"""Where a data unit's dbt project is for a build: its folder, or a checkout of a commit of
its Git repository (never the working copy), exported into the home's builds folder."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ...errors import UDError
from ...git_mirror import fetch_commit, git, is_local
from ...home import Home
from .unit import DataUnit


@dataclass(frozen=True)
class Source:
    project: Path  # the dbt project's folder to build
    sha: str | None = None  # the commit it was checked out at (a Git unit)
    subject: str = ""
    committed_at: str = ""


def is_git_ref(ref: str) -> bool:
    """A Git unit's `--ref` is a branch or commit; `{...}` is dbt vars, as for any data unit."""
    return bool(ref.strip()) and not ref.lstrip().startswith("{")


def checkout(unit: DataUnit, home: Home, ref: str = "") -> Source:
    """The unit's dbt project at `ref` (default: the head of its branch), fetched into the
    home's mirror of the repository and exported once per commit."""
    assert unit.repository
    repo = home.expand(unit.repository)
    if is_local(repo) and not Path(repo).exists():
        raise UDError(
            "UD-DATA-REPO-NOT-FOUND",
            f"unit {unit.name}: repository {repo} does not exist",
            "fix `repository`, or create and push it",
        )
    builds = home.builds / unit.name
    mirror = builds / "mirror.git"
    sha = fetch_commit(repo, mirror, ref or unit.ref, unit=unit.name, code="UD-DATA-REF-NOT-FOUND")
    subject, committed_at = git("log", "-1", "--format=%s%x00%cI", sha, cwd=mirror).split("\x00")
    out = builds / f"src-{sha}"
    if not out.exists():
        tmp = Path(tempfile.mkdtemp(prefix=f"src-{sha}.tmp-", dir=builds))
        # The whole tree: a project's local packages (`local: ../shared`) may sit beside it.
        tree = subprocess.run(
            ["git", "archive", "--format=tar", sha],
            cwd=mirror,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if tree.returncode != 0:
            raise UDError("UD-GIT", f"git archive {sha[:12]} failed: {tree.stderr[-300:]!r}", "")
        with tarfile.open(fileobj=io.BytesIO(tree.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        try:
            tmp.rename(out)
        except OSError:  # another build of the same commit finished first: same content
            shutil.rmtree(tmp, ignore_errors=True)
    project = out / unit.project
    if not (project / "dbt_project.yml").exists():
        raise UDError(
            "UD-DATA-PROJECT-NOT-FOUND",
            f"unit {unit.name}: commit {sha[:12]} of {repo} has no dbt project at "
            f"{unit.project!r} (no dbt_project.yml)",
            "fix `project` (the dbt project's folder inside the repository), or commit it",
        )
    return Source(project, sha, subject, committed_at)


def source(unit: DataUnit, home: Home, ref: str = "") -> Source:
    if unit.repository:
        return checkout(unit, home, ref if is_git_ref(ref) else "")
    return Source(Path(unit.project))
