"""An app release run as a podman container, for the embedded app target (local_release.py).

The local release target starts, health-checks, switches and stops a release's process; for a
release whose candidate has an image (kinds/app/image.py) that process is container_shim.py,
which runs the image by digest and lives as long as its container, so every step of the process
target applies unchanged: the pid, its start token, the blue-green switch on a new port, the
health check, the rollback, the reaping of a killed deploy and the drift the probes see (a
container stopped behind the platform's back ends its shim, so the release is no longer
running).

What the container gets, as the process would: the port (`PORT`, on the host's loopback: the
host's network, as the process target shares it), the unit's `service.env` and the UD_
variables, and the app's persistent folder (`{state_dir}`, UD_STATE_DIR) mounted at the same
path, owned by the image's user. Its command is the image's own (CMD/ENTRYPOINT): the
Containerfile says how the app starts. catatonit runs as its pid 1 (`--init`), so a SIGTERM
stops the app as it stops a process.

Stopping: the target signals the shim's process group; the shim stops the container (SIGTERM,
then SIGKILL after the grace), which is then removed by name (its name is on the shim's command
line, so a process found by pid, after any restart of the platform, names its container). A
container that ended by itself (a release that crashed at start) is removed by the next deploy
of its unit and environment (`prune`, by its RELEASE_LABEL).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..containers import Containers
from ..home import Home
from . import registry

PODMAN = "podman"
NAME_PREFIX = "ud-"
RELEASE_LABEL = "dev.unified-delivery.release"
SHIM = Path(__file__).with_name("container_shim.py")
STOP_TIMEOUT_S = 5
# The container's own PATH, HOME and locale come from its image, never the host's.
HOST_ONLY = frozenset({"PATH", "HOME", "TMPDIR", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ"})


def podman_run(name: str) -> list[str]:
    """container_shim.py around `podman run` of a container called `name`, up to its own
    options: runc and cgroupfs (crun refuses this kind of machine's cgroups), an init as pid 1.
    Not --rm: its caller removes the container itself (remove), after the shim has read the
    exit code."""
    return [
        sys.executable,
        str(SHIM),
        name,
        "--",
        PODMAN,
        "--runtime",
        "runc",
        "--cgroup-manager",
        "cgroupfs",
        "run",
        "--init",
        "--name",
        name,
    ]


def available() -> bool:
    return shutil.which(PODMAN) is not None


@dataclass(frozen=True)
class ContainerRun:
    """How one release runs as a container."""

    image: str  # repository@sha256:...
    name: str  # ud-<unit>-<env>-<version>-<random>
    release: str  # <unit>/<env>, its RELEASE_LABEL
    state_dir: str
    containers: Containers

    def argv(
        self, env_names: list[str], command: list[str] | None = None, suffix: str = ""
    ) -> list[str]:
        """The process that runs the image (container_shim.py around `podman run`): its own
        command, or `command` (a setup step, whose container's name ends with `suffix`)."""
        passed = [f for n in env_names if n not in HOST_ONLY for f in ("--env", n)]
        return [
            *podman_run(self.name + suffix),
            "--label",
            f"{RELEASE_LABEL}={self.release}",
            "--network",
            "host",
            "--pull",
            "never",  # pulled by digest before (pull), so a start never waits for the registry
            "--volume",
            f"{self.state_dir}:{self.state_dir}",
            *passed,
            self.image,
            *(command or []),
        ]

    def remove(self, suffix: str = "") -> None:
        remove(self.name + suffix, self.containers.env())

    def prune(self) -> None:
        """Remove the release's containers that ended (a crashed start, an earlier setup)."""
        self.containers.run(
            PODMAN,
            "container",
            "prune",
            "--force",
            "--filter",
            f"label={RELEASE_LABEL}={self.release}",
            code="UD-TARGET-IMAGE",
            what="",
            remediation="",
            check=False,
            timeout=60,
        )

    def env(self, service_env: dict[str, str]) -> dict[str, str]:
        """The environment of `podman run` itself: the service's (podman passes the variables
        `--env NAME` names from it), with this home's container configuration."""
        return {**self.containers.env(), **service_env}


def pull(containers: Containers, image: str, home: Home) -> None:
    """The image into the home's storage, by digest (what the ledger names, nothing else); the
    home's own registry started first when the image is there and not yet pulled."""
    exists = containers.run(
        PODMAN,
        "image",
        "exists",
        image,
        code="UD-TARGET-IMAGE",
        what="",
        remediation="",
        check=False,
        timeout=60,
    )
    if exists.returncode == 0:
        return
    local = image.split("/", 1)[0] == registry.recorded_address(home)
    if local:
        registry.ensure_local(home)
    containers.run(
        PODMAN,
        "pull",
        "--quiet",
        f"--tls-verify={'false' if local else 'true'}",
        image,
        code="UD-TARGET-IMAGE",
        what=f"pulling {image}",
        remediation="check that the image's registry runs and is reachable (the home's own "
        "starts when it is needed, from <home>/registry)",
        timeout=600,
    )


def user_of(containers: Containers, image: str) -> str:
    done = containers.run(
        PODMAN,
        "image",
        "inspect",
        "--format",
        "{{.Config.User}}",
        image,
        code="UD-TARGET-IMAGE",
        what=f"reading the user of {image}",
        remediation="pull the image again (deploy the version again)",
        timeout=60,
    )
    return done.stdout.strip()


def own_state_dir(state_dir: Path, user: str) -> None:
    """The persistent folder writable by the image's user (a numeric `USER uid[:gid]`)."""
    uid, _, gid = user.partition(":")
    if uid.isdigit():
        with contextlib.suppress(PermissionError):
            os.chown(state_dir, int(uid), int(gid) if gid.isdigit() else int(uid))


def container_of(pid: int) -> tuple[str, dict[str, str]] | None:
    """The container a release's process (container_shim.py, by pid) runs, and the configuration
    it was started with (its storage is the home's): what `remove` needs, read before it is
    stopped."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    if len(args) < 4 or not args[1].endswith(SHIM.name.encode()) or args[3] != b"--":
        return None
    name = args[2].decode(errors="replace")
    if not name.startswith(NAME_PREFIX):
        return None
    keep = ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "PATH")
    env: dict[str, str] = {}
    for entry in environ:
        key, _, value = entry.decode(errors="replace").partition("=")
        if key in keep:
            env[key] = value
    return name, env


def remove(name: str, env: dict[str, str]) -> None:
    """Stop and remove the container (gone already: nothing to do)."""
    subprocess.run(
        [
            PODMAN,
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "rm",
            "--force",
            "--ignore",
            "--time",
            str(STOP_TIMEOUT_S),
            name,
        ],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
