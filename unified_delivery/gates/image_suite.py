"""The tests gate's suite run inside the candidate's image: the environment the release will run
in (its interpreter, packages and OS), not the platform's host.

`podman run` of the image by digest (what the ledger names), with the repository's files at the
candidate commit mounted at SUITE_DIR (owned by the image's user, `:U`) as the working folder,
the unit's `test_command` in place of the image's entrypoint ({python} is `python3`, the
image's own), the unit's `test_env`, HOME and TMPDIR on a fresh /tmp. What it is kept from:
the network (`--network none`: loopback only), every capability, privilege escalation, and
writing to the image's own files (`--read-only`). It runs as the image's user: the
container-policy gate is what refuses an image whose user is root.

The run is container_shim.py around `podman run`, as a release is (targets/container_run.py),
for the same reason: podman 4.3's attached run can miss the exit of a container that ends at
once. At the time limit the shim stops the container.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from ..containers import Containers
from ..home import Home
from ..targets import container_run
from .sandbox import run_to_file

SUITE_DIR = "/ud/suite"  # the box: src/ (the working folder) and junit.xml
PYTHON = "python3"  # {python} in the test command: the image's interpreter
STOP_GRACE_S = 15.0


def describe(image: str, user: str) -> str:
    return (
        f"container: podman run of {image} as its user {user or 'root (USER unset)'}, "
        "network none, read-only root, no capabilities"
    )


def user(home: Home, image: str) -> str:
    """The image pulled into the home's storage (by digest) and its USER."""
    containers = Containers.of(home)
    container_run.pull(containers, image, home)
    return container_run.user_of(containers, image)


def argv(name: str, image: str, cmd: list[str], env_names: list[str], box: Path) -> list[str]:
    """container_shim.py around the `podman run` of `cmd` in `image`, in the box at SUITE_DIR."""
    return [
        *container_run.podman_run(name),
        "--network",
        "none",
        "--read-only",  # /tmp, /var/tmp and /run stay writable (podman's tmpfs)
        "--cap-drop",
        "all",
        "--security-opt",
        "no-new-privileges",
        "--pull",
        "never",  # pulled by digest before (user)
        "--volume",
        f"{box}:{SUITE_DIR}:U",
        "--workdir",
        f"{SUITE_DIR}/src",
        "--entrypoint",
        cmd[0],
        *[f for n in env_names for f in ("--env", n)],
        image,
        *cmd[1:],
    ]


def run(
    home: Home,
    image: str,
    cmd: list[str],
    *,
    box: Path,
    env: dict[str, str],
    timeout: float,
    output: Path,
    name: str,
) -> int | None:
    """Run `cmd` in `image` with `box` at SUITE_DIR and `env` its variables; its output into
    `output`; its exit code, or None when it ran out of time (the container is then stopped)."""
    containers = Containers.of(home)
    try:
        return run_to_file(
            argv(name, image, cmd, sorted(env), box),
            env={**containers.env(), **env},  # podman passes the `--env NAME` values from here
            timeout=timeout,
            output=output,
            stop=_stop,
        )
    finally:
        container_run.remove(name, containers.env())  # gone already: nothing to do


def _stop(proc: subprocess.Popen) -> None:
    """Out of time or interrupted: the shim stops the container, given STOP_GRACE_S."""
    proc.terminate()
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
