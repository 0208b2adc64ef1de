"""Notifications received by real local receivers (docs/notifications.md): an HTTP server that
checks the generic webhook's HMAC signature, a Slack-compatible endpoint, an SMTP server
(aiosmtpd), and a receiver that is down, whose messages are retried, then dead-lettered, while
every promotion goes on as if nothing were wrong."""

from __future__ import annotations

import json
import socket
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests import tiny_platform as tiny
from tests.test_security import Tiny
from unified_delivery import Platform
from unified_delivery.errors import ConfigError, UDError
from unified_delivery.governance import Governance
from unified_delivery.notifications import Notifications, deliver
from unified_delivery.notifications.channels import verify
from unified_delivery.service import approve, pending_approvals

KEY = "a-shared-hmac-key-0123456789"

ROUTES = """
channels:
  hook: {{type: webhook, url: "http://127.0.0.1:{http}/hook", secret_env: NOTIFY_HOOK_KEY}}
  team-slack: {{type: slack, url_env: NOTIFY_SLACK_URL}}
  oncall: {{type: email, smtp: "127.0.0.1:{smtp}", from: ud@acme.test, to: [oncall@acme.test]}}
  down: {{type: webhook, url: "http://127.0.0.1:{down}/", secret_env: NOTIFY_HOOK_KEY, timeout_s: 2}}
routes:
  - {{events: ["*"], channels: [hook]}}
  - {{teams: [web], events: [refused, approval-pending, rollback], channels: [team-slack, oncall]}}
  - {{events: [promoted], envs: [staging], channels: [down]}}
retry: {{attempts: 2, backoff_s: 0}}
"""


