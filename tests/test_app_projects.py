"""Apps as their teams write them, with their own dependencies and state (issue 18, item 2):
a Flask app with its own requirements.txt (a Flask older than the platform's), a pytest suite,
an `init-db` setup step and a SQLite file in its `{state_dir}`; and a Node service with its
own package.json, package-lock.json, `npm test` and start command. Each lives in a bare Git
remote and goes candidate -> staging -> production through the service layer `ud` calls
(in this process), on a real Dagster instance in a temporary home."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests import tiny_platform as tiny
from unified_delivery import Platform
from unified_delivery.errors import UDError
from unified_delivery.governance import Governance
from unified_delivery.home import Home
from unified_delivery.kinds.app import environments
from unified_delivery.kinds.app.unit import AppUnit
from unified_delivery.service import promote, rollback
from unified_delivery.targets.roles import ReleaseStore

FLASK_VERSION = "3.0.3"  # not the platform's own (3.1): the app's requirements decide

APP = '''
import importlib.metadata
import os
import sqlite3
import sys

import click
from flask import Flask, jsonify, request

app = Flask(__name__)


def connect():
    return sqlite3.connect(os.environ.get("NOTES_DB", "notes.db"))


@app.cli.command("init-db")
def init_db():
    """Create the notes table; keeps what is there (a migration, not a reset)."""
    with connect() as db:
        db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT)")
    click.echo("notes table ready")


@app.get("/health")
def health():
    with connect() as db:
        count = db.execute("SELECT count(*) FROM notes").fetchone()[0]
    return jsonify(status="ok", version=os.environ.get("UD_VERSION"), notes=count,
                   flask=importlib.metadata.version("flask"), prefix=sys.prefix)


@app.route("/notes", methods=["GET", "POST"])
def notes():
    with connect() as db:
        if request.method == "POST":
            db.execute("INSERT INTO notes (text) VALUES (?)", (request.get_json()["text"],))
        rows = db.execute("SELECT text FROM notes ORDER BY id").fetchall()
    return jsonify([text for (text,) in rows])
'''

APP_TESTS = '''
import importlib.metadata

import pytest

from app import app, init_db


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTES_DB", str(tmp_path / "notes.db"))
    app.test_cli_runner().invoke(init_db)
    return app.test_client()


def test_a_note_is_kept(client):
    assert client.post("/notes", json={"text": "hello"}).status_code == 200
    assert client.get("/notes").get_json() == ["hello"]


def test_health(client):
    assert client.get("/health").get_json()["status"] == "ok"


def test_runs_on_the_flask_it_pins():
    assert importlib.metadata.version("flask") == "{flask}"
'''

FLASK_UNIT = '''
type: unified_delivery.app
attributes:
  name: notes
  team: web
  repository: "{repo}"
  dependencies: auto
  gates: [{{type: tests}}, {{type: health, stage: staging}}]
  policy: {{approvals: {{production: 0}}}}
  service:
    command: ["{{python}}", -m, flask, --app, app, run, --port, "{{port}}"]
    env: {{NOTES_DB: "{{state_dir}}/notes.db"}}
    setup: ["{{python}} -m flask --app app init-db"]
    startup_timeout_s: 30
'''

SERVER_JS = '''
const http = require("node:http");
const ms = require("ms");

http.createServer((req, res) => {
  res.setHeader("Content-Type", "application/json");
  res.end(JSON.stringify({status: "ok", version: process.env.UD_VERSION, day: ms("1d"),
                          resolved: require.resolve("ms")}));
}).listen(Number(process.env.PORT), "127.0.0.1");
'''

NODE_TEST = '''
const test = require("node:test");
const assert = require("node:assert");
const ms = require("ms");

test("a day in milliseconds", () => assert.strictEqual(ms("1d"), 86400000));
test("two hours", () => assert.strictEqual(ms("2h"), 7200000));
'''

PACKAGE_JSON = {
    "name": "clock", "version": "1.0.0", "private": True,
    "scripts": {"start": "node server.js", "test": "node --test"},
    "dependencies": {"ms": "2.1.3"},
}

NODE_UNIT = '''
type: unified_delivery.app
attributes:
  name: clock
  team: web
  repository: "{repo}"
  dependencies: [package-lock.json]
  test_command: [npm, test]
  gates: [{{type: tests}}, {{type: health, stage: staging}}]
  policy: {{approvals: {{production: 0}}}}
  service: {{command: [npm, start], startup_timeout_s: 30}}
'''


class Project:
    """A platform repository of one app unit, loaded in this process, on its own home."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch, name: str, unit_yaml: str):
        self.name = name
        self.remote, self.work = tmp / f"{name}.git", tmp / name
        self.project, self.home = tmp / "platform", tmp / "home"
        tiny.git("init", "-q", "--bare", "--initial-branch=main", str(self.remote), cwd=tmp)
        tiny.git("clone", "-q", str(self.remote), str(self.work), cwd=tmp)
        (self.project / "assets" / "units").mkdir(parents=True)
        (self.project / "resources").mkdir()
        (self.project / "assets" / "__init__.py").write_text("")
        (self.project / "assets" / "definitions.py").write_text(tiny.DEFINITIONS)
        (self.project / "assets" / "units" / f"{name}.yaml").write_text(
            unit_yaml.format(repo=self.remote))
        (self.project / "resources" / "policy.yaml").write_text(tiny.POLICY.replace("FREEZES", "[]"))
        monkeypatch.setenv("UD_HOME", str(self.home))
        monkeypatch.setenv("DAGSTER_HOME", str(self.home / "dagster"))
        monkeypatch.setenv("UD_PROJECT", str(self.project))
        self.platform: Platform | None = None

    def load(self) -> None:
        self.platform = Platform.from_directory(
            self.project / "assets" / "units",
            governance=Governance.from_file(self.project / "resources" / "policy.yaml"))
        self.defs = self.platform.definitions()

    def commit(self, message: str, files: dict[str, str]) -> str:
        for path, text in files.items():
            (self.work / path).parent.mkdir(parents=True, exist_ok=True)
            (self.work / path).write_text(text)
        tiny.git("add", "-A", cwd=self.work)
        tiny.git("commit", "-q", "-m", message, cwd=self.work)
        tiny.git("push", "-q", "origin", "main", cwd=self.work)
        return tiny.git("rev-parse", "HEAD", cwd=self.work)

    def promote(self, env: str):
        assert self.platform is not None
        return promote(self.platform, self.defs, self.name, env, principal="human:local-operator")

    def rollback(self, env: str):
        assert self.platform is not None
        return rollback(self.platform, self.defs, self.name, env, reason="test",
                        principal="human:local-operator")

    def deployment(self, env: str):
        assert self.platform is not None
        unit = self.platform.unit(self.name)
        return self.platform.target(unit, env).status(unit, env)

    def get(self, env: str, path: str, data: dict | None = None):
        url = self.deployment(env).details["url"] + path
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def tests_gate(self) -> list[dict]:
        """The tests gate's recorded results (the ledger's payloads), oldest first."""
        assert self.platform is not None
        entries = self.platform.ledger.ledger().entries(unit=self.name, action="gate")
        return [e.payload for e in entries if e.payload["gate"] == "tests"]

    def stop(self) -> None:
        if self.platform is not None:
            for store in self.platform.targets.playing(ReleaseStore):
                store.stop_all()

    def clean(self) -> bool:
        return tiny.git("status", "--porcelain", "--ignored", cwd=self.work) == ""


