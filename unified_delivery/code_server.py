"""The platform's Dagster code server, for the runs `ud` submits to the instance.

`ud promote` submits a run as `dagster job launch` does: the run is made from the code
location's own view of the job (its snapshots and origin), then handed to the instance, whose
run coordinator and launcher decide where it runs. The default launcher starts the run from a
code server (`dagster api grpc`), which this module keeps, one per home, on a Unix socket:

- it is started on first use and reused by the next commands while what the definitions are
  made from is unchanged (the catalog's digest: the platform's files and its UD_ variables)
  and the environment the runs would inherit is the same (secrets come from it);
- otherwise it is told to shut down once its runs finish, and a new one is started;
- it stops by itself after UD_CODE_SERVER_IDLE_S seconds (default 600) without a command
  (Dagster's heartbeat, which a command sends while it holds the workspace), after its runs
  finish; `ud down` stops it at once;
- it is `python -m unified_delivery.code_server` (serve): Dagster's `dagster api grpc` whose
  runs are forked from a fork server that imported Dagster and the definitions once
  (run_worker.py), not spawned as fresh interpreters.

It listens on `<home>/run/code-server-<key>-<random>.sock` (a private temp folder when that path
is too long for a socket): one path per server, because a server that ends (replaced, or idle)
removes its socket path, which must not be its successor's. A command that reaches a server
just as it ends (its idle time ran out) starts a new one and tries again, once. Its output (the
runs' own Dagster logs, MLflow's and dbt's chatter) goes to `<home>/logs/code-server.log`,
never to the user's terminal.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock

from .errors import ConfigError
from .home import Home

LOCATION = "unified_delivery_platform"  # workspace.yaml's location name: the UI's runs
START_TIMEOUT_S = 300.0
SOCKET_PATH_MAX = 100
PRELOAD = "UD_RUN_WORKER_PRELOAD"  # the definitions module run_worker.py imports in the fork server
# Variables that change between two shells (or two tests) of one user and that no run reads.
VOLATILE = {"PWD", "OLDPWD", "SHLVL", "_", "UD_TOKEN", "COLUMNS", "LINES", "PS1", "DISPLAY"}
VOLATILE_PREFIXES = ("TERM", "SSH_", "TMUX", "XDG_SESSION", "WINDOW", "PYTEST_", "_ARGCOMPLETE")


def idle_timeout_s() -> int:
    return max(30, int(os.environ.get("UD_CODE_SERVER_IDLE_S", "600")))


def state_file(home: Home) -> Path:
    return home.root / "run" / "code-server.json"


def socket_path(home: Home, key: str) -> str:
    """Where the code server for `key` listens: in the home's private run folder, or, when that
    path is too long for a Unix socket (108 bytes), in a private folder of its own under the
    temp dir, removed when the server is stopped."""
    path = home.root / "run" / f"code-server-{key[:8]}-{secrets.token_hex(3)}.sock"
    if len(str(path)) > SOCKET_PATH_MAX:
        return str(Path(tempfile.mkdtemp(prefix="ud-cs-")) / "s")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a server that stopped by itself leaves its socket
    return str(path)


def log_file(home: Home) -> Path:
    return home.root / "logs" / "code-server.log"


def _key(root: Path, home: Home) -> str:
    from .catalog import digest

    h = hashlib.sha256(digest(root, home).encode())
    h.update(sys.executable.encode())
    for name in sorted(set(os.environ) - VOLATILE):
        if name.startswith(VOLATILE_PREFIXES):
            continue
        h.update(f"\0{name}={os.environ[name]}".encode(errors="surrogateescape"))
    return h.hexdigest()


def _client(socket: str):
    from dagster._grpc.client import DagsterGrpcClient

    return DagsterGrpcClient(socket=socket)


def _alive(state: dict) -> bool:
    try:
        os.kill(int(state["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return False
    try:
        _client(state["socket"]).ping("ud")
        return True
    except Exception:
        return False


def _read(home: Home) -> dict | None:
    try:
        return json.loads(state_file(home).read_text())
    except (OSError, ValueError):
        return None


def stop(home: Home, *, wait_for_runs: bool = True) -> bool:
    """Stop the home's code server: once its runs finish (the default), or now. Whether one ran."""
    state = _read(home)
    if state is None:
        return False
    with contextlib.suppress(OSError):
        state_file(home).unlink()
    if not _alive(state):
        _remove_socket(state)
        return False
    if wait_for_runs:
        with contextlib.suppress(Exception):
            _client(state["socket"]).shutdown_server()
            return True
    with contextlib.suppress(OSError):
        os.killpg(int(state["pid"]), signal.SIGTERM)
    _remove_socket(state)
    return True


def _remove_socket(state: dict) -> None:
    """A stopped server's socket, and the private temp folder it had when the home's path was
    too long."""
    socket = Path(state.get("socket", "") or "/nonexistent")
    if socket.parent.name.startswith("ud-cs-"):
        shutil.rmtree(socket.parent, ignore_errors=True)
    else:
        socket.unlink(missing_ok=True)


