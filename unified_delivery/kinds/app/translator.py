"""The app kind's translator: an app unit is declared in YAML (its repository relative to the
file), validated against its repository and the model it serves, and built at a commit."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from ...errors import UDError
from ...git_mirror import fetch_commit, git, is_local
from ...targets.base import Artifact
from ...units import Unit
from ..base import BuildContext, KindTranslator
from . import image
from .environments import ensure as ensure_environment
from .unit import AppUnit


class AppTranslator(KindTranslator):
    unit_class = AppUnit

    def prepare_attributes(self, attributes: dict[str, Any], base_dir: Path) -> dict[str, Any]:
        # A local repository is relative to the unit's file, like a data unit's dbt `project`.
        repo = attributes.get("repository")
        if (
            not isinstance(repo, str)
            or not is_local(repo)
            or Path(repo).is_absolute()
            or "{home}" in repo
        ):
            return attributes
        return {**attributes, "repository": str((base_dir / repo).resolve())}

    def upstream_fields(self, unit: Unit) -> dict[str, str]:
        assert isinstance(unit, AppUnit)
        serves = {unit.serves: "serves"} if unit.serves else {}
        return {**super().upstream_fields(unit), **serves}

    def validate(self, unit: Unit, units: dict[str, Unit]) -> None:
        assert isinstance(unit, AppUnit)
        if unit.serves and (unit.serves not in units or units[unit.serves].kind != "model"):
            self.refuse(unit, "serves", f"{unit.serves!r} is not a model unit of this platform")
        if (
            is_local(unit.repository)
            and "{home}" not in unit.repository
            and not Path(unit.repository).exists()
        ):
            self.refuse(
                unit,
                "repository",
                f"{unit.repository!r} does not exist",
                "give an existing local path or a URL git can reach",
            )

    def env_deps(self, unit: Unit, env: str, units: dict[str, Unit]) -> list[tuple[str, str]]:
        # An app's environment serves the model version deployed in the same environment.
        assert isinstance(unit, AppUnit)
        return [(unit.serves, env)] if unit.serves else []

    def build_candidate(self, unit: Unit, ctx: BuildContext) -> Artifact:
        assert isinstance(unit, AppUnit)
        repo = ctx.home.expand(unit.repository)
        if is_local(repo) and not Path(repo).exists():
            raise UDError(
                "UD-APP-REPO-NOT-FOUND",
                f"unit {unit.name}: repository {repo} does not exist",
                "create the repository (ud demo does for the reference app) or fix `repository`",
            )
        mirror = ctx.home.builds / unit.name / "mirror.git"
        ref = ctx.config.get("ref") or unit.branch
        sha = fetch_commit(
            repo,
            mirror,
            ref,
            unit=unit.name,
            code="UD-APP-REF-NOT-FOUND",
        )
        fmt = "%an <%ae>%x00%cn <%ce>%x00%aI%x00%cI%x00%s"
        author, committer, authored_at, committed_at, subject = git(
            "log", "-1", f"--format={fmt}", sha, cwd=mirror
        ).split("\x00")
        out = ctx.home.builds / unit.name / sha
        if not out.exists():
            tmp = Path(tempfile.mkdtemp(prefix=f"{sha}.tmp-", dir=out.parent))
            tree = subprocess.run(
                ["git", "archive", "--format=tar", sha, "--", unit.path],
                cwd=mirror,
                capture_output=True,
                timeout=120,
                check=False,
            )
            if tree.returncode != 0:
                raise UDError(
                    "UD-APP-PATH-NOT-FOUND",
                    f"unit {unit.name}: path {unit.path!r} is not in commit {sha[:12]} of {ref}",
                    f"an app builds from a commit: commit {unit.path} to {ref} (git add, git "
                    "commit), or fix `path` in the unit's YAML",
                )
            with tarfile.open(fileobj=io.BytesIO(tree.stdout)) as tar:
                tar.extractall(tmp, filter="data")
            try:
                tmp.rename(out)
            except OSError:  # another build of the same commit finished first: same content
                shutil.rmtree(tmp, ignore_errors=True)
        src = out / unit.path
        tree_hash = git(
            "rev-parse", f"{sha}:{unit.path}" if unit.path != "." else f"{sha}^{{tree}}", cwd=mirror
        )
        ctx.log(f"built {unit.name} at {sha[:12]} ({subject})")
        # The app's own dependencies, at build time: a commit whose files do not install is
        # refused here, with the installer's output, before any gate runs it.
        environment = ensure_environment(unit, src, ctx.home, ctx.log)
        digest = f"git-tree:{tree_hash}"
        image_details = self._image(unit, src, sha, repo, committed_at, ctx)
        if image_details.get("image_digest"):
            # An app with a Containerfile ships its image: the artifact is the image's digest.
            digest = image_details["image_digest"]
            image_details["source_digest"] = f"git-tree:{tree_hash}"
        return Artifact(
            unit=unit.name,
            kind="app",
            version=sha,
            digest=digest,
            location=str(src),
            details={
                "repository": repo,
                "ref": ref,
                "author": author,
                "committer": committer,
                "authored_at": authored_at,
                "committed_at": committed_at,
                "subject": subject,
                "change_created_at": committed_at,
                **(environment.summary() if environment else {}),
                **image_details,
            },
        )

    def _image(
        self, unit: AppUnit, src: Path, sha: str, repo: str, committed_at: str, ctx: BuildContext
    ) -> dict[str, Any]:
        """The commit's image (kinds/app/image.py) when the app has a Containerfile: its details
        for the artifact, or why it was not built (the process target then runs the app)."""
        file = image.containerfile(src)
        if file is None:
            return {}
        reason = image.unavailable(ctx.registry)
        if reason:
            ctx.log(f"{unit.name} has a {file.name} but {reason}: no image, a process release")
            return {"image_skipped": reason}
        built = image.build(
            unit.name,
            src,
            sha,
            source=repo,
            committed_at=int(datetime.fromisoformat(committed_at).timestamp()),
            registry=ctx.registry,
            home=ctx.home,
            log=ctx.log,
        )
        return built.details()