@pytest.fixture(autouse=True)
def umask_as_ud_runs():
    """`ud` runs with umask 077 (a private home): what the sandbox's user must read is made so."""
    old = os.umask(0o077)
    yield
    os.umask(old)


@pytest.fixture
def flask_app(tmp_path, monkeypatch):
    project = Project(tmp_path, monkeypatch, "notes", FLASK_UNIT)
    project.commit("a notes app", {
        "app.py": APP,
        "tests/test_app.py": APP_TESTS.replace("{flask}", FLASK_VERSION),
        "requirements.txt": f"flask=={FLASK_VERSION}\nwerkzeug==3.0.6\npytest>=8\n",
    })
    project.load()
    yield project
    project.stop()


def test_a_flask_app_runs_on_its_own_requirements_and_keeps_its_state_across_releases(flask_app):
    p = flask_app
    assert p.promote("staging").success
    v1 = p.deployment("staging").version
    health = p.get("staging", "/health")
    assert health["flask"] == FLASK_VERSION  # its requirements, not the platform's Flask
    assert Path(health["prefix"]).parent == p.home / "venvs"
    (tests,) = p.tests_gate()  # its suite ran on its environment, in the sandbox
    assert tests["metadata"]["tests"] == 3 and tests["metadata"]["isolation"] != "environment-only"
    assert p.promote("production").success
    assert p.get("production", "/notes", {"text": "first"}) == ["first"]

    # A new commit with the same requirements: the same environment, and the state stays.
    v2 = p.commit("the notes count in the health answer", {"app.py": APP + "\n# v2\n"})
    assert p.promote("staging").success and p.promote("production").success
    assert p.deployment("production").version == v2
    assert p.get("production", "/notes") == ["first"]
    assert len(list((p.home / "venvs").glob("python-*"))) == 1
    state = p.deployment("production").details["state_dir"]
    assert state == str(p.home / "state" / "notes" / "production")
    assert (Path(state) / "notes.db").is_file()
    assert p.get("staging", "/notes") == []  # staging has its own state folder

    # A rollback goes back to the old code, on the same data, without running setup again.
    assert p.rollback("production").success
    assert p.deployment("production").version == v1
    assert p.get("production", "/notes", {"text": "second"}) == ["first", "second"]
    log = (p.home / "releases" / "notes" / "production" / "service.log").read_text()
    assert log.count("setup: ") == 2 and "notes table ready" in log  # v1 and v2, not the rollback

    # A setup step that fails refuses the release with its output; staging keeps serving v2.
    broken = APP.replace('click.echo("notes table ready")',
                         'raise click.ClickException("migration 3: column text already exists")')
    p.commit("a migration that fails", {"app.py": broken})
    out = p.promote("staging")
    assert not out.success and out.error.code == "UD-TARGET-SETUP", out.error
    assert "migration 3: column text already exists" in out.error.message
    assert "flask --app app init-db" in out.error.message
    assert p.deployment("staging").version == v2 and p.get("staging", "/health")["status"] == "ok"
    assert p.clean()


