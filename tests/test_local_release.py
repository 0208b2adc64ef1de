"""LocalReleaseTarget against real processes: a stdlib HTTP service started per release."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from unified_delivery.errors import TargetError
from unified_delivery.targets.base import Artifact
from unified_delivery.targets.local_release import LocalReleaseTarget
from unified_delivery.units import AppUnit, ServiceSpec

ENV = "staging"

APP = '''
import argparse, json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

MODE = {mode!r}
if MODE == "crash":
    print("boom: missing configuration", file=sys.stderr)
    sys.exit(3)
pidfile = Path(os.environ["PIDFILE"])
pidfile.parent.mkdir(parents=True, exist_ok=True)
pidfile.write_text(str(os.getpid()))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if MODE == "sick" else 200 if self.path == "/health" else 404
        body = json.dumps({{"status": MODE, "UD_VERSION": os.environ["UD_VERSION"],
                           "greeting": os.environ["GREETING"]}}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
HTTPServer(("127.0.0.1", parser.parse_args().port), Handler).serve_forever()
'''


def make_source(root: Path, version: str, mode: str = "ok") -> Artifact:
    src = root / "src" / version
    src.mkdir(parents=True)
    (src / "app.py").write_text(APP.format(mode=mode))
    return Artifact(unit="svc", kind="app", version=version, location=str(src))


def get(port: int, path: str = "/health") -> tuple[int, dict]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def target(home: Path):
    target = LocalReleaseTarget(home=str(home))
    yield target
    target.stop_all()
    pids = [int(p.read_text()) for p in (home / "pids").glob("*.pid")] if (home / "pids").exists() else []
    assert not [pid for pid in pids if alive(pid)], "a service outlived the test"


@pytest.fixture
def unit() -> AppUnit:
    return AppUnit(
        name="svc",
        team="t",
        repository="/nowhere",
        service=ServiceSpec(
            startup_timeout_s=10,
            env={"PIDFILE": "{home}/pids/{version}.pid", "GREETING": "hello from {env}"},
        ),
    )


def env_dir(home: Path) -> Path:
    return home / "releases" / "svc" / ENV


def current(home: Path) -> str:
    return os.readlink(env_dir(home) / "current")


def test_failed_deploys_keep_the_previous_release_serving(target, unit, home, tmp_path):
    d1 = target.deploy(unit, ENV, make_source(tmp_path, "v1"))
    port1 = d1.details["port"]
    assert (d1.version, d1.previous_version) == ("v1", None)
    assert get(port1) == (200, {"status": "ok", "UD_VERSION": "v1", "greeting": "hello from staging"})
    assert current(home) == "releases/v1"
    assert (env_dir(home) / "releases" / "v1" / "app.py").is_file()

    # v2 exits at once: START, with the service's own error in the message.
    with pytest.raises(TargetError) as crash:
        target.deploy(unit, ENV, make_source(tmp_path, "v2", mode="crash"))
    assert crash.value.code == "UD-TARGET-START"
    assert "boom: missing configuration" in crash.value.message
    assert crash.value.remediation
    assert current(home) == "releases/v1"
    assert get(port1)[1]["UD_VERSION"] == "v1"
    state = json.loads((env_dir(home) / "state.json").read_text())
    assert (state["version"], state["port"], len(state["history"])) == ("v1", port1, 1)

    # v3 runs but its health answers 500: HEALTH, and its process is gone afterwards.
    sick_unit = unit.model_copy(update={"service": unit.service.model_copy(update={"startup_timeout_s": 2})})
    with pytest.raises(TargetError) as sick:
        target.deploy(sick_unit, ENV, make_source(tmp_path, "v3", mode="sick"))
    assert sick.value.code == "UD-TARGET-HEALTH"
    assert "HTTP 500" in sick.value.message
    assert not alive(int((home / "pids" / "v3.pid").read_text()))
    assert current(home) == "releases/v1"
    assert get(port1)[1]["UD_VERSION"] == "v1"

    d4 = target.deploy(unit, ENV, make_source(tmp_path, "v4"))
    assert (d4.version, d4.previous_version) == ("v4", "v1")
    assert current(home) == "releases/v4"
    assert get(d4.details["port"])[1]["UD_VERSION"] == "v4"
    assert not alive(int((home / "pids" / "v1.pid").read_text()))

    back = target.rollback(unit, ENV)
    assert (back.version, back.previous_version) == ("v1", "v4")
    assert current(home) == "releases/v1"
    assert get(back.details["port"])[1]["UD_VERSION"] == "v1"
    history = json.loads((env_dir(home) / "state.json").read_text())["history"]
    assert [(h["version"], h["action"]) for h in history] == [("v1", "deploy"), ("v4", "deploy"), ("v1", "rollback")]
    assert "boom: missing configuration" in (env_dir(home) / "service.log").read_text()


def test_rollback_to_unknown_version_names_the_available_ones(target, unit, tmp_path):
    with pytest.raises(TargetError) as nothing:
        target.rollback(unit, ENV)
    assert nothing.value.code == "UD-TARGET-NO-RELEASE"

    target.deploy(unit, ENV, make_source(tmp_path, "v1"))
    with pytest.raises(TargetError) as no_previous:
        target.rollback(unit, ENV)
    assert no_previous.value.code == "UD-TARGET-NO-RELEASE"

    with pytest.raises(TargetError) as unknown:
        target.rollback(unit, ENV, to_version="v9")
    assert unknown.value.code == "UD-TARGET-NO-RELEASE"
    assert "v9" in unknown.value.message and "v1" in unknown.value.message
    assert target.status(unit, ENV).version == "v1"
    assert target.health(unit, ENV).healthy


def test_status_and_health_report_what_runs(target, unit, tmp_path):
    assert target.status(unit, ENV) is None
    assert not target.health(unit, ENV).healthy
    assert target.versions(unit, ENV) == []

    deployed = target.deploy(unit, ENV, make_source(tmp_path, "v1"))
    status = target.status(unit, ENV)
    assert (status.unit, status.env, status.version) == ("svc", ENV, "v1")
    assert status.deployed_at.endswith("+00:00")
    assert status.details["running"] is True
    assert status.details["pid"] == deployed.details["pid"]
    assert status.details["url"] == f"http://127.0.0.1:{deployed.details['port']}"

    health = target.health(unit, ENV)
    assert health.healthy, health.message
    assert health.details["status_code"] == 200
    assert health.details["body"]["UD_VERSION"] == "v1"

    assert target.stop(unit, ENV) is True
    assert target.stop("svc", ENV) is False
    assert target.status("svc", ENV).details["running"] is False
    stopped = target.health(unit, ENV)
    assert not stopped.healthy and "not running" in stopped.message


def test_preferred_port_is_used_when_free(target, unit, tmp_path):
    port = free_port()
    pinned = unit.model_copy(update={"service": unit.service.model_copy(update={"ports": {ENV: port}})})
    assert target.deploy(pinned, ENV, make_source(tmp_path, "v1")).details["port"] == port
    assert get(port)[1]["UD_VERSION"] == "v1"
    # v1 holds the port until it is stopped, so v2 gets the same port back.
    assert target.deploy(pinned, ENV, make_source(tmp_path, "v2")).details["port"] == port

    target.stop(pinned, ENV)
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", port))
        busy.listen()
        other = target.deploy(pinned, ENV, make_source(tmp_path, "v3")).details["port"]
    assert other != port
    assert get(other)[1]["UD_VERSION"] == "v3"


def test_bad_artifact_changes_nothing(target, unit, home, tmp_path):
    port = target.deploy(unit, ENV, make_source(tmp_path, "v1")).details["port"]
    pid = target.status(unit, ENV).details["pid"]
    missing = Artifact(unit="svc", kind="app", version="v2", location=str(tmp_path / "missing"))
    for artifact in (missing, Artifact(unit="svc", kind="app", version="../x", location=str(tmp_path))):
        with pytest.raises(TargetError) as bad:
            target.deploy(unit, ENV, artifact)
        assert bad.value.code == "UD-TARGET-ARTIFACT"
    assert target.status(unit, ENV).details["pid"] == pid
    assert get(port)[1]["UD_VERSION"] == "v1"
    assert target.versions(unit, ENV) == ["v1"]


def test_keeps_newest_five_releases_plus_current_and_previous(target, unit, home, tmp_path):
    for n in range(1, 8):
        target.deploy(unit, ENV, make_source(tmp_path, f"v{n}"))
    assert target.versions(unit, ENV) == ["v7", "v6", "v5", "v4", "v3"]

    target.rollback(unit, ENV, to_version="v3")
    target.deploy(unit, ENV, make_source(tmp_path, "v8"))
    # v3 is the oldest release on disk but the previous version, so it stays.
    assert target.versions(unit, ENV) == ["v8", "v7", "v6", "v5", "v4", "v3"]
    assert target.rollback(unit, ENV).version == "v3"
    assert not [p for p in (env_dir(home) / "releases").iterdir() if ".tmp-" in p.name]
