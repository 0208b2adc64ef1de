"""Where app images live: an OCI registry, and the embedded home's own.

A platform names its registry in its resources (`"registry": ImageRegistry(address=...)`), with
the credentials read from the environment when an image is pushed or looked up (never stored in
the resources, the ledger or a command line: they go to the home's REGISTRY_AUTH_FILE, 0600).
Without one, the embedded home runs its own: the CNCF Distribution registry (`docker-registry
serve`), its storage in `<home>/registry/`, on a loopback port, started the first time an image
is built and reused by every later command; `<home>/run/registry.json` says where it listens and
keeps the port for the next start, so the image names the ledger recorded stay valid after
`ud down` (which stops it).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field

from ..containers import Containers
from ..errors import EXIT_TARGET, UDError
from ..home import Home
from .ports import bind_problem, free_port

START_TIMEOUT_S = 15.0
STOP_GRACE_S = 5.0
REGISTRY_BINARY = "docker-registry"
_CHILDREN: dict[int, subprocess.Popen] = {}  # started here: kept to be reaped when stopped


class ImageRegistry(BaseModel):
    """The registry a platform's app images are pushed to and run from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str = Field(
        default="",
        description="host[:port] of any OCI registry (registry.example.com, ghcr.io); empty: the "
        "embedded home's own local registry, started the first time it is needed",
    )
    namespace: str = Field(
        default="",
        description="a path before each unit's image name (acme/apps: acme/apps/<unit>)",
    )
    username_env: str = Field(
        default="UD_REGISTRY_USERNAME",
        description="the environment variable holding the registry user, read at push time",
    )
    password_env: str = Field(
        default="UD_REGISTRY_PASSWORD",
        description="the environment variable holding its password or token, read at push time",
    )
    tls_verify: bool = Field(
        default=True, description="verify the registry's certificate (the local one is plain HTTP)"
    )
    base_image: str = Field(
        default="",
        description="the image app Containerfiles build FROM, as the build argument UD_BASE_IMAGE; "
        "empty: Debian bookworm with python3, built from the OS packages once and kept in this "
        "registry",
    )

    @property
    def is_local(self) -> bool:
        return not self.address

    def open(self, home: Home) -> RegistryAccess:
        """This registry, ready to push to: the local one started if needed, the credentials from
        the environment written to the home's auth file."""
        containers = Containers.of(home).ensure()
        if self.is_local:
            return RegistryAccess(ensure_local(home), self.namespace, False, containers, local=True)
        user, password = os.environ.get(self.username_env), os.environ.get(self.password_env)
        if user and password:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            _write_private(containers.auth_file, {"auths": {self.address: {"auth": token}}})
        return RegistryAccess(self.address, self.namespace, self.tls_verify, containers)


@dataclass(frozen=True)
class RegistryAccess:
    """An open registry: where a unit's images are named, and the flags every tool needs."""

    address: str
    namespace: str
    tls_verify: bool
    containers: Containers
    local: bool = False  # the home's own registry, on loopback

    def repository(self, name: str) -> str:
        prefix = self.namespace.strip("/")
        return f"{self.address}/{prefix + '/' if prefix else ''}{name}"

    @property
    def tls(self) -> str:
        return f"--tls-verify={'true' if self.tls_verify else 'false'}"

    def digest_of(self, reference: str) -> str | None:
        """The manifest digest a tag names in the registry, or None when the tag is not there."""
        done = self.containers.run(
            "skopeo",
            "inspect",
            self.tls,
            "--format",
            "{{.Digest}}",
            f"docker://{reference}",
            code="UD-APP-IMAGE-PUSH",
            what=f"looking up {reference}",
            remediation="check that the registry is reachable and the credentials "
            "(UD_REGISTRY_USERNAME, UD_REGISTRY_PASSWORD) are allowed to read",
            timeout=120,
            check=False,
        )
        if done.returncode == 0:
            return done.stdout.strip() or None
        err = done.stderr.lower()
        if "manifest unknown" in err or "not found" in err or "name_unknown" in err:
            return None
        said = " ".join(done.stderr.split())[-400:]
        raise UDError(
            "UD-APP-IMAGE-PUSH",
            f"looking up {reference} in the registry failed: {said}",
            "check that the registry is reachable and the credentials "
            "(UD_REGISTRY_USERNAME, UD_REGISTRY_PASSWORD) are allowed to read",
            exit_code=EXIT_TARGET,
        )


def _write_private(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    tmp.replace(path)


# The embedded home's registry.


def registry_dir(home: Home) -> Path:
    return home.root / "registry"


def state_file(home: Home) -> Path:
    return home.root / "run" / "registry.json"


def _read_state(home: Home) -> dict:
    try:
        return json.loads(state_file(home).read_text())
    except (OSError, ValueError):
        return {}


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return REGISTRY_BINARY.encode() in cmdline and "zombie" not in status


def _answers(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=1) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def local_address(home: Home) -> str | None:
    """Where the home's registry listens, when it runs (no start)."""
    state = _read_state(home)
    return state.get("address") if _alive(state.get("pid")) else None


def recorded_address(home: Home) -> str | None:
    """Where the home's registry listens or listened last (its images are named after it)."""
    return _read_state(home).get("address")


def ensure_local(home: Home) -> str:
    """The home's registry, started when it is not running: its host:port on 127.0.0.1."""
    state = _read_state(home)
    if _alive(state.get("pid")) and _answers(state["address"]):
        return state["address"]
    home.locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(home.locks / "registry.lock")):
        state = _read_state(home)
        if _alive(state.get("pid")) and _answers(state["address"]):
            return state["address"]
        return _start(home, state)


def _start(home: Home, state: dict) -> str:
    import shutil

    if shutil.which(REGISTRY_BINARY) is None:
        raise UDError(
            "UD-REGISTRY-START",
            f"the local image registry needs {REGISTRY_BINARY}, which is not installed",
            "install the docker-registry package (Debian: apt-get install docker-registry), or "
            "name a registry in the platform's resources (ImageRegistry(address=...))",
            exit_code=EXIT_TARGET,
        )
    folder = registry_dir(home)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    # The same port as last time when it is free: the images the ledger names stay reachable.
    port = state.get("port")
    if not isinstance(port, int) or bind_problem(port) is not None:
        port = free_port()
    address = f"127.0.0.1:{port}"
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {folder / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {address}\n  secret: {secrets.token_hex(16)}\n"
    )
    config.chmod(0o600)
    log = folder / "registry.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the build that started it, until `ud down`
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(address):
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            tail = " ".join(log.read_text(errors="replace").split())[-400:]
            raise UDError(
                "UD-REGISTRY-START",
                f"the local image registry did not answer on {address}: {tail}",
                f"see {log}; `ud down` and try again",
                exit_code=EXIT_TARGET,
            )
        time.sleep(0.1)
    _CHILDREN[proc.pid] = proc
    _write_private(state_file(home), {"pid": proc.pid, "port": port, "address": address})
    return address


def stop_local(home: Home) -> bool:
    """Stop the home's registry (its images stay in its storage); whether one was running."""
    state = _read_state(home)
    pid = state.get("pid")
    if not _alive(pid):
        return False
    assert isinstance(pid, int)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if pid in _CHILDREN:
        _CHILDREN.pop(pid).wait(timeout=STOP_GRACE_S)
    _write_private(state_file(home), {**state, "pid": None})
    return True