class Receiver(ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.got: dict[str, list[dict]] = {"/hook": [], "/slack": []}
        self.forged = 0
        threading.Thread(target=self.serve_forever, daemon=True).start()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/hook" and not verify(KEY.encode(), body, dict(self.headers)):
            self.server.forged += 1
            self.send_response(401)
        else:
            self.server.got[self.path].append(json.loads(body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp():
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self):
            self.mails = []

        async def handle_DATA(self, server, session, envelope):
            self.mails.append(message_from_bytes(envelope.content))
            return "250 OK"

    inbox = Inbox()
    inbox.port = _closed_port()  # free now; the controller checks it can connect once started
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


def test_refusals_approvals_and_rollbacks_reach_webhooks_and_email_and_a_dead_receiver_blocks_nothing(
        tmp_path, monkeypatch, smtp):
    receiver = Receiver()
    paths = tiny.make(tmp_path, approvals=1)
    routes = paths["project"] / "resources" / "notifications.yaml"
    routes.write_text(ROUTES.format(http=receiver.server_port, smtp=smtp.port, down=_closed_port()))
    monkeypatch.setenv("NOTIFY_HOOK_KEY", KEY)
    monkeypatch.setenv("NOTIFY_SLACK_URL", f"http://127.0.0.1:{receiver.server_port}/slack")
    t = Tiny(paths, monkeypatch)
    t.platform = Platform.from_directory(
        paths["project"] / "assets" / "units",
        governance=Governance.from_file(paths["project"] / "resources" / "policy.yaml"),
        notifications=Notifications.from_file(routes))
    t.defs = t.platform.definitions()
    try:
        assert t.promote("staging").success  # told: promoted (hook; the dead receiver fails)
        v1 = t.running("staging")
        assert t.promote("production").error.code == "UD-GATE-REFUSED"  # waits for an approval
        # Approvals where people are: who may give it, and the command.
        (waiting,) = pending_approvals(t.platform, "human:olivia")["pending"]
        assert (waiting["unit"], waiting["env"], waiting["version"]) == ("svc", "production", v1)
        assert waiting["command"] == f"ud approve svc --env production --version {v1}"
        dana = pending_approvals(t.platform, "human:dana")  # she wrote it: not hers to approve
        assert dana["pending"] == [] and len(dana["all"]) == 1
        v2 = tiny.commit(paths["work"], "second")
        assert t.promote("staging").success and t.running("staging") == v2
        with pytest.raises(UDError) as info:  # v1 no longer waits: staging moved on
            approve(t.platform, "human:olivia", "svc", "production", v1)
        assert info.value.code == "UD-APPROVAL-NOT-WAITING" and v2 in info.value.remediation
        tiny.commit(paths["work"], "breaks its test", passing=False)
        assert t.promote("staging").error.code == "UD-GATE-REFUSED"  # refused by its tests
        approve(t.platform, "human:olivia", "svc", "production", v2, comment="checked the canary")
        assert t.ledger.latest(action="approval").payload["comment"] == "checked the canary"
        assert t.promote("production").success
        assert t.rollback("production").error is not None  # nothing before v2 there: refused
        assert t.running("staging") == v2 and t.running("production") == v2
        # The dead receiver's second and last attempt came with the next command's delivery.
        again = deliver(t.platform)
        assert (again["delivered"], again["failed"], again["dead_letter"]) == (0, 0, 0), again

        events = [(m["event"], m["env"]) for m in receiver.got["/hook"]]
        assert events == [("promoted", "staging"), ("approval-pending", "production"), ("promoted", "staging"),
                          ("refused", "production"),  # olivia's approval of v1, which no longer waited
                          ("refused", "staging"), ("promoted", "production"), ("refused", "production")], events
        assert receiver.forged == 0
        pending = next(m for m in receiver.got["/hook"] if m["event"] == "approval-pending")
        assert pending["details"]["approvers"] == ["human:olivia"]  # dana wrote it: four eyes
        assert pending["details"]["command"] == f"ud approve svc --env production --version {v1}"
        assert "who may approve: human:olivia" in pending["text"]
        refused = next(m for m in receiver.got["/hook"] if m["event"] == "refused" and m["env"] == "staging")
        assert "tests (UD-GATE-TESTS-FAILED)" in refused["text"] and refused["team"] == "web"

        slack = [m["text"] for m in receiver.got["/slack"]]
        assert len(slack) == 4 and "waits for approval" in slack[0] and slack[0] == slack[0].strip()
        assert all(m["blocks"][0]["type"] == "header" for m in receiver.got["/slack"])
        subjects = [mail["Subject"] for mail in smtp.mails]
        assert len(subjects) == 4 and subjects[0].startswith("[ud] svc ") and "waits for approval" in subjects[0]
        assert "ud approve svc --env production" in smtp.mails[0].get_payload()

        attempts = [(e.payload["channel"], e.payload["outcome"], e.payload["attempt"])
                    for e in t.ledger.entries(action="notification") if e.payload["channel"] == "down"]
        assert attempts == [("down", "failed", 1), ("down", "dead-letter", 2)] * 2  # two promotions to staging
        delivered = [e for e in t.ledger.entries(action="notification") if e.payload["outcome"] == "delivered"]
        assert len(delivered) == len(receiver.got["/hook"]) + len(slack) + len(subjects)
        assert deliver(t.platform)["delivered"] == 0  # told once: nothing is sent twice
        # The standard sensors deliver too, on each tick (nothing left here).
        from unified_delivery.home import Home
        from unified_delivery.triggers.standard import with_standard_sensors
        from unified_delivery.triggers.tick import tick

        ticked = tick(with_standard_sensors(t.platform, "service:sensors"), Home.current(), ["ud_notify"])
        (sensor,) = ticked["sensors"]
        assert sensor["error"] is None and sensor["skip_reason"].startswith("0 delivered"), sensor
        assert KEY not in (paths["home"] / "ledger.db").read_bytes().decode("latin-1")
        assert t.ledger.verify().ok
    finally:
        receiver.shutdown()
        t.stop()


@pytest.mark.parametrize("text, says", [
    ("channels: {a: {type: webhook, url: 'http://x'}}", "secret_env"),
    ("channels: {a: {type: email, to: [x@y]}}", "smtp"),
    ("routes: [{events: [refused], channels: [nowhere]}]", "not defined"),
    ("channels: {a: {type: slack, url: 'http://x'}}\nroutes: [{events: [refuse], channels: [a]}]", "unknown events"),
    ("[1, 2]", "expected a mapping"),
])
def test_a_bad_routes_file_is_refused_when_it_loads(tmp_path, text, says):
    path = tmp_path / "notifications.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        Notifications.from_file(path)
    assert info.value.code == "UD-CONFIG-NOTIFY" and says in info.value.message
    assert "\n" not in info.value.message


def test_ud_notify_without_routes_says_so(tmp_path):
    paths = tiny.make(tmp_path)
    out = tiny.ud(paths, "notify", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    assert data["ok"] and data["configured"] is False and data["delivered"] == 0
