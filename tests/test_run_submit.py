"""`ud promote` and `ud rollback` submit their run to the Dagster instance, as `dagster job
launch` does, and follow it there (runner.submit, runner.watch, code_server.py): the run is
launched by the instance's run launcher from the home's code server, streams its gates to the
terminal, can be left (`--no-wait`) and followed again (`ud watch`), and goes on when the
command that started it is killed. Against a real Git remote, a real code server and the
instance of a fresh home (tests/tiny_platform.py)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests import tiny_platform as tiny
from unified_delivery.code_server import LOCATION


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    paths = tiny.make(tmp_path_factory.mktemp("submit"), approvals=0)
    yield paths
    tiny.ud(paths, "down")


def _instance(paths: dict):
    import dagster as dg

    return dg.DagsterInstance.from_config(str(paths["home"] / "dagster"))


def _server(paths: dict) -> dict:
    return json.loads((paths["home"] / "run" / "code-server.json").read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def test_a_promotion_is_launched_by_the_instance_and_streams_its_steps(paths):
    out = tiny.ud(paths, "promote", "svc", "--to", "staging")
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stderr.splitlines()
    assert any("build svc done" in line for line in lines), out.stderr
    assert any("gate tests" in line and "PASS" in line and "1 tests passed" in line for line in lines)
    assert any("deploy svc to staging done" in line for line in lines)
    # No third-party noise on the terminal: the run's own logs are in the instance.
    assert "DEBUG" not in out.stderr and "Warning" not in out.stderr and "dagster -" not in out.stderr
    assert " is in staging (run " in out.stdout and "/runs/" in out.stdout

    run_id = out.stdout.split("/runs/")[1].strip().rstrip(")")
    instance = _instance(paths)
    try:
        run = instance.get_run_by_id(run_id)
        # Made from the code location's view of the job and started by its launcher, as the
        # UI or `dagster job launch` would: re-executable from the UI.
        assert run.remote_job_origin.location_name == LOCATION
        assert run.job_code_origin is not None
        assert ".dagster/grpc_info" in run.tags  # DefaultRunLauncher: the run came from the code server
        assert run.tags["ud/principal"] == "human:local-operator"
        # The environment's job, with the unit's own stages and gates selected, as the UI's
        # "materialize selected" launches it.
        import dagster as dg

        candidate = dg.AssetKey(["svc", "candidate"])
        assert run.job_name == "ud_promote_staging" and run.tags["ud/unit"] == "svc"
        assert run.asset_selection == {candidate, dg.AssetKey(["svc", "staging"])}
        assert {c.asset_key for c in run.asset_check_selection} == {candidate}
        events = [r.event_log_entry.dagster_event for r in instance.get_records_for_run(run_id, limit=1000).records]
        materialized = {e.asset_key for e in events if e is not None and e.event_type_value == "ASSET_MATERIALIZATION"}
        assert materialized == run.asset_selection
    finally:
        instance.dispose()


def test_no_wait_prints_the_run_and_watch_follows_it_to_its_end(paths):
    tiny.commit(paths["work"], "second")
    out = tiny.ud(paths, "promote", "svc", "--to", "staging", "--no-wait", "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout)
    assert data["ok"] and data["run_url"].endswith(data["run_id"])
    watched = tiny.ud(paths, "watch", data["run_id"][:8])
    assert watched.returncode == 0, watched.stderr[-3000:]
    assert "gate tests" in watched.stderr and "deploy svc to staging done" in watched.stderr
    assert watched.stdout.startswith(f"run {data['run_id'][:8]} (svc to staging) SUCCESS")
    listed = json.loads(tiny.ud(paths, "runs", "svc", "--json").stdout)["runs"]
    assert listed[0]["run_id"] == data["run_id"] and listed[0]["status"] == "SUCCESS"
    unknown = tiny.ud(paths, "watch", "ffffffff", "--json")
    assert unknown.returncode == 2 and json.loads(unknown.stdout)["error"]["code"] == "UD-UNKNOWN-RUN"


def test_a_refused_run_exits_with_its_gates_code_waited_for_or_watched(paths):
    tiny.commit(paths["work"], "broken", passing=False)
    out = tiny.ud(paths, "promote", "svc", "--to", "staging", "--json")
    assert out.returncode == 3, out.stderr[-3000:]
    assert json.loads(out.stdout)["error"]["code"] == "UD-GATE-REFUSED"
    streamed = tiny.ud(paths, "promote", "svc", "--to", "staging")
    assert streamed.returncode == 3
    assert any("gate tests" in line and "FAIL" in line for line in streamed.stderr.splitlines()), streamed.stderr
    assert "svc/staging: not deployed" in streamed.stderr  # a blocking gate did not pass
    later = tiny.ud(paths, "promote", "svc", "--to", "staging", "--no-wait", "--json")
    run_id = json.loads(later.stdout)["run_id"]
    watched = tiny.ud(paths, "watch", run_id, "--json")
    assert watched.returncode == 3 and json.loads(watched.stdout)["error"]["code"] == "UD-GATE-REFUSED"
    instance = _instance(paths)
    try:  # the UI's run list says why, without opening the run
        assert instance.get_run_by_id(run_id).tags["ud/outcome"] == "UD-GATE-TESTS-FAILED"
    finally:
        instance.dispose()
    tiny.commit(paths["work"], "fixed")


def test_killing_the_command_leaves_its_run_going(paths):
    proc = tiny.ud(paths, "promote", "svc", "--to", "staging", popen=True)
    seen = ""
    deadline = time.monotonic() + 120
    while "started" not in seen and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
    assert "started" in seen, seen + proc.stderr.read()
    run_id_start = seen.split("run ")[-1].split()[0]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    watched = tiny.ud(paths, "watch", run_id_start)
    assert watched.returncode == 0, watched.stderr[-3000:]
    assert "SUCCESS" in watched.stdout


def test_the_code_server_is_reused_until_the_platform_changes_and_down_stops_it(paths):
    assert tiny.ud(paths, "promote", "svc", "--to", "staging").returncode == 0
    first = _server(paths)
    assert _alive(first["pid"])
    # Its runs start from a fork server that imported Dagster and the definitions once
    # (code_server.serve, run_worker.py), not from a fresh interpreter each.
    import psutil

    children = [" ".join(c.cmdline()) for c in psutil.Process(first["pid"]).children()]
    assert any("forkserver" in c and "unified_delivery.run_worker" in c for c in children), children
    assert tiny.ud(paths, "promote", "svc", "--to", "staging").returncode == 0
    assert _server(paths)["pid"] == first["pid"]  # same definitions, same environment
    unit = paths["project"] / "assets" / "units" / "svc.yaml"
    unit.write_text(unit.read_text().replace("startup_timeout_s: 15", "startup_timeout_s: 16"))
    # the new server listens on a path of its own: the old one removes its path when it ends
    assert tiny.ud(paths, "promote", "svc", "--to", "staging").returncode == 0
    second = _server(paths)
    assert second["socket"] != first["socket"]
    assert second["pid"] != first["pid"]
    deadline = time.monotonic() + 30
    while _alive(first["pid"]) and time.monotonic() < deadline:  # told to go once its runs end
        time.sleep(0.2)
    assert not _alive(first["pid"])
    assert tiny.ud(paths, "promote", "svc", "--to", "staging").returncode == 0  # served still
    assert _server(paths)["pid"] == second["pid"]
    down = tiny.ud(paths, "down", "--json")
    assert "code server" in json.loads(down.stdout)["stopped"]
    deadline = time.monotonic() + 30
    while _alive(second["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(second["pid"])


def test_a_rollback_streams_and_its_materialization_says_who_and_which_gates(paths):
    import dagster as dg

    out = tiny.ud(paths, "rollback", "svc", "--env", "staging", "--reason", "errors after deploy")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "run " in out.stderr and "success" in out.stderr and " is back on " in out.stdout
    instance = _instance(paths)
    try:
        event = instance.get_latest_materialization_event(dg.AssetKey(["svc", "staging"]))
        meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
        assert meta["action"] == "rollback" and meta["principal"] == "human:local-operator"
        assert meta["gate_summary"].endswith("passed") and meta["url"].startswith("http://127.0.0.1:")
    finally:
        instance.dispose()


def test_ud_down_stops_ud_ui(paths):
    import socket
    import urllib.request

    (paths["project"] / "workspace.yaml").write_text(
        "load_from:\n  - python_module:\n      module_name: assets.definitions\n      attribute: defs\n"
        f"      working_directory: .\n      location_name: {LOCATION}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Started as a script's background job would be: SIGINT ignored, inherited (dagster dev maps
    # SIGTERM to SIGINT's handler, so it would ignore `ud down` too unless `ud ui` resets it).
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ui = tiny.ud(paths, "ui", "--port", str(port), popen=True)
    finally:
        signal.signal(signal.SIGINT, ignored)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert ui.poll() is None, ui.stderr.read()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("ud ui did not answer")
        import psutil

        children = psutil.Process(ui.pid).children(recursive=True)  # webserver, daemon, code servers
        assert len(children) >= 2, children
        down = tiny.ud(paths, "down", "--json")
        assert "ui" in json.loads(down.stdout)["stopped"], down.stdout + down.stderr
        still = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert not still, [" ".join(c.cmdline()) for c in still]  # none left behind, none orphaned
        # dagster dev ended by its own shutdown (0), not killed (-9) after ignoring SIGTERM
        assert ui.wait(timeout=180) == 0, ui.stderr.read()[-3000:]
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
    finally:
        if ui.poll() is None:
            ui.kill()


def test_a_server_that_went_away_is_told_from_a_platform_error(tmp_path):
    from dagster._grpc.client import DagsterGrpcClient

    from unified_delivery import code_server
    from unified_delivery.errors import ConfigError

    with pytest.raises(Exception) as unreachable:  # a real client on a socket nobody serves
        DagsterGrpcClient(socket=str(tmp_path / "nobody.sock")).ping("ud")
    assert code_server.gone(unreachable.value)  # submit starts a new server and tries once more
    ended = ConfigError("UD-CODE-SERVER", "the platform's definitions do not load: Could not reach "
                        "user code server. gRPC Error code: CANCELLED", "fix the platform code named")
    assert code_server.gone(ended)
    broken = ConfigError("UD-CODE-SERVER", "the platform's definitions do not load: SyntaxError: "
                         "invalid syntax (definitions.py, line 3)", "fix the platform code named")
    assert not code_server.gone(broken)  # the platform's own error: said, never retried


def test_a_server_gone_between_its_ping_and_the_launch_gets_the_promotion_again(paths, monkeypatch):
    """The code server ends (its idle time ran out) after it answered the command's first calls
    but before StartRun: the instance marks the run it created failed. That run never started,
    so a new server gets the promotion again, as a new run with its own grant."""
    import dagster as dg

    from unified_delivery import service
    from unified_delivery.home import Home

    monkeypatch.setenv("UD_HOME", str(paths["home"]))
    monkeypatch.setenv("UD_PROJECT", str(paths["project"]))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    platform, defs = service.load_platform(paths["project"])
    original, killed = dg.DagsterInstance.submit_run, []

    def submit_after_the_server_went(self, run_id, workspace):
        if not killed:  # the first launch only: the server dies under it
            pid = _server(paths)["pid"]
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
            killed.append(run_id)
        return original(self, run_id, workspace)

    monkeypatch.setattr(dg.DagsterInstance, "submit_run", submit_after_the_server_went)
    outcome = service.promote(platform, defs, "svc", "staging", reason="retry", submit=True,
                              home=Home.current())
    assert outcome.error is None, outcome.error
    assert len(killed) == 1 and killed[0] != outcome.run_id
    instance = _instance(paths)
    lost, run = instance.get_run_by_id(killed[0]), instance.get_run_by_id(outcome.run_id)
    assert lost is not None and lost.status == dg.DagsterRunStatus.FAILURE  # as the list shows it
    assert not instance.get_records_for_run(killed[0], of_type=dg.DagsterEventType.STEP_START).records
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["ud/unit"] == "svc" and run.tags["ud/principal"] == lost.tags["ud/principal"]