@pytest.fixture
def node_app(tmp_path, monkeypatch):
    project = Project(tmp_path, monkeypatch, "clock", NODE_UNIT)
    (project.work / "package.json").write_text(json.dumps(PACKAGE_JSON, indent=2))
    locked = subprocess.run(["npm", "install", "--package-lock-only", "--no-audit", "--no-fund"],
                            cwd=project.work, capture_output=True, text=True, timeout=300)
    assert locked.returncode == 0, locked.stderr
    project.commit("a clock service", {"server.js": SERVER_JS, "test/clock.test.js": NODE_TEST})
    project.load()
    yield project
    project.stop()


def test_a_node_service_installs_with_npm_ci_runs_npm_test_and_starts(node_app):
    p = node_app
    staged = p.promote("staging")
    assert staged.success, staged.error
    (tests,) = p.tests_gate()  # `npm test` in the sandbox, counted from node's own summary
    assert tests["metadata"]["tests"] == 2 and tests["metadata"]["isolation"] != "environment-only"
    answer = p.get("staging", "/health")
    assert answer["day"] == 86400000
    assert answer["resolved"].startswith(str(p.home / "venvs" / "node-"))  # npm ci's, in the home
    assert p.promote("production").success
    v2 = p.commit("a second test", {"test/more.test.js": NODE_TEST.replace("two hours", "2 hours")})
    assert p.promote("staging").success and p.deployment("staging").version == v2
    assert len(list((p.home / "venvs").glob("node-*"))) == 1  # the same lock, the same install

    # A failing test refuses the candidate, counted from node's own summary.
    p.commit("a wrong test", {"test/wrong.test.js": NODE_TEST.replace("86400000", "1")})
    out = p.promote("staging")
    assert not out.success and out.error.code == "UD-GATE-REFUSED"
    assert p.tests_gate()[-1]["metadata"]["failures"] == 1
    assert p.deployment("staging").version == v2
    assert p.clean()


# -- which files, which digest: the pure part, and installs that fail --------------------------

def _unit(dependencies) -> AppUnit:
    return AppUnit(name="app", team="web", repository="/nonexistent", dependencies=dependencies)


