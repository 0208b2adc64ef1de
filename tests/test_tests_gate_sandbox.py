"""The tests gate against a hostile commit, the way an attacker with push access to an app
repository would try it: a real Git repository whose conftest dumps its environment, walks
up its parents' /proc/<pid>/environ, reads every environ it can find, opens the platform
home's signing.key (the layout is no secret: the path is committed next to it) and prints
a ud1 token; the real TestsGate runs it at a commit built by the real app translator.

The home used here is deliberately careless (folder 0755, signing.key 0644): whatever keeps
the key from the suite must be the sandbox, not the key file's mode."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.tiny_platform import git
from unified_delivery.gates import GateContext, build_gate, sandbox
from unified_delivery.gates.sandbox import Sandbox, choose_isolation
from unified_delivery.gates.tests import _junit_counts, _tail, suite_environment
from unified_delivery.home import Home
from unified_delivery.kinds.app.translator import AppTranslator
from unified_delivery.kinds.base import BuildContext
from unified_delivery.redaction import redact_text
from unified_delivery.targets.local_release import LocalReleaseTarget
from unified_delivery.kinds.app.unit import AppUnit
from unified_delivery.targets.routing import Targets
from unified_delivery.units import GateSpec

ROOT = Path(__file__).resolve().parents[1]
DB_PASSWORD = "hunter2-very-secret"
UD_SIGNING_KEY = "env-signing-key-" + "9f2c4e1a7b3d5f60"
TOKEN = "ud1.eyJzdWIiOiJodW1hbjpsb2NhbC1vcGVyYXRvciJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"

ATTACK = r'''
"""Runs inside the tests gate, after the tests: what could this commit learn?"""
import errno, json, os, pathlib, site

WANTED = ("DB_PASSWORD", "UD_SIGNING_KEY", "UD_HOME")


def _read(path):
    try:
        return "read", pathlib.Path(path).read_bytes().decode(errors="replace")
    except Exception as exc:
        return type(exc).__name__, ""


def _write(path):
    try:
        pathlib.Path(path).write_text("planted by a test")
        return "written"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, type(exc).__name__)


def pytest_terminal_summary(terminalreporter):
    home = pathlib.Path(__file__).with_name("platform_home.txt").read_text().strip()
    env, lines, seen = dict(os.environ), [], set()
    lines.append("environ " + json.dumps(env))
    seen.update(f"{n}@environ" for n in WANTED if n in env)
    parents, pid = [], os.getppid()
    while pid > 0 and len(parents) < 16:
        status, text = _read(f"/proc/{pid}/environ")
        parents.append(status)
        lines.append(f"parent {pid} environ {status}: " + text.replace("\0", " "))
        seen.update(f"{n}@parent" for n in WANTED if n + "=" in text)
        status, st = _read(f"/proc/{pid}/stat")
        pid = int(st.rsplit(")", 1)[1].split()[1]) if status == "read" else 0
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            status, text = _read(entry / "environ")
            if any(n + "=" in text for n in WANTED):
                seen.update(f"{n}@proc" for n in WANTED if n + "=" in text)
                lines.append(f"process {entry.name} environ: " + text.replace("\0", " "))
    status, key = _read(os.path.join(home, "signing.key"))
    lines.append(f"signing.key {status}: {key}")
    try:
        listing = sorted(os.listdir(home))
    except Exception as exc:
        listing = type(exc).__name__
    writes = {"site-packages": _write(os.path.join(site.getsitepackages()[0], "planted_by_a_test.txt")),
              "var-tmp": _write(f"/var/tmp/{os.path.basename(home)}-planted")}
    lines.append("a token: TOKEN")
    lines.append("REPORT " + json.dumps({"signing.key": status, "home": listing, "parents": parents,
                                         "seen": sorted(seen), "uid": os.getuid(), "names": sorted(env),
                                         "tmp": sorted(os.listdir("/tmp")), "shm": sorted(os.listdir("/dev/shm")),
                                         "writes": writes}))
    for line in lines:
        terminalreporter.write_line(line)
'''.replace("TOKEN", TOKEN)

SUITE = '''
import os


def test_adds():
    assert os.environ["APP_MODE"] == "test"  # the unit's test_env
    assert "OPERATOR_ONLY" not in os.environ  # the operator's, not on the allow-list
    assert 1 + 1 == {total}
'''

# Run the gate in a fresh process whose *initial* environment holds the secrets, as a Dagster
# run worker's does: that is what /proc/<pid>/environ shows (monkeypatch only changes os.environ).
CHILD_GATE = '''
import json, sys
from unified_delivery.gates import GateContext, build_gate, sandbox
from unified_delivery.home import Home
from unified_delivery.targets.base import Artifact
from unified_delivery.targets.local_release import LocalReleaseTarget
from unified_delivery.kinds.app.unit import AppUnit

unit = AppUnit.model_validate_json(sys.argv[1])
artifact = Artifact(**json.loads(sys.argv[2]))
home = Home.current()
logs = []
ctx = GateContext(unit=unit, stage="candidate", guards="staging", version=artifact.version, artifact=artifact,
                  target=LocalReleaseTarget(home=str(home.root)), home=home, log=logs.append)
print(json.dumps({"result": build_gate(unit.gates[0], unit).evaluate(ctx).to_dict(), "logs": logs}))
'''


@pytest.fixture
def platform_home(monkeypatch: pytest.MonkeyPatch):
    """A home outside pytest's private tmp folder, readable by anyone (the worst case), with
    a signing key and a ledger; UD_HOME, UD_SIGNING_KEY and DB_PASSWORD set as an operator's."""
    # Not under /tmp, which the sandbox replaces anyway: the home must be hidden on its own.
    root = Path(tempfile.mkdtemp(prefix="ud-home-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    root.chmod(0o755)
    key = os.urandom(32).hex()
    (root / "signing.key").write_text(key)
    (root / "signing.key").chmod(0o644)
    (root / "ledger.db").write_text("not for the suite")
    monkeypatch.setenv("UD_HOME", str(root))
    monkeypatch.setenv("DB_PASSWORD", DB_PASSWORD)
    monkeypatch.setenv("UD_SIGNING_KEY", UD_SIGNING_KEY)
    monkeypatch.setenv("OPERATOR_ONLY", "1")
    yield Home(root), key
    shutil.rmtree(root, ignore_errors=True)
    for planted in (Path(f"{root}-planted"), *(Path(p) / "planted_by_a_test.txt" for p in site.getsitepackages())):
        planted.unlink(missing_ok=True)  # only there if the sandbox failed


def app_repo(tmp_path: Path, home: Home, *, passing: bool = True, hostile: bool = False) -> Path:
    repo = tmp_path / "app"
    if not repo.exists():
        repo.mkdir(parents=True)
        git("init", "-q", "--initial-branch=main", cwd=repo)
    (repo / "test_app.py").write_text(SUITE.format(total=2 if passing else 3))
    if hostile:
        (repo / "conftest.py").write_text(ATTACK)
        (repo / "platform_home.txt").write_text(str(home.root))
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "tests", cwd=repo)
    return repo


def build(repo: Path, home: Home, **settings) -> tuple[AppUnit, object]:
    unit = AppUnit(name="svc", team="web", repository=str(repo), test_env={"APP_MODE": "test"},
                   gates=[GateSpec(type="tests", settings=settings)])
    target = LocalReleaseTarget(home=str(home.root))
    ctx = BuildContext(home=home, target=target, targets=Targets({"app": target}),
                       units={"svc": unit}, log=lambda _: None)
    return unit, AppTranslator().build_candidate(unit, ctx)


def run_gate(unit: AppUnit, artifact, home: Home) -> tuple[dict, list[str]]:
    logs: list[str] = []
    ctx = GateContext(unit=unit, stage="candidate", guards="staging", version=artifact.version, artifact=artifact,
                      target=LocalReleaseTarget(home=str(home.root)), home=home, log=logs.append)
    return build_gate(unit.gates[0], unit).evaluate(ctx).to_dict(), logs


def run_gate_in_child(unit: AppUnit, artifact, home: Home) -> tuple[dict, list[str]]:
    proc = subprocess.run([sys.executable, "-c", CHILD_GATE, unit.model_dump_json(), json.dumps(artifact.__dict__)],
                          cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["result"], out["logs"]


def report_of(result: dict) -> dict:
    line = next(x for x in result["metadata"]["output_tail"].splitlines() if x.startswith("REPORT "))
    return json.loads(line.removeprefix("REPORT "))


@pytest.mark.parametrize("runner", [run_gate, run_gate_in_child], ids=["in-process", "child-process"])
def test_a_hostile_commit_learns_no_secret(tmp_path: Path, platform_home, runner):
    home, key = platform_home
    unit, artifact = build(app_repo(tmp_path, home, hostile=True), home)
    result, logs = runner(unit, artifact, home)

    stored = json.dumps(result) + "\n".join(logs)
    for secret in (DB_PASSWORD, UD_SIGNING_KEY, key, TOKEN):
        assert secret not in stored
    assert result["passed"] and result["code"] == "UD-GATE-TESTS-PASSED", result
    tail = result["metadata"]["output_tail"]
    assert "a token: [redacted]" in tail and "environ {" in tail  # the attack's output is there, redacted

    # Not merely redacted: the suite never got at them.
    report = report_of(result)
    assert report["seen"] == []
    allowed = {"PATH", "LANG", "LANGUAGE", "TZ", "HOME", "TMPDIR", "PYTHONNOUSERSITE", "PYTHONDONTWRITEBYTECODE",
               "APP_MODE"}
    assert {n for n in report["names"] if not n.startswith(("LC_", "PYTEST_"))} <= allowed
    isolation = result["metadata"]["isolation"]
    if os.geteuid() == 0:
        assert isolation == "user" and report["uid"] != 0
    if isolation != "environment-only":
        assert report["signing.key"] in ("FileNotFoundError", "PermissionError")
        assert "read" not in report["parents"]
        assert report["writes"]["site-packages"] in ("EACCES", "EROFS")  # the platform's code stays its own
    if "in new mount and pid namespaces" in result["metadata"]["isolation_detail"]:
        assert report["signing.key"] == "FileNotFoundError" and report["home"] == []  # covered, not just denied
        assert len(report["parents"]) == 1  # pid 1 of its own namespace: the platform is out of sight
        # A private /tmp: its own folder, and the way to the interpreter where that lies under /tmp
        # (a virtualenv in a clone under /tmp), bound back read-only; nothing else of the machine's.
        from unified_delivery.gates.sandbox import interpreter_paths

        on_the_way = {Path(p).relative_to("/tmp").parts[0] for p in interpreter_paths() if p.startswith("/tmp/")}
        own = [t for t in report["tmp"] if t.startswith("ud-tests-")]
        assert len(own) == 1 and set(report["tmp"]) - set(own) <= on_the_way and report["shm"] == []
        assert report["writes"] == {"site-packages": "EROFS", "var-tmp": "EROFS"}  # only its box is writable


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask-022", "umask-077-as-ud-runs"])
def test_a_passing_suite_passes_and_a_failing_one_fails(tmp_path: Path, platform_home, umask):
    home, _ = platform_home
    repo = app_repo(tmp_path, home)
    unit, good = build(repo, home)
    old = os.umask(umask)  # `ud` writes with umask 077: the sandbox must still reach the suite's folder
    try:
        passed, _ = run_gate(unit, good, home)
    finally:
        os.umask(old)
    assert passed["passed"] and passed["code"] == "UD-GATE-TESTS-PASSED", passed
    assert passed["metadata"]["tests"] == 1 and passed["metadata"]["exit_code"] == 0

    unit, bad = build(app_repo(tmp_path, home, passing=False), home)
    failed, _ = run_gate(unit, bad, home)
    assert not failed["passed"] and failed["code"] == "UD-GATE-TESTS-FAILED"
    assert failed["message"].startswith("1 of 1 tests failed") and "assert (1 + 1) == 3" in failed["metadata"]["output_tail"]


def test_at_the_time_limit_the_whole_tree_is_killed(tmp_path: Path, platform_home):
    home, _ = platform_home
    marker = f"ud-sandbox-leftover-{os.getpid()}-{time.time_ns()}"
    repo = tmp_path / "slow"
    repo.mkdir()
    git("init", "-q", "--initial-branch=main", cwd=repo)
    # A grandchild in a session of its own escapes a process-group kill, not a pid namespace.
    (repo / "test_slow.py").write_text(
        "import subprocess, sys, time\n\n\ndef test_hangs():\n"
        f"    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', '{marker}'], "
        "start_new_session=True)\n    time.sleep(120)\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "slow", cwd=repo)
    unit, artifact = build(repo, home, timeout_s=6)

    def leftovers() -> list[str]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(entry.name)
            except OSError:
                continue
        return found

    started, seen, results = time.monotonic(), False, []
    gate = threading.Thread(target=lambda: results.append(run_gate(unit, artifact, home)[0]))
    gate.start()
    while gate.is_alive():
        seen = seen or bool(leftovers())
        time.sleep(0.1)
    assert seen  # the grandchild did start
    assert results[0]["code"] == "UD-GATE-TESTS-TIMEOUT" and time.monotonic() - started < 60
    if not Sandbox.plan(hide=[]).namespaces:
        pytest.skip("without a pid namespace a grandchild in its own session outlives the gate (documented)")
    deadline = time.monotonic() + 5
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers() == []


def test_without_a_sandbox_the_gate_says_so_or_refuses(tmp_path: Path, platform_home, monkeypatch):
    home, key = platform_home
    monkeypatch.setattr(sandbox, "namespaces_available", lambda python=None: False)
    if os.geteuid() == 0 and Sandbox.plan(hide=[]).level != "environment-only":
        pytest.skip("the unprivileged user can reach this interpreter without namespaces")
    unit, artifact = build(app_repo(tmp_path, home, hostile=True), home)
    result, logs = run_gate(unit, artifact, home)
    assert result["passed"] and result["metadata"]["isolation"] == "environment-only"
    assert any(line.startswith("WARNING: tests gate isolation is environment-only") for line in logs)
    assert report_of(result)["signing.key"] == "read"  # what environment-only does not keep out, as documented
    for secret in (DB_PASSWORD, UD_SIGNING_KEY, key, TOKEN):  # the allow-list and the redaction still hold
        assert secret not in json.dumps(result)

    unit, artifact = build(app_repo(tmp_path / "plain", home), home, require_isolation=True)
    refused, _ = run_gate(unit, artifact, home)
    assert not refused["passed"] and refused["code"] == "UD-GATE-TESTS-ISOLATION"


@pytest.mark.parametrize("root, namespaces, reachable, level", [
    (True, True, False, "user"),  # the interpreter bound back through the mount namespace
    (True, False, True, "user"),
    (True, False, False, "environment-only"),  # the unprivileged user could not run the interpreter
    (False, True, True, "namespace"),
    (False, False, True, "environment-only"),
])
def test_choose_isolation(root, namespaces, reachable, level):
    assert choose_isolation(root=root, namespaces=namespaces, reachable=reachable) == level


def test_the_environment_is_an_allow_list():
    operator = {"PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC", "DB_PASSWORD": DB_PASSWORD,
                "UD_SIGNING_KEY": UD_SIGNING_KEY, "AWS_SESSION_TOKEN": "x" * 20, "PYTHONPATH": "/platform",
                "LD_PRELOAD": "/evil.so", "HOME": "/root", "SSH_AUTH_SOCK": "/tmp/agent.sock"}
    env = suite_environment(Path("/box/home"), Path("/box/tmp"), {"APP_MODE": "test"}, environ=operator)
    assert env == {"PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC", "APP_MODE": "test",
                   "HOME": "/box/home", "TMPDIR": "/box/tmp", "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.mark.parametrize("test_env, problem", [
    ({"LD_PRELOAD": "/x.so"}, "changes how programs load"),
    ({"PYTHONPATH": "src"}, "changes how programs load"),
    ({"HOME": "/root"}, "set by the tests gate"),
    ({"UD_HOME": "/x"}, "set by the tests gate"),
    ({"BAD-NAME": "1"}, "not an environment variable name"),
    ({f"V{i}": "1" for i in range(33)}, "at most 32"),
])
def test_test_env_is_small_and_validated(test_env, problem):
    with pytest.raises(ValidationError, match=problem):
        AppUnit(name="svc", team="web", repository=".", test_env=test_env)


def test_the_junit_file_is_not_followed_out_of_the_sandbox(tmp_path: Path):
    target = tmp_path / "root-only.xml"
    target.write_text('<testsuite tests="7" failures="0" errors="0" skipped="0"/>')
    assert _junit_counts(target)["tests"] == 7
    (tmp_path / "junit.xml").symlink_to(target)
    assert _junit_counts(tmp_path / "junit.xml") == {}
    os.mkfifo(tmp_path / "fifo.xml")  # would block a plain open
    assert _junit_counts(tmp_path / "fifo.xml") == {}


def test_the_tail_is_cut_after_redaction():
    body = "\n".join("MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun" for _ in range(40))
    text = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\n1 passed"
    assert "MIIE" not in _tail(redact_text(text, []))
    assert "MIIE" in _tail(text)  # cut first, the block's start would be gone and the body kept


NAMESPACE_DRIVER = '''
import json, os, shutil, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import sandbox

box_parent = Path(tempfile.mkdtemp())
sb = sandbox.Sandbox.plan(hide=[sys.argv[2]])
box = sb.workspace(box_parent)
own = tempfile.mkdtemp(dir="/var/tmp")  # the operator's own folder, outside the box
script = ("cat {key}; echo; cat /proc/1/environ; echo; ls {home}; echo; touch {own}/x; "
          "echo pids $(ls /proc | grep '^[0-9]')").format(key=sys.argv[2] + "/signing.key", home=sys.argv[2], own=own)
code = sb.run(["/bin/sh", "-c", script], cwd=box, box=box, env={"PATH": "/usr/bin:/bin"}, timeout=30,
              output=box_parent / "out")
print(json.dumps({"level": sb.level, "code": code, "output": (box_parent / "out").read_text(),
                  "own": os.listdir(own)}))
os.rmdir(own)
shutil.rmtree(box_parent)
'''


def test_namespace_isolation_when_the_platform_is_not_root(platform_home):
    """The `namespace` level for real: the launcher itself run as an unprivileged user, on a
    Python that user can read (the helper is stdlib only)."""
    home, key = platform_home
    python = shutil.which("python3", path="/usr/bin:/bin")
    if os.geteuid() != 0 or not python:
        pytest.skip("needs root to start the launcher as another user, and a system python3")
    driver = subprocess.run([python, "-c", NAMESPACE_DRIVER, str(ROOT / "unified_delivery" / "gates"), str(home.root)],
                            user=65534, group=65534, extra_groups=[], cwd="/", env={"PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60, check=False)
    assert driver.returncode == 0, driver.stderr
    out = json.loads(driver.stdout)
    if out["level"] == "environment-only":
        pytest.skip("unprivileged user namespaces are not allowed here")
    assert out["level"] == "namespace"
    assert key not in out["output"] and "No such file or directory" in out["output"]  # the home is covered
    assert "Permission denied" in out["output"]  # /proc/1/environ: pid 1 keeps its capabilities
    assert "Read-only file system" in out["output"] and out["own"] == []  # the same uid, and still it cannot write
    pids = [int(p) for p in out["output"].strip().splitlines()[-1].split()[1:]]
    assert 1 in pids and max(pids) < 10  # its own pid namespace: the helper, the shell, ls, grep; nothing else


def test_a_revealed_folder_of_the_hidden_home_is_readable_and_read_only(tmp_path: Path):
    """An app's own environment lives in the home the sandbox hides: `reveal` binds that one
    folder back, read-only, and nothing else of the home (here private, 0700, as `ud` makes it)."""
    home = Path(tempfile.mkdtemp(prefix="ud-home-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    try:
        home.chmod(0o700)
        (home / "signing.key").write_text("the key")
        env_dir = home / "venvs" / "python-0123456789abcdef"
        env_dir.mkdir(parents=True, mode=0o755)
        (home / "venvs").chmod(0o700)  # the sandbox user could not enter it on the real disk
        (env_dir / "lib.txt").write_text("from the environment")
        (env_dir / "lib.txt").chmod(0o644)
        sb = Sandbox.plan(hide=[home], reveal=[env_dir])
        if not sb.namespaces:
            pytest.skip("without namespaces nothing is bound back (the level says so)")
        box = sb.workspace(tmp_path)
        script = f"cat {env_dir}/lib.txt; echo; cat {home}/signing.key; touch {env_dir}/x; ls {home}/venvs"
        code = sb.run(["/bin/sh", "-c", script], cwd=box, box=box, env={"PATH": "/usr/bin:/bin"}, timeout=30,
                      output=tmp_path / "out")
        out = (tmp_path / "out").read_text()
        assert "from the environment" in out and "the key" not in out
        assert "Read-only file system" in out and not (env_dir / "x").exists()
        assert out.strip().splitlines()[-1] == env_dir.name  # the only thing of the home in sight
        assert code == 0
    finally:
        shutil.rmtree(home)
