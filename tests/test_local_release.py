"""LocalReleaseTarget against real processes: a stdlib HTTP service started per release.

Deploys are blue-green: the tests that follow the service while a deploy runs read its URL
from status() every 50 ms, as a client would, and count every poll that got no 200. What every
target promises (rollback, unknown versions, names, the lock): tests/test_target_contract.py."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from unified_delivery.errors import TargetError
from unified_delivery.targets.base import Artifact
from unified_delivery.targets.local_release import LocalReleaseTarget
from unified_delivery.kinds.app.unit import AppUnit, ServiceSpec

ENV = "staging"

APP = '''
import argparse, json, os, signal, sys, threading, time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

MODE = {mode!r}
if MODE == "crash":
    print("boom: missing configuration", file=sys.stderr)
    sys.exit(3)
if MODE == "stubborn":  # ignores SIGTERM: only the SIGKILL after the grace period stops it
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
pidfile = Path(os.environ["PIDFILE"])
pidfile.parent.mkdir(parents=True, exist_ok=True)
pidfile.write_text(str(os.getpid()))
print("warming up for {delay!r}s", flush=True)
time.sleep({delay!r})  # a slow start (imports, a model to load): nothing listens yet


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if MODE == "brief":  # healthy once, then gone: it passes the first check only
            threading.Timer(0.2, os._exit, (4,)).start()
        code = 500 if MODE == "sick" else 200 if self.path == "/health" else 404
        body = json.dumps({{"status": MODE, "UD_VERSION": os.environ["UD_VERSION"],
                           "greeting": os.environ["GREETING"]}}).encode()
        if self.path == "/env":  # the names of the variables the deployed code sees
            code, body = 200, json.dumps(sorted(os.environ)).encode()
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


def make_source(root: Path, version: str, mode: str = "ok", delay: float = 0.0) -> Artifact:
    src = root / "src" / version
    src.mkdir(parents=True)
    (src / "app.py").write_text(APP.format(mode=mode, delay=delay))
    return Artifact(unit="svc", kind="app", version=version, location=str(src))


def get(port: int, path: str = "/health") -> tuple[int, dict]:
    return get_url(f"http://127.0.0.1:{port}{path}")


def get_url(url: str) -> tuple[int, dict]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@contextlib.contextmanager
def following(target, unit):
    """Poll the service as a client would while the block runs: read the URL from status(),
    GET its /health, every 50 ms. Yields the list of (status code or None, version or error)."""
    polls: list[tuple[int | None, str | None]] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            url = target.status(unit, ENV).details["url"]
            try:
                code, body = get_url(url + "/health")
                polls.append((code, body.get("UD_VERSION")))
            except OSError as exc:
                polls.append((None, f"{url}: {exc}"))
            time.sleep(0.05)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    time.sleep(0.2)
    try:
        yield polls
    finally:
        time.sleep(0.2)
        done.set()
        thread.join()


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


def test_status_and_health_report_what_runs(target, unit, tmp_path, monkeypatch):
    monkeypatch.setenv("UD_SIGNING_KEY", "operator-signing-key-0123456789")  # the operator's secrets ...
    monkeypatch.setenv("DB_PASSWORD", "hunter2-hunter2")
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
    seen = set(get_url(status.details["url"] + "/env")[1])  # ... never reach the deployed code: what its unit declares
    assert {"GREETING", "PORT", "UD_VERSION", "UD_PREDICTION_LOG"} <= seen and not seen & {"UD_SIGNING_KEY", "DB_PASSWORD", "UD_HOME"}

    assert target.stop(unit, ENV) is True
    assert target.stop("svc", ENV) is False
    assert target.status("svc", ENV).details["running"] is False
    stopped = target.health(unit, ENV)
    assert not stopped.healthy and "not running" in stopped.message


def test_current_switched_by_hand_shows_as_the_version_it_names(target, unit, home, tmp_path):
    """`current` is what the next restart runs: switched with plain `ln -sfn`, status says that
    version (running_version beside it), so the platform sees the drift; switched back, it
    is what the target deployed again."""
    target.deploy(unit, ENV, make_source(tmp_path, "v1"))
    target.deploy(unit, ENV, make_source(tmp_path, "v2"))
    subprocess.run(["ln", "-sfn", "releases/v1", str(env_dir(home) / "current")], check=True)
    moved = target.status(unit, ENV)
    assert (moved.version, moved.details["running_version"]) == ("v1", "v2")
    (env_dir(home) / "current").unlink()
    assert target.status(unit, ENV).version == "(no current release)"
    subprocess.run(["ln", "-sfn", "releases/v2", str(env_dir(home) / "current")], check=True)
    back = target.status(unit, ENV)
    assert back.version == "v2" and "running_version" not in back.details


def test_preferred_port_is_used_when_free(target, unit, tmp_path):
    port = free_port()
    pinned = unit.model_copy(update={"service": unit.service.model_copy(update={"ports": {ENV: port}})})
    assert target.deploy(pinned, ENV, make_source(tmp_path, "v1")).details["port"] == port
    assert get(port)[1]["UD_VERSION"] == "v1"
    # v1 serves on the port while v2 starts, so v2 gets another one; the port is free again
    # once v1 is stopped, and v3 gets it back.
    second = target.deploy(pinned, ENV, make_source(tmp_path, "v2")).details["port"]
    assert second != port
    assert get(second)[1]["UD_VERSION"] == "v2"
    with pytest.raises(urllib.error.URLError):
        get(port)
    assert target.deploy(pinned, ENV, make_source(tmp_path, "v3")).details["port"] == port
    assert get(port)[1]["UD_VERSION"] == "v3"

    target.stop(pinned, ENV)
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", port))
        busy.listen()
        other = target.deploy(pinned, ENV, make_source(tmp_path, "v4")).details["port"]
    assert other != port
    assert get(other)[1]["UD_VERSION"] == "v4"


def test_bad_artifact_changes_nothing(target, unit, home, tmp_path):
    port = target.deploy(unit, ENV, make_source(tmp_path, "v1")).details["port"]
    pid = target.status(unit, ENV).details["pid"]
    missing = Artifact(unit="svc", kind="app", version="v2", location=str(tmp_path / "missing"))
    with pytest.raises(TargetError) as bad:  # an unsafe version name: tests/test_target_contract.py
        target.deploy(unit, ENV, missing)
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


# ---- blue-green: the old release serves until the new one does ---------------------------


def state_of(home: Path) -> dict:
    return json.loads((env_dir(home) / "state.json").read_text())


def pid_of(home: Path, version: str) -> int:
    return int((home / "pids" / f"{version}.pid").read_text())


def test_deploy_and_rollback_are_zero_downtime(target, unit, home, tmp_path):
    d1 = target.deploy(unit, ENV, make_source(tmp_path, "v1"))
    with following(target, unit) as polls:
        started = time.monotonic()
        d2 = target.deploy(unit, ENV, make_source(tmp_path, "v2", delay=2.0))
        wall = time.monotonic() - started
    assert wall >= 2.0  # the slow start was inside the deploy, so the polls covered it
    assert [p for p in polls if p[0] != 200] == [], "a poll got no 200 during the deploy"
    versions = [version for _, version in polls]
    first_v2 = versions.index("v2")
    assert versions[:first_v2] == ["v1"] * first_v2 and versions[first_v2:] == ["v2"] * (len(versions) - first_v2)
    assert first_v2 >= 20, "v1 served while v2 started (2 s at 50 ms a poll)"
    assert d2.details["port"] != d1.details["port"]
    assert target.status(unit, ENV).details["url"] == f"http://127.0.0.1:{d2.details['port']}"
    assert get(d2.details["port"])[1]["UD_VERSION"] == "v2"
    assert not alive(pid_of(home, "v1"))
    assert not (env_dir(home) / "pending.json").exists()

    with following(target, unit) as polls:
        back = target.rollback(unit, ENV)
    assert back.version == "v1"
    assert [p for p in polls if p[0] != 200] == [], "a poll got no 200 during the rollback"
    assert polls[0][1] == "v2" and polls[-1][1] == "v1"
    assert not alive(pid_of(home, "v2"))


def test_a_release_that_never_answers_leaves_the_old_one_serving(target, unit, home, tmp_path):
    d1 = target.deploy(unit, ENV, make_source(tmp_path, "v1"))
    before = state_of(home)
    quick = unit.model_copy(update={"service": unit.service.model_copy(update={"startup_timeout_s": 2})})
    with following(target, unit) as polls, pytest.raises(TargetError) as late:
        target.deploy(quick, ENV, make_source(tmp_path, "v2", delay=60))
    assert late.value.code == "UD-TARGET-HEALTH"
    assert "did not answer 200 within 2s" in late.value.message
    assert "warming up for 60s" in late.value.message  # the new release's log tail
    assert f"still runs version v1 on http://127.0.0.1:{d1.details['port']}, untouched" in late.value.message
    assert polls and all(p == (200, "v1") for p in polls), [p for p in polls if p != (200, "v1")]
    assert state_of(home) == before and current(home) == "releases/v1"
    assert not alive(pid_of(home, "v2"))
    assert not (env_dir(home) / "pending.json").exists()

    # A rollback to a release that does not come up fails the same way.
    with pytest.raises(TargetError) as crash:
        target.deploy(unit, ENV, make_source(tmp_path, "v3", mode="crash"))
    with following(target, unit) as polls, pytest.raises(TargetError) as back:
        target.rollback(unit, ENV, to_version="v3")
    assert (crash.value.code, back.value.code) == ("UD-TARGET-START", "UD-TARGET-START")
    assert "boom: missing configuration" in back.value.message
    assert polls and all(p == (200, "v1") for p in polls)
    assert state_of(home) == before
    assert target.status(unit, ENV).details["pid"] == d1.details["pid"]


def test_a_release_that_dies_after_the_switch_is_switched_back(target, unit, home, tmp_path):
    d1 = target.deploy(unit, ENV, make_source(tmp_path, "v1"))
    before = state_of(home)
    with pytest.raises(TargetError) as brief:
        target.deploy(unit, ENV, make_source(tmp_path, "v2", mode="brief"))
    assert brief.value.code == "UD-TARGET-START"
    assert "answered 200 before the switch but not after it" in brief.value.message
    assert "exited with code 4" in brief.value.message
    assert state_of(home) == before and current(home) == "releases/v1"
    assert target.status(unit, ENV).details["pid"] == d1.details["pid"]  # never stopped
    assert get(d1.details["port"])[1]["UD_VERSION"] == "v1"


def test_a_bad_or_taken_port_leaves_the_old_one_serving(target, unit, home, tmp_path):
    d1 = target.deploy(unit, ENV, make_source(tmp_path, "v1"))
    before = state_of(home)
    for bad in (70000, -1):
        pinned = unit.model_copy(update={"service": unit.service.model_copy(update={"ports": {ENV: bad}})})
        with following(target, unit) as polls, pytest.raises(TargetError) as invalid:
            target.deploy(pinned, ENV, make_source(tmp_path, f"v{bad}"))
        assert invalid.value.code == "UD-TARGET-PORT"
        assert f"service.ports.{ENV} is {bad}, not a TCP port" in invalid.value.message
        assert polls and all(p == (200, "v1") for p in polls)
        assert state_of(home) == before
        assert not (home / "pids" / f"v{bad}.pid").exists()  # nothing was started

    # Free when it was picked, taken before the new release could listen on it.
    pending = env_dir(home) / "pending.json"
    stranger = socket.socket()
    taken = threading.Event()

    def take_the_port() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                stranger.bind(("127.0.0.1", json.loads(pending.read_text())["port"]))
                stranger.listen()
                taken.set()
                return
            time.sleep(0.01)

    thief = threading.Thread(target=take_the_port)
    thief.start()
    try:
        with following(target, unit) as polls, pytest.raises(TargetError) as busy:
            target.deploy(unit, ENV, make_source(tmp_path, "v2", delay=1.0))
    finally:
        thief.join()
        stranger.close()
    assert taken.is_set()
    assert busy.value.code == "UD-TARGET-START"
    assert "Address already in use" in busy.value.message
    assert polls and all(p == (200, "v1") for p in polls)
    assert state_of(home) == before
    assert get(d1.details["port"])[1]["UD_VERSION"] == "v1"


def test_an_unexpected_failure_is_a_target_error_and_changes_nothing(target, unit, home, tmp_path):
    d1 = target.deploy(unit, ENV, make_source(tmp_path, "v1"))
    target.deploy(unit, ENV, make_source(tmp_path, "v2"))
    d3 = target.deploy(unit, ENV, make_source(tmp_path, "v3"))
    before = state_of(home)
    log = env_dir(home) / "service.log"
    log.rename(log.with_name("service.log.old"))
    log.mkdir()  # the services' log cannot be opened: not the service's fault, not a TargetError of ours
    with pytest.raises(TargetError) as deploy:
        target.deploy(unit, ENV, make_source(tmp_path, "v4"))
    with pytest.raises(TargetError) as rollback:
        target.rollback(unit, ENV, to_version="v1")
    for failed, what in ((deploy, "deploying version v4"), (rollback, "rolling back to v1")):
        assert failed.value.code == "UD-TARGET-FAILED"
        assert what in failed.value.message and "IsADirectoryError" in failed.value.message
        assert failed.value.remediation
    assert state_of(home) == before and current(home) == "releases/v3"
    assert get(d3.details["port"])[1]["UD_VERSION"] == "v3"
    assert not (env_dir(home) / "pending.json").exists()
    assert not alive(pid_of(home, "v1")) and d1.details["port"] != d3.details["port"]


# ---- a deploying process killed with SIGKILL ------------------------------------------------

CHILD = """
import json, sys
from unified_delivery.targets.base import Artifact
from unified_delivery.targets.local_release import LocalReleaseTarget
from unified_delivery.kinds.app.unit import AppUnit

