"""Canary rollouts on the embedded app target: a real nginx (started and configured by the
target) in front of the environment, real services, and real requests sent through it while
a deploy goes step by step (targets/front_door.py, targets/rollout.py)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from unified_delivery.errors import TargetError
from unified_delivery.kinds.app.unit import AppUnit, RolloutSpec, ServiceSpec
from unified_delivery.targets.base import Artifact
from unified_delivery.targets.front_door import FrontDoor
from unified_delivery.targets.local_release import LocalReleaseTarget
from unified_delivery.targets.rollout import read_record
from unified_delivery.targets.probes import release_paths

pytestmark = pytest.mark.skipif(
    not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()), reason="needs nginx (.ci/run installs it)"
)
ENV = "production"

APP = '''
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = {mode!r}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        code = 200 if self.path == "/health" or MODE == "ok" else 500
        body = json.dumps({{"version": os.environ["UD_VERSION"]}}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])), Handler).serve_forever()
'''


def source(root: Path, version: str, mode: str = "ok") -> Artifact:
    src = root / "src" / version
    src.mkdir(parents=True)
    (src / "app.py").write_text(APP.format(mode=mode))
    return Artifact(unit="svc", kind="app", version=version, location=str(src))


def app(**rollout) -> AppUnit:
    spec = {"steps": [{"weight": 25, "pause": "1.5s"}, {"weight": 60, "pause": "1.5s"}],
            "analysis": {"error_rate": 0.05, "min_requests": 5, "interval_s": 0.25}}
    spec.update(rollout)
    return AppUnit(name="svc", team="t", repository="/nowhere", service=ServiceSpec(startup_timeout_s=15),
                   rollout=RolloutSpec.model_validate(spec))


def call(url: str) -> tuple[int | None, str | None]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, json.loads(response.read())["version"]
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError as exc:
        return None, str(exc)


@contextlib.contextmanager
def traffic(url: str):
    """Requests to the environment's front URL, one every 20 ms, as its clients send them."""
    seen: list[tuple[int | None, str | None]] = []
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            seen.append(call(url + "/work"))
            time.sleep(0.02)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def target(home: Path):
    target = LocalReleaseTarget(home=str(home))
    yield target
    stopped = target.stop_all()
    assert FrontDoor(home).running_pid() is None, stopped  # ud down stops nginx too


def test_a_canary_goes_step_by_step_and_a_failing_one_goes_back_to_stable(target, home, tmp_path):
    unit = app()
    first = target.deploy(unit, ENV, source(tmp_path, "v1"))  # nothing to compare: at once
    front = first.details["url"]
    assert front != first.details["release_url"]  # the environment's URL is the front door's
    assert call(front + "/work") == (200, "v1")

    with traffic(front) as seen:
        second = target.deploy(unit, ENV, source(tmp_path, "v2"))
        time.sleep(0.3)
    assert second.details["url"] == front  # the URL never moved
    assert all(code == 200 for code, _ in seen), [s for s in seen if s[0] != 200][:5]
    versions = [v for _, v in seen]
    assert "v1" in versions and "v2" in versions and versions[-1] == "v2"
    record = read_record(release_paths(str(home), "svc", ENV))
    assert record["status"] == "completed" and [a["verdict"] for a in record["analysis"]] == ["passed", "passed"]
    assert record["analysis"][0]["new"]["requests"] >= 5 and record["analysis"][0]["stable"]["requests"] > 0
    # nginx's weights: about a quarter of the first step's requests went to the new release
    first_step = record["analysis"][0]
    share = first_step["new"]["requests"] / (first_step["new"]["requests"] + first_step["stable"]["requests"])
    assert 0.15 < share < 0.35, first_step

    with traffic(front) as seen:
        with pytest.raises(TargetError) as refused:
            target.deploy(unit, ENV, source(tmp_path, "v3", mode="errors"))
        time.sleep(0.3)
    assert refused.value.code == "UD-ROLLOUT-ABORTED"
    assert "error rate" in str(refused.value) and "still runs version v2" in str(refused.value)
    record = read_record(release_paths(str(home), "svc", ENV))
    assert record["status"] == "aborted" and record["step"] == 1 and "error rate" in record["reason"]
    assert record["analysis"][0]["new"]["errors"] > 0
    # the errors were the new release's share of the first step only; stable served the rest
    assert seen[-1] == (200, "v2")
    errors = sum(1 for code, _ in seen if code != 200)
    assert 0 < errors < len(seen) / 2
    assert target.status(unit, ENV).version == "v2"
    assert call(front + "/work") == (200, "v2")


def test_a_step_without_traffic_is_inconclusive_and_rollbacks_switch_at_once(target, home, tmp_path):
    unit = app(steps=[{"weight": 50, "pause": "0.5s"}])
    target.deploy(unit, ENV, source(tmp_path, "v1"))
    with pytest.raises(TargetError) as refused:
        target.deploy(unit, ENV, source(tmp_path, "v2"))
    assert refused.value.code == "UD-ROLLOUT-ABORTED" and "fewer than the 5" in str(refused.value)
    lenient = app(steps=[{"weight": 50, "pause": "0.5s"}],
                  analysis={"min_requests": 5, "on_inconclusive": "promote", "interval_s": 0.25})
    assert target.deploy(lenient, ENV, source(tmp_path, "v2b")).version == "v2b"
    back = target.rollback(lenient, ENV)
    assert back.version == "v1" and call(back.details["url"] + "/work") == (200, "v1")
    plain = app()
    plain = plain.model_copy(update={"rollout": None})  # the rollout removed: blue-green again
    again = target.deploy(plain, ENV, source(tmp_path, "v4"))
    assert again.details["url"] == again.details["release_url"]
    assert call(again.details["url"] + "/work") == (200, "v4")
    assert call(back.details["url"] + "/work")[0] is None  # the old front URL is gone


