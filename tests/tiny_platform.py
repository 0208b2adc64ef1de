"""A tiny platform repository for tests that need `ud` end to end but not the reference
units' training and dbt: one app unit whose source is a real Git repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UD = str(Path(sys.executable).with_name("ud"))

APP = '''
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "ok", "version": os.environ.get("UD_VERSION")}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])), H).serve_forever()
'''

TEST = '''
def test_adds():
    assert 1 + {n} == {total}
'''

POLICY = '''
defaults: {ui_principal: service:dagster-ui, local_principal: human:local-operator}
principals:
  human:local-operator: {roles: {"*": [deploy, approve, override, admin]}}
  service:dagster-ui: {roles: {staging: [deploy]}}
  human:dana: {email: dana@example.com, roles: {staging: [deploy], production: [deploy, approve]}}
  human:olivia: {email: olivia@example.com, roles: {staging: [deploy, approve], production: [deploy, approve, override]}}
  agent:release-bot: {roles: {staging: [deploy]}, quotas: {promotions_per_day: {staging: 2}}}
freezes: FREEZES
'''

DEFINITIONS = '''
from pathlib import Path

from unified_delivery import Platform
from unified_delivery.governance import Governance

platform = Platform.from_directory(Path(__file__).parent / "units",
                                   governance=Governance.from_file(Path(__file__).parents[1] / "resources" / "policy.yaml"))
defs = platform.definitions()
'''

UNIT = '''
type: unified_delivery.app
attributes:
  name: svc
  team: web
  repository: "{repo}"
  gates: [{{type: tests}}, {{type: health, stage: staging}}]
  policy: {{approvals: {{production: {approvals}}}}}
  service: {{startup_timeout_s: 15}}
'''


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Dana", "GIT_AUTHOR_EMAIL": "dana@example.com",
           "GIT_COMMITTER_NAME": "Dana", "GIT_COMMITTER_EMAIL": "dana@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def make(tmp: Path, *, approvals: int = 1, freezes: str = "[]") -> dict:
    """Writes the platform, a bare remote and a clone with one passing commit; returns paths."""
    remote, work, project, home = tmp / "svc.git", tmp / "svc", tmp / "platform", tmp / "home"
    git("init", "-q", "--bare", "--initial-branch=main", str(remote), cwd=tmp)
    git("clone", "-q", str(remote), str(work), cwd=tmp)
    (work / "app.py").write_text(APP)
    (work / "test_app.py").write_text(TEST.format(n=1, total=2))
    commit(work, "first")
    (project / "assets" / "units").mkdir(parents=True)
    (project / "resources").mkdir()
    (project / "assets" / "__init__.py").write_text("")
    (project / "assets" / "definitions.py").write_text(DEFINITIONS)
    (project / "assets" / "units" / "svc.yaml").write_text(UNIT.format(repo=remote, approvals=approvals))
    (project / "resources" / "policy.yaml").write_text(POLICY.replace("FREEZES", freezes))
    return {"remote": remote, "work": work, "project": project, "home": home}


def commit(work: Path, message: str, *, passing: bool = True) -> str:
    (work / "test_app.py").write_text(TEST.format(n=1, total=2 if passing else 3))
    (work / "NOTES").write_text(message)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", message, cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def ud(paths: dict, *args: str, token: str | None = None, timeout: float = 300, popen: bool = False,
       program: str = UD):
    """`ud ARGS` (or `program ARGS`) on the platform and home of `paths`."""
    env = {k: v for k, v in os.environ.items() if k == "UD_CODE_SERVER_IDLE_S" or not k.startswith(("UD_", "DAGSTER"))}
    env.update(UD_HOME=str(paths["home"]), UD_PROJECT=str(paths["project"]))
    if token:
        env["UD_TOKEN"] = token
    cmd = [program, *args]
    if popen:
        return subprocess.Popen(cmd, cwd=paths["project"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=paths["project"], env=env, capture_output=True, text=True, timeout=timeout)