args = json.loads(sys.argv[1])
target = LocalReleaseTarget(home=args["home"], drain_s=args["drain_s"])
target.deploy(AppUnit.model_validate(args["unit"]), args["env"], Artifact(**args["artifact"]))
"""


def deploy_in_a_child(home: Path, unit: AppUnit, artifact: Artifact, drain_s: float = 0.5) -> subprocess.Popen:
    args = {"home": str(home), "drain_s": drain_s, "unit": unit.model_dump(mode="json"), "env": ENV,
            "artifact": {"unit": artifact.unit, "kind": artifact.kind, "version": artifact.version,
                         "location": artifact.location}}
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)])


def kill_when(child: subprocess.Popen, ready, what: str) -> None:
    deadline = time.monotonic() + 30
    while not ready():
        assert child.poll() is None, f"the deploying process ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()


def pending_of(home: Path) -> dict:
    try:
        return json.loads((env_dir(home) / "pending.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def test_killed_before_the_switch_the_old_release_serves_and_the_orphan_is_reaped(target, unit, home, tmp_path):
    d1 = target.deploy(unit, ENV, make_source(tmp_path, "v1"))
    before = state_of(home)
    child = deploy_in_a_child(home, unit, make_source(tmp_path, "v2", delay=30))
    kill_when(child, lambda: pending_of(home).get("pid") and (home / "pids" / "v2.pid").exists(),
              "the new release started")
    orphan = pid_of(home, "v2")
    assert alive(orphan)  # still starting, in its own session: the kill did not take it along
    assert state_of(home) == before and current(home) == "releases/v1"
    assert get(d1.details["port"])[1]["UD_VERSION"] == "v1"

    status = target.status(unit, ENV)  # finds the lock free: the deploy is dead, so it reaps
    assert (status.version, status.details["port"], status.details["running"]) == ("v1", d1.details["port"], True)
    assert not alive(orphan)
    assert not (env_dir(home) / "pending.json").exists()

    d3 = target.deploy(unit, ENV, make_source(tmp_path, "v3"))
    assert (d3.version, d3.previous_version) == ("v3", "v1")
    assert get(d3.details["port"])[1]["UD_VERSION"] == "v3"
    assert [h["version"] for h in state_of(home)["history"]] == ["v1", "v3"]


def test_killed_after_the_switch_before_it_was_verified_is_undone(target, unit, home, tmp_path):
    d1 = target.deploy(unit, ENV, make_source(tmp_path, "v1"))
    before = state_of(home)
    child = deploy_in_a_child(home, unit, make_source(tmp_path, "v2"), drain_s=30)
    kill_when(child, lambda: state_of(home)["version"] == "v2", "the switch")
    assert get(d1.details["port"])[1]["UD_VERSION"] == "v1"  # the old release was not stopped
    orphan = pid_of(home, "v2")

    status = target.status(unit, ENV)
    assert (status.version, status.details["pid"]) == ("v1", d1.details["pid"])
    assert state_of(home) == before and current(home) == "releases/v1"
    assert not alive(orphan)
    assert get(d1.details["port"])[1]["UD_VERSION"] == "v1"


def test_killed_after_verification_is_finished(target, unit, home, tmp_path):
    target.deploy(unit, ENV, make_source(tmp_path, "v1", mode="stubborn"))
    child = deploy_in_a_child(home, unit, make_source(tmp_path, "v2"))
    # v1 ignores SIGTERM, so the deploy waits in the grace period, old release still alive
    kill_when(child, lambda: pending_of(home).get("verified"), "the verification")
    assert alive(pid_of(home, "v1"))

    status = target.status(unit, ENV)
    assert (status.version, status.details["running"]) == ("v2", True)
    assert not alive(pid_of(home, "v1"))
    assert current(home) == "releases/v2"
    assert get(status.details["port"])[1]["UD_VERSION"] == "v2"
    assert not (env_dir(home) / "pending.json").exists()