def test_a_rollout_is_declared_with_growing_weights_and_durations():
    with pytest.raises(ValueError, match="grow"):
        RolloutSpec.model_validate({"steps": [{"weight": 50}, {"weight": 10}]})
    with pytest.raises(ValueError, match="duration"):
        RolloutSpec.model_validate({"steps": [{"weight": 10, "pause": "soon"}]})
    assert RolloutSpec.model_validate({"steps": [{"weight": 10, "pause": "2m"}]}).steps[0].pause_s == 120


def test_without_nginx_a_rollout_is_refused_and_nothing_changes(target, tmp_path, monkeypatch):
    monkeypatch.setenv("UD_NGINX", str(tmp_path / "no-nginx"))
    with pytest.raises(TargetError) as refused:
        target.deploy(app(), ENV, source(tmp_path, "v1"))
    assert refused.value.code == "UD-PROXY-MISSING"
    assert target.status("svc", ENV) is None
    assert not (release_paths(str(tmp_path / "home"), "svc", ENV).root / "front.json").exists()


def test_ud_promote_of_an_app_with_a_rollout_goes_through_its_canary(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    import tiny_platform as tiny

    paths = tiny.make(tmp_path)
    unit = paths["project"] / "assets" / "units" / "svc.yaml"
    unit.write_text(unit.read_text() + "  rollout: {steps: [{weight: 30, pause: 2s}], "
                                       "analysis: {min_requests: 3, interval_s: 0.25}}\n")
    try:
        assert tiny.ud(paths, "promote", "svc", "--to", "staging").returncode == 0
        none = json.loads(tiny.ud(paths, "rollout", "status", "svc", "--env", "staging", "--json").stdout)
        assert none["status"] == "none"  # a first deploy has nothing to compare with
        url = json.loads(tiny.ud(paths, "status", "--json").stdout)["units"][0]["environments"]["staging"]["url"]
        second = tiny.commit(paths["work"], "second")
        with traffic(url) as seen:
            promoted = tiny.ud(paths, "promote", "svc", "--to", "staging", "--json")
        assert promoted.returncode == 0, promoted.stderr[-2000:]
        assert all(code in (200, 404) for code, _ in seen)  # the tiny app answers /work with 404: not an error
        shown = tiny.ud(paths, "rollout", "status", "svc", "--env", "staging")
        assert "completed" in shown.stdout and "30%" in shown.stdout, shown.stdout + shown.stderr
        data = json.loads(tiny.ud(paths, "rollout", "status", "svc", "--env", "staging", "--json").stdout)
        assert data["version"] == second and data["analysis"][0]["new"]["requests"] >= 3
    finally:
        down = tiny.ud(paths, "down", "--json")
    assert "front door (nginx)" in json.loads(down.stdout)["stopped"], down.stdout


def test_after_the_rollout_health_holds_the_release_to_its_bounds(target, home, tmp_path):
    # the canary saw no traffic (on_inconclusive: promote), so the monitor is what catches it
    unit = app(steps=[{"weight": 50, "pause": "0.3s"}], monitor_s=30,
               analysis={"error_rate": 0.05, "min_requests": 5, "on_inconclusive": "promote", "interval_s": 0.1})
    target.deploy(unit, ENV, source(tmp_path, "v1"))
    front = target.deploy(unit, ENV, source(tmp_path, "v2", mode="errors")).details["url"]
    assert target.health(unit, ENV).healthy  # nothing served yet: nothing to hold against it
    for _ in range(8):
        assert call(front + "/work")[0] == 500
    health = target.health(unit, ENV)
    assert not health.healthy and "error rate 100.0% (8 of 8 requests)" in health.message, health.message
    assert health.details["monitor"]["requests"] == 8
    back = target.rollback(unit, ENV)  # what the health sensor does after its failed polls
    assert back.version == "v1" and call(front + "/work") == (200, "v1")
    assert target.health(unit, ENV).healthy  # v1's own requests are judged, not v2's


def test_a_rollout_whose_deploying_process_is_killed_is_undone_by_the_next_reader(target, home, tmp_path):
    import signal
    import subprocess
    import sys

    unit = app(steps=[{"weight": 50, "pause": "60s"}])
    target.deploy(unit, ENV, source(tmp_path, "v1"))
    front = target.status(unit, ENV).details["url"]
    new = source(tmp_path, "v2")
    script = f"""
import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_canary import app, ENV
from unified_delivery.targets.base import Artifact
from unified_delivery.targets.local_release import LocalReleaseTarget
LocalReleaseTarget(home={str(home)!r}).deploy(app(steps=[{{"weight": 50, "pause": "60s"}}]), ENV,
    Artifact(unit="svc", kind="app", version="v2", location={new.location!r}))
"""
    child = subprocess.Popen([sys.executable, "-c", script])
    paths = release_paths(str(home), "svc", ENV)
    deadline = time.monotonic() + 60
    while (read_record(paths) or {}).get("status") != "progressing" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert read_record(paths)["status"] == "progressing"
    assert {call(front + "/work")[1] for _ in range(6)} == {"v1", "v2"}  # half and half
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert target.status(unit, ENV).version == "v1"  # the reader reaps the killed deploy
    assert {call(front + "/work")[1] for _ in range(6)} == {"v1"}  # every request to stable again
    record = read_record(paths)
    assert record["status"] == "aborted" and "ended during the rollout" in record["reason"]