def test_the_digest_follows_the_files_that_say_what_to_install(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
        (folder / "requirements.txt").write_text("-r requirements-base.txt\npytest\n")
        (folder / "requirements-base.txt").write_text("flask==3.0.3\n")
        (folder / "app.py").write_text(f"# {folder.name}\n")  # code is not part of the digest
    first = environments.plan(_unit("auto"), one)
    assert first.ecosystem == "python" and first.files == ("requirements-base.txt", "requirements.txt")
    assert environments.plan(_unit("auto"), two).digest == first.digest
    (two / "requirements-base.txt").write_text("flask==3.1.0\n")  # an included file counts too
    assert environments.plan(_unit(["requirements.txt"]), two).digested == ("requirements.txt", "requirements-base.txt")
    assert environments.plan(_unit("auto"), two).digest != first.digest
    (one / "package.json").write_text("{}")
    (one / "package-lock.json").write_text("{}")
    assert environments.plan(_unit("auto"), one).ecosystem == "node"  # the lock of what it runs on
    with pytest.raises(UDError, match="mixes Node files"):
        environments.plan(_unit(["package-lock.json", "requirements.txt"]), one)
    with pytest.raises(UDError, match="not in '.' at this commit"):
        environments.plan(_unit(["requirements-dev.txt"]), one)
    with pytest.raises(ValidationError):
        _unit(["../outside.txt"])


def test_a_uv_lock_installs_what_it_locks_and_a_bad_requirement_is_refused_with_its_output(tmp_path):
    app, home = tmp_path / "app", Home(tmp_path / "home")
    app.mkdir()
    (app / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "1"\nrequires-python = ">=3.11"\n'
                                        'dependencies = ["iniconfig==2.0.0"]\n')
    locked = subprocess.run([environments.uv_binary() or "uv", "lock", "--quiet"], cwd=app,
                            capture_output=True, text=True, timeout=120)
    assert locked.returncode == 0, locked.stderr
    made = environments.ensure(_unit("auto"), app, home, log=lambda _: None)
    assert made is not None and made.installer == "uv" and not made.reused
    shown = subprocess.run([made.python, "-c", "import importlib.metadata as m; print(m.version('iniconfig'))"],
                           capture_output=True, text=True, timeout=60)
    assert shown.stdout.strip() == "2.0.0"
    assert environments.ensure(_unit("auto"), app, home, log=lambda _: None).reused

    (app / "requirements.txt").write_text("no-such-package-ud-test-4242==1.0\n")
    with pytest.raises(UDError) as refused:
        environments.ensure(_unit(["requirements.txt"]), app, home, log=lambda _: None)
    assert refused.value.code == "UD-APP-DEPS" and "no-such-package-ud-test-4242" in refused.value.message
    assert len(list((home.root / "venvs").glob("python-*"))) == 1  # the failed one left nothing


def test_a_pyproject_gives_its_dependencies_extras_and_groups_but_not_itself(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "My_App"\ndependencies = ["flask>=3", "my-app-utils"]\n'
        '[project.optional-dependencies]\ntest = ["pytest", "my.app[extra]"]\n'
        '[dependency-groups]\ndev = ["ruff", {include-group = "test"}]\n')
    assert environments._pyproject_requirements(tmp_path / "pyproject.toml") == [
        "flask>=3", "my-app-utils", "pytest", "ruff"]


def test_a_suite_without_junit_is_counted_from_its_runners_closing_lines():
    from unified_delivery.gates.tests import _summary_counts

    spec = "✔ a (1ms)\n✖ b (2ms)\nℹ tests 2\nℹ suites 0\nℹ pass 1\nℹ fail 1\nℹ cancelled 0\nℹ skipped 0\n"
    assert _summary_counts(spec) == {"tests": 2, "failures": 1, "errors": 0, "skipped": 0}
    tap = "TAP version 13\nok 1 - a\n1..3\n# tests 3\n# pass 3\n# fail 0\n# skipped 0\n"
    assert _summary_counts(tap) == {"tests": 3, "failures": 0, "errors": 0, "skipped": 0}
    jest = "Test Suites: 1 failed, 1 total\nTests:       1 failed, 1 skipped, 2 passed, 4 total\n"
    assert _summary_counts(jest) == {"tests": 4, "failures": 1, "errors": 0, "skipped": 1}
    assert _summary_counts("2 passed in 0.5s\n") == {}  # pytest writes JUnit: not read from here


def test_a_suite_that_cannot_import_a_package_is_told_where_to_declare_it(tmp_path):
    from unified_delivery.gates.tests import _missing_module_remedy

    made = environments.AppEnvironment("python", "0" * 16, tmp_path, "uv", True, 0.0, files=("requirements.txt",))
    remedy = _missing_module_remedy("E   ModuleNotFoundError: No module named 'flask_sqlalchemy'\n", made)
    assert "'flask_sqlalchemy'" in remedy and "requirements.txt" in remedy
    assert "pytest" in _missing_module_remedy("/x/bin/python: No module named pytest\n", made)
    assert "declare the app's own `dependencies`" in _missing_module_remedy("No module named 'flask'", None)
    assert _missing_module_remedy("1 failed, 2 passed\n", made) == ""
