"""The embedded target of wrapped Dagster assets: the candidate's file, published per
environment with an atomic switch.

Per unit and environment, under `<home>/artifacts/<unit>/<env>/`:

    versions/<version>/value.<format>   the file, one directory per version
    current                             symlink to versions/<version>, replaced atomically
    state.json                          current and previous version, digests, history

Readers open `current/value.<format>` (or ask `path()`): they see the old file or the new
one, never a half-written one, because the file is copied in full before `current` moves.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from unified_delivery.errors import TargetError
from unified_delivery.targets.base import Artifact, BaseTarget, Deployment, Health, Log
from unified_delivery.targets.probes import artifact_root, artifact_status
from unified_delivery.targets.state_files import TMP_MARK, locked, read_json, write_json

if TYPE_CHECKING:
    from unified_delivery.units import Unit

KEEP_VERSIONS = 5
HISTORY_LIMIT = 100


class LocalArtifactTarget(BaseTarget):
    """Publishes `asset` units' files under the home, one `current` per environment."""

    kinds = ("asset",)
    home: str = Field(
        default="",
        description="Home directory holding `artifacts/`; empty means the current home "
        "($UD_HOME or .ud), read at call time.",
    )
    probe_kind = "local_artifact"

    def _probe_fields(self, unit: Unit) -> dict[str, Any]:
        return {"home": self.home}

    def _lock(self, unit: Unit, env: str) -> AbstractContextManager[None]:
        return locked(self._root(unit.name, env))

    def _deploy(
        self, unit: Unit, env: str, artifact: Artifact, current: Deployment | None, log: Log
    ) -> Deployment:
        source = Path(artifact.location)
        if not source.is_file():
            raise TargetError(
                "UD-TARGET-ARTIFACT",
                f"{unit.name} version {artifact.version}: {source} is not a file",
                f"build the candidate again: ud promote {unit.name} --to {unit.environments[0]}",
            )
        if _digest(source) != artifact.digest:
            raise TargetError(
                "UD-TARGET-ARTIFACT",
                f"{unit.name} version {artifact.version}: {source} changed after "
                "it was built (its digest differs)",
                "build the candidate again; nothing was published",
            )
        root = self._root(unit.name, env)
        (root / "versions").mkdir(parents=True, exist_ok=True)
        _copy_in(root, artifact.version, source, log)
        dep = self._switch(unit.name, env, root, artifact.version, artifact.digest, "deploy")
        log(f"{unit.name}/{env} now publishes version {artifact.version} at {dep.details['path']}")
        return dep

    def _rollback(
        self, unit: Unit, env: str, to_version: str | None, current: Deployment | None, log: Log
    ) -> Deployment:
        if current is None:
            raise _no_version(unit.name, env, to_version, [])
        root = self._root(unit.name, env)
        state = read_json(root / "state.json") or {}
        wanted = to_version or state.get("previous_version")
        if not wanted:
            raise TargetError(
                "UD-TARGET-NO-PREVIOUS",
                f"{unit.name}/{env} has no previous version to roll back to",
                "give the version: ud rollback ... --to VERSION",
            )
        if wanted == current.version:
            raise TargetError(
                "UD-TARGET-SAME-VERSION",
                f"{unit.name}/{env} already publishes version {wanted}",
                "roll back to another version",
            )
        history = reversed(state.get("history", []))
        digest = next((h["digest"] for h in history if h["version"] == wanted), None)
        if wanted not in self.versions(unit, env) or digest is None:
            raise _no_version(unit.name, env, wanted, self.versions(unit, env))
        dep = self._switch(unit.name, env, root, wanted, digest, "rollback")
        log(f"{unit.name}/{env} is back on version {wanted}")
        return dep

    def _restore(self, unit: Unit, env: str, before: Deployment | None, log: Log) -> None:
        root = self._root(unit.name, env)
        if before is None:  # it published nothing before
            (root / "current").unlink(missing_ok=True)
            (root / "state.json").unlink(missing_ok=True)
            return
        digest = before.details["digest"]
        self._switch(unit.name, env, root, before.version, digest, "restore", keep=before)

    def status(self, unit: Unit | str, env: str) -> Deployment | None:
        return artifact_status(self._root(_name(unit), env), env)

    def health(self, unit: Unit | str, env: str) -> Health:
        name = _name(unit)
        dep = self.status(name, env)
        if dep is None:
            return Health(False, f"nothing was ever published to {name}/{env}")
        path = Path(dep.details["path"])
        details = {"version": dep.version, **dep.details}
        if "published_version" in dep.details:
            return Health(
                False,
                f"{name}/{env}: `current` points at {dep.version}, not at version "
                f"{dep.details['published_version']} the platform published",
                details,
            )
        try:
            digest = _digest(path)
        except OSError as exc:
            return Health(
                False, f"{name}/{env} version {dep.version}: {path} cannot be read: {exc}", details
            )
        if digest != dep.details["digest"]:
            return Health(
                False,
                f"{name}/{env} version {dep.version}: {path} changed after it was published",
                details,
            )
        return Health(
            True,
            f"{name}/{env} version {dep.version}: {path} is present, readable and unchanged",
            details,
        )

    def versions(self, unit: Unit | str, env: str) -> list[str]:
        folder = self._root(_name(unit), env) / "versions"
        if not folder.is_dir():
            return []
        dirs = [p for p in folder.iterdir() if p.is_dir() and TMP_MARK not in p.name]
        dirs.sort(key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
        return [p.name for p in dirs]

    def path(self, unit: Unit | str, env: str) -> Path | None:
        """The file `env` publishes now, for readers."""
        dep = self.status(unit, env)
        return Path(dep.details["path"]) if dep else None

    def read(self, unit: Unit | str, env: str) -> Any:
        """The value `env` publishes now, as the asset returned it."""
        from unified_delivery.kinds.asset.values import read_value

        path = self.path(unit, env)
        if path is None:
            raise TargetError(
                "UD-TARGET-NO-RELEASE",
                f"nothing was ever published to {_name(unit)}/{env}",
                f"promote {_name(unit)} to {env} first",
            )
        return read_value(path)

    # ---- internals --------------------------------------------------------------------

    def _root(self, unit_name: str, env: str) -> Path:
        return artifact_root(self.home, unit_name, env)

    def _switch(
        self,
        unit_name: str,
        env: str,
        root: Path,
        version: str,
        digest: str,
        action: str,
        *,
        keep: Deployment | None = None,
    ) -> Deployment:
        """Point `current` at `version` and record it; on a failed record, point it back. With
        `keep` (a restore), its previous version and deploy time are recorded again as they were."""
        state = read_json(root / "state.json") or {}
        previous = state.get("version")
        if previous == version:  # a redeploy of the same version keeps the rollback point
            previous = state.get("previous_version")
        file = next((root / "versions" / version).iterdir()).name
        now = datetime.now(UTC).isoformat(timespec="seconds")
        if keep is not None:
            previous, now = keep.previous_version, keep.deployed_at
        history = [
            *(state or {}).get("history", []),
            {"version": version, "digest": digest, "deployed_at": now, "action": action},
        ]
        new_state = {
            "unit": unit_name,
            "env": env,
            "version": version,
            "previous_version": previous,
            "digest": digest,
            "file": file,
            "deployed_at": now,
            "history": history[-HISTORY_LIMIT:],
        }
        _point_current(root, version)
        try:
            write_json(root / "state.json", new_state)
        except BaseException:
            if state:
                _point_current(root, state["version"])
            else:
                (root / "current").unlink(missing_ok=True)
            raise
        os.utime(
            root / "versions" / version
        )  # age means "last published" for versions() and pruning
        _prune(root, keep={version, previous})
        return Deployment(
            unit=unit_name,
            env=env,
            version=version,
            deployed_at=now,
            previous_version=previous,
            details={"path": str(root / "current" / file), "digest": digest},
        )


def _copy_in(root: Path, version: str, source: Path, log: Log) -> None:
    dest = root / "versions" / version
    if dest.is_dir():
        return
    tmp = root / "versions" / f"{version}{TMP_MARK}{secrets.token_hex(4)}"
    log(f"copying {source} to {dest}")
    try:
        tmp.mkdir()
        shutil.copy2(source, tmp / source.name)
        os.rename(tmp, dest)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TargetError(
            "UD-TARGET-ARTIFACT",
            f"could not copy {source} to {dest}: {exc}",
            "check free disk space and permissions under the home's artifacts/ directory",
        ) from exc


def _point_current(root: Path, version: str) -> None:
    tmp = root / f"current{TMP_MARK}{secrets.token_hex(4)}"
    os.symlink(Path("versions") / version, tmp)
    os.replace(tmp, root / "current")


def _prune(root: Path, keep: set[str | None]) -> None:
    folder = root / "versions"
    for stale in [
        p for p in folder.iterdir() if TMP_MARK in p.name
    ]:  # left by a crash; we hold the lock
        shutil.rmtree(stale, ignore_errors=True)
    dirs = sorted(
        (p for p in folder.iterdir() if p.is_dir()),
        key=lambda p: (p.stat().st_mtime_ns, p.name),
        reverse=True,
    )
    for old in dirs[KEEP_VERSIONS:]:
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)


def _digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return f"sha256:{hashlib.file_digest(handle, 'sha256').hexdigest()}"


def _no_version(unit: str, env: str, version: str | None, available: list[str]) -> TargetError:
    return TargetError(
        "UD-TARGET-NO-RELEASE",
        f"{unit}/{env}: version {version} was never published there; "
        f"available: {', '.join(available) or 'none'}",
        "roll back to one of the available versions, or promote the version you want again",
    )


def _name(unit: Unit | str) -> str:
    return unit if isinstance(unit, str) else unit.name