def _start(home: Home, root: Path, key: str) -> dict:
    from .service.loading import definitions_module

    module, folder = definitions_module(root)
    socket = socket_path(home, key)
    log = log_file(home)
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "unified_delivery.code_server",
        "--socket",
        socket,
        "--module-name",
        module,
        "--attribute",
        "defs",
        "--working-directory",
        str(folder),
        "--location-name",
        LOCATION,
        "--heartbeat",
        "--heartbeat-timeout",
        str(idle_timeout_s()),
    ]
    own = Path(socket).parent
    if own.name.startswith("ud-cs-"):  # a temp folder of its own: it goes when the server ends
        cmd = ["sh", "-c", 'd=$1; shift; "$@"; rc=$?; rm -rf "$d"; exit $rc', "sh", str(own), *cmd]
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home.dagster_home),
        "UD_HOME": str(home.root),
        "UD_PROJECT": str(root),
        PRELOAD: module,
    }
    env.pop("UD_TOKEN", None)  # a run acts for its recorded grant, never for a token
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C of this command does not stop others' runs
        )
    state = {"pid": proc.pid, "socket": socket, "key": key, "root": str(root)}
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-12:]
            raise ConfigError(
                "UD-CODE-SERVER",
                "the platform's code server did not start: " + " | ".join(tail)[-1500:],
                f"fix what it says (all of it is in {log}); `python -c 'import {module}'` shows "
                "a traceback",
            )
        if _alive(state):
            state_file(home).parent.mkdir(parents=True, exist_ok=True)
            state_file(home).write_text(json.dumps(state))
            return state
        time.sleep(0.1)
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGTERM)
    raise ConfigError(
        "UD-CODE-SERVER",
        f"the platform's code server did not answer within {START_TIMEOUT_S:.0f} s",
        f"see {log}",
    )


def server(home: Home, root: Path) -> dict:
    """The home's code server for the platform at `root`: the running one if it serves these
    definitions with this environment, else a new one."""
    home.locks.mkdir(parents=True, exist_ok=True)
    key = _key(root, home)
    with FileLock(str(home.locks / "code-server.lock")):
        state = _read(home)
        if state is not None and state.get("key") == key and _alive(state):
            _client(state["socket"]).heartbeat("ud")  # a command counts as use
            return state
        if state is not None:
            stop(home)  # after its runs: another command may be watching one
        return _start(home, root, key)


def serve(argv: list[str]) -> None:
    """`python -m unified_delivery.code_server ARGS`: `dagster api grpc ARGS`, whose runs start
    from a fork server that has imported Dagster and the platform's definitions once
    (run_worker.py), instead of each run a fresh interpreter that imports and loads them all
    again (Dagster's server spawns one per run: 3 to 4 s for the tiny platform, a minute at
    1,000 units)."""
    import multiprocessing

    from dagster._cli.api import api_cli
    from dagster._grpc import server as grpc_server

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["unified_delivery.run_worker"])
    original = grpc_server.DagsterApiServer.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._mp_ctx = context  # what StartRun starts a run's process with

    grpc_server.DagsterApiServer.__init__ = init
    from multiprocessing import forkserver

    forkserver.ensure_running()  # its imports overlap the server's own load of the definitions
    api_cli.main(args=["grpc", *argv], prog_name="dagster api")


GONE = ("UNAVAILABLE", "CANCELLED")  # gRPC codes of a server that ended under the call


def gone(exc: BaseException) -> bool:
    """Whether `exc` says the code server went away during the call (not a platform error)."""
    from dagster._core.errors import DagsterUserCodeUnreachableError

    text = str(exc)
    return isinstance(exc, DagsterUserCodeUnreachableError) or (
        isinstance(exc, ConfigError) and any(f"gRPC Error code: {c}" in text for c in GONE)
    )


@contextlib.contextmanager
def workspace(instance: Any, home: Home, root: Path) -> Iterator[Any]:
    """A Dagster workspace request context on the home's code server."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import GrpcServerTarget

    state = server(home, root)
    target = GrpcServerTarget(
        host="localhost", port=None, socket=state["socket"], location_name=LOCATION
    )
    # The server ends after its idle time without a heartbeat and no run in flight; a command
    # slower than that between its first call and StartRun (a loaded machine, a short idle time)
    # would find it gone: the command beats while it holds the workspace.
    stop_beating = threading.Event()
    beater = threading.Thread(
        target=_beat, args=(state["socket"], stop_beating), name="ud-code-server-heartbeat"
    )
    beater.daemon = True
    beater.start()
    try:
        with WorkspaceProcessContext(instance, target) as context:
            request = context.create_request_context()
            error = request.get_code_location_error(LOCATION)
            if error is not None:
                raise ConfigError(
                    "UD-CODE-SERVER",
                    f"the platform's definitions do not load: {error.message.strip()[:1500]}",
                    "fix the platform code named",
                )
            yield request
    finally:
        stop_beating.set()


def _beat(socket: str, stop_beating: threading.Event) -> None:
    interval = max(min(idle_timeout_s() / 4, 10.0), 0.5)
    client = _client(socket)
    while not stop_beating.wait(interval):
        with contextlib.suppress(Exception):  # a server that went away is the caller's to tell
            client.heartbeat("ud")


def forget(home: Home) -> None:
    """The home's code server went away under a command: the next `server()` starts anew (one
    that still answers is told to end once its runs finish, never killed)."""
    stop(home)


if __name__ == "__main__":
    serve(sys.argv[1:])
