"""The daemonless container tools (buildah, podman, skopeo) as the platform runs them.

Everything they keep lives under `<home>/containers/`, never the machine's /var/lib/containers:
its own containers.conf and storage.conf (read by every tool through CONTAINERS_CONF and
CONTAINERS_STORAGE_CONF), the image and layer storage, and the registry credentials file
(REGISTRY_AUTH_FILE), so two homes (two tests) never share or clean up each other's images.

What this machine needed, found by trying: runc (crun refuses its cgroup layout), the cgroupfs
manager, no default ulimits (its rlimits are below podman's defaults). The storage driver is
overlay where the kernel mounts it in the storage folder (builds in about a second) and vfs
otherwise (a full copy of the root file system per layer: tens of seconds);
UD_CONTAINERS_STORAGE_DRIVER picks one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import EXIT_TARGET, UDError, one_line
from .home import Home
from .redaction import redact_text

TOOLS = ("buildah", "podman", "skopeo")
ERROR_TAIL = 600  # characters of a failed tool's output kept in the error

CONTAINERS_CONF = """\
# Written by unified-delivery for this home (unified_delivery/containers.py).
[containers]
default_ulimits = []
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{root}/libpod"
volume_path = "{root}/volumes"
"""


def missing_tools(tools: tuple[str, ...] = TOOLS) -> list[str]:
    """The container tools this machine lacks (an image needs buildah, skopeo; a run podman)."""
    return [t for t in tools if shutil.which(t) is None]


@dataclass(frozen=True)
class Containers:
    """The container tools bound to one home's configuration and storage."""

    root: Path

    @classmethod
    def of(cls, home: Home) -> Containers:
        return cls(home.root / "containers")

    @property
    def auth_file(self) -> Path:
        return self.root / "auth.json"

    @property
    def cache(self) -> Path:
        """Files worth keeping across homes (the base image's root file system): $UD_CONTAINERS_
        CACHE when set (tests share one per machine), else in this home."""
        return Path(os.environ.get("UD_CONTAINERS_CACHE") or self.root / "cache")

    def ensure(self) -> Containers:
        if (self.root / "storage.conf").exists():
            return self
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.root / "containers.conf").write_text(CONTAINERS_CONF.format(root=self.root))
        driver = os.environ.get("UD_CONTAINERS_STORAGE_DRIVER") or (
            "overlay" if self._overlay_works() else "vfs"
        )
        self._write_storage(driver)
        return self

    def _write_storage(self, driver: str) -> None:
        tmp = self.root / "storage.conf.tmp"
        tmp.write_text(
            "[storage]\n"
            f'driver = "{driver}"\n'
            f'graphroot = "{self.root / "storage"}"\n'
            f'runroot = "{self.root / "run"}"\n'
        )
        tmp.rename(self.root / "storage.conf")

    def _overlay_works(self) -> bool:
        probe = self.root / "overlay-probe"
        shutil.rmtree(probe, ignore_errors=True)
        for d in ("lower", "upper", "work", "merged"):
            (probe / d).mkdir(parents=True)
        spec = f"lowerdir={probe / 'lower'},upperdir={probe / 'upper'},workdir={probe / 'work'}"
        mounted = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", spec, str(probe / "merged")],
            capture_output=True,
            check=False,
        )
        if mounted.returncode == 0:
            subprocess.run(["umount", str(probe / "merged")], capture_output=True, check=False)
        shutil.rmtree(probe, ignore_errors=True)
        return mounted.returncode == 0

    @property
    def driver(self) -> str:
        text = (self.ensure().root / "storage.conf").read_text()
        return "overlay" if 'driver = "overlay"' in text else "vfs"

    def env(self) -> dict[str, str]:
        self.ensure()
        env = {
            **os.environ,
            "CONTAINERS_CONF": str(self.root / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.root / "storage.conf"),
            "TMPDIR": str(self._tmp()),
        }
        env.pop("REGISTRY_AUTH_FILE", None)  # never the operator's: this home's, or none
        if self.auth_file.exists():  # the tools refuse a named auth file that is missing
            env["REGISTRY_AUTH_FILE"] = str(self.auth_file)
        return env

    def _tmp(self) -> Path:
        # Layers are staged in TMPDIR: on the home's disk, not a small /tmp.
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp

    def remove(self) -> None:
        """Remove this home's containers, images and storage (a test's teardown): the working
        containers first, then whatever the storage still has mounted under it."""
        if not self.root.exists():
            return
        if shutil.which("buildah"):
            subprocess.run(
                ["buildah", "rm", "--all"], env=self.env(), capture_output=True, check=False
            )
        mounts = [
            line.split()[1]
            for line in Path("/proc/self/mounts").read_text().splitlines()
            if line.split()[1].startswith(f"{self.root}/")
        ]
        for point in reversed(mounts):  # the innermost first
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def run(
        self,
        tool: str,
        *args: str,
        code: str,
        what: str,
        remediation: str,
        timeout: float = 1800,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run one tool with this home's configuration; a failure is a UDError with `code` and
        the tool's last output (redacted)."""
        argv = [tool, *args]
        if tool == "podman":
            argv = [tool, "--runtime", "runc", "--cgroup-manager", "cgroupfs", *args]
        try:
            done = subprocess.run(
                argv,
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise UDError(
                code,
                f"{what}: {tool} did not finish in {timeout:.0f} s",
                remediation,
                exit_code=EXIT_TARGET,
            ) from None
        if check and done.returncode != 0:
            # The end of the output says what failed (the step, the missing file).
            output = one_line(redact_text(done.stdout + done.stderr), 10**6)[-ERROR_TAIL:]
            raise UDError(
                code,
                f"{what}: {tool} exited with {done.returncode}: {output}",
                remediation,
                exit_code=EXIT_TARGET,
            )
        return done
