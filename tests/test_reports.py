"""Reports over the ledger: DORA metrics, cost showback and audit activity on synthetic
histories with chosen times, their renderings (text, markdown, one self-contained HTML
file), traces of a promotion, and `ud report` on a real (and a tampered) ledger."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from unified_delivery import tracing
from unified_delivery.gates.base import GateResult
from unified_delivery.ledger import Ledger, LedgerEntry, utc_iso
from unified_delivery.reports import audit, charts, cost, dora, html, render, scorecard, window

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = REPO_ROOT / ".venv" / "bin"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
WIN = window(T0, T0 + timedelta(days=10))
UNITS = {"api": {"team": "web", "kind": "app"}, "model": {"team": "ml", "kind": "model"},
         "site": {"team": "web", "kind": "app"}}


class History:
    """Ledger entries at chosen times, in the shape the ledger returns them."""

    def __init__(self) -> None:
        self.entries: list[LedgerEntry] = []

    def add(self, action: str, at: datetime, unit: str | None = None, env: str | None = None, version: str | None = None,
            **payload) -> LedgerEntry:
        entry = LedgerEntry(len(self.entries) + 1, utc_iso(at), action, "human:test", unit, env, version, payload, "", "")
        self.entries.append(entry)
        return entry

    def candidate(self, unit: str, version: str, at: datetime, created: datetime | None = None, **extra) -> None:
        details = {"change_created_at": utc_iso(created)} if created else {}
        self.add("candidate", at, unit, "candidate", version, artifact={"unit": unit, "version": version, "details": details},
                 team=UNITS[unit]["team"], kind=UNITS[unit]["kind"], **extra)

    def deploy(self, unit: str, version: str, at: datetime, env: str = "production", **extra) -> None:
        self.add("promotion", at, unit, env, version, team=UNITS[unit]["team"], kind=UNITS[unit]["kind"], **extra)


def h(hours: float) -> timedelta:
    return timedelta(hours=hours)


@pytest.fixture
def history() -> History:
    """api: three deploys, the second rolled back after its health failed; model: one deploy; site: none."""
    hist = History()
    hist.candidate("api", "a1", T0 + h(1), created=T0)
    hist.deploy("api", "a1", T0 + h(3))  # lead 3 h
    hist.candidate("api", "a2", T0 + h(24), created=T0 + h(23))
    hist.deploy("api", "a2", T0 + h(24.5))  # lead 1.5 h
    hist.add("gate", T0 + h(25), "api", "production", "a2", gate="health", family="health", stage="production", passed=False)
    hist.add("rollback", T0 + h(25.5), "api", "production", "a1", from_version="a2", trigger="health")
    hist.candidate("api", "a3", T0 + h(48), created=T0 + h(47))
    hist.deploy("api", "a3", T0 + h(49))  # lead 2 h
    hist.add("already-deployed", T0 + h(50), "api", "production", "a3")
    hist.candidate("model", "7", T0 + h(2), created=T0 + h(2))
    hist.deploy("model", "7", T0 + h(2.25), change_created_at=utc_iso(T0 + h(2)))
    return hist


def row(rows: list[dict], key: str, value: str) -> dict:
    return next(r for r in rows if r[key] == value)


def test_dora_figures_per_unit_team_kind_and_platform(history):
    report = dora.report(history.entries, WIN, "production", UNITS)
    api = row(report["units"], "unit", "api")
    assert api["deployments"] == 3  # the already-deployed no-op is not a deploy
    assert api["deployment_frequency"] == 0.3
    assert api["lead_time_seconds"] == 7200.0  # median of 3 h, 1.5 h, 2 h
    assert api["change_failure_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert api["time_to_restore_seconds"] == 1800.0  # from the failed health check to the rollback
    model = row(report["units"], "unit", "model")
    assert (model["deployments"], model["lead_time_seconds"], model["change_failure_rate"]) == (1, 900.0, 0.0)
    assert model["time_to_restore_seconds"] is None
    site = row(report["units"], "unit", "site")
    assert (site["deployments"], site["deployment_frequency"], site["lead_time_seconds"], site["change_failure_rate"],
            site["time_to_restore_seconds"]) == (0, 0.0, None, None, None)
    web = row(report["teams"], "team", "web")  # api and site pooled
    assert (web["deployments"], web["failures"]) == (3, 1)
    assert row(report["kinds"], "kind", "model")["deployments"] == 1
    assert report["platform"]["deployments"] == 4 and report["platform"]["change_failure_rate"] == 0.25


def test_a_rollback_without_a_health_signal_restores_from_the_deploy_and_an_unrestored_failure_is_open():
    hist = History()
    hist.deploy("api", "a1", T0 + h(1))
    hist.deploy("api", "a2", T0 + h(2))
    hist.add("rollback", T0 + h(2.5), "api", "production", "a1", from_version="a2", reason="errors")
    hist.deploy("api", "a3", T0 + h(3))
    hist.add("gate", T0 + h(3.2), "api", "production", "a3", family="health", stage="production", passed=False)
    api = row(dora.report(hist.entries, WIN, "production", UNITS)["units"], "unit", "api")
    assert (api["deployments"], api["failures"], api["open_failures"]) == (3, 2, 1)
    assert api["time_to_restore_seconds"] == 1800.0  # the manual rollback: from the deploy; the open one has no time yet
    # A failed health check on staging says nothing about production.
    hist.add("gate", T0 + h(4), "api", "production", "a3", family="health", stage="staging", passed=False)
    assert row(dora.report(hist.entries, WIN, "production", UNITS)["units"], "unit", "api")["failures"] == 2


def test_lead_time_comes_from_the_promotion_else_the_candidate_else_is_unknown():
    hist = History()
    hist.candidate("api", "a1", T0 + h(2), created=T0)
    hist.deploy("api", "a1", T0 + h(4))  # from the candidate's change_created_at: 4 h
    hist.add("candidate", T0 + h(5), "api", "candidate", "a2", artifact={"details": {}})
    hist.deploy("api", "a2", T0 + h(6))  # no creation time recorded: from the build, 1 h
    hist.deploy("api", "a3", T0 + h(7), change_created_at="not a time")
    hist.deploy("api", "a4", T0 + h(8), change_created_at=utc_iso(T0 + h(9)))  # a skewed clock counts 0, not negative
    ds = dora.deploys(hist.entries, WIN)
    assert [d.lead_seconds for d in ds] == [4 * 3600.0, 3600.0, None, 0.0]
    assert dora.figures(ds, WIN.days)["lead_time_unknown"] == 1


@pytest.mark.parametrize("win", [window(T0 + timedelta(days=30), T0 + timedelta(days=31)),  # later: no deploys
                                 window(T0, T0)])  # an empty window
def test_a_window_without_deploys_gives_zero_and_no_data(history, win):
    report = dora.report(history.entries, win, "production", UNITS)
    for r in (*report["units"], report["platform"]):
        assert r["deployments"] == 0 and r["deployment_frequency"] == 0.0
        assert r["lead_time_seconds"] is r["change_failure_rate"] is r["time_to_restore_seconds"] is None
    assert dora.report([], win)["platform"]["deployments"] == 0
    text = render.text(render.dora_tables(report))
    assert "no data" in text


def test_failed_deploy_attempts_are_counted_apart_from_deploys():
    hist = History()
    hist.add("deploy-failed", T0 + h(1), "api", "production", "a1", code="UD-TARGET-HEALTH")
    api = dora.report(hist.entries, WIN, "production", UNITS)
    assert row(api["units"], "unit", "api")["failed_attempts"] == 1
    assert api["platform"]["deployments"] == 0


def test_cost_showback_sums_per_team_and_unit_and_shows_unreadable_costs():
    hist = History()
    hist.add("candidate", T0 + h(1), "api", "candidate", "a1", team="web", cost={"amount": 0.25, "currency": "USD"})
    hist.add("promotion", T0 + h(2), "api", "production", "a1", team="web", cost={"amount": 0.5, "currency": "USD"})
    hist.add("gate", T0 + h(2), "api", "staging", "a1", team="web")  # no cost: counts 0
    hist.add("promotion", T0 + h(3), "model", "production", "7", team="ml", cost={"amount": 2, "currency": "EUR"})
    hist.add("promotion", T0 + h(4), "model", "production", "8", team="ml", cost={"amount": "lots"})
    hist.add("promotion", T0 - h(1), "api", "production", "a0", team="web", cost={"amount": 100.0})  # before the window
    report = cost.report(hist.entries, WIN, UNITS)
    assert {(t["team"], t["spend"], t["currency"]) for t in report["teams"]} == {("web", 0.75, "USD"), ("ml", 2.0, "EUR")}
    api = row(report["units"], "unit", "api")
    assert api["by_action"] == {"candidate": 0.25, "promotion": 0.5} and api["costed_entries"] == 2
    assert row(report["units"], "unit", "site")["spend"] == 0.0  # declared, nothing spent
    assert [i["seq"] for i in report["invalid"]] == [5] and "not a number" in report["invalid"][0]["reason"]
    assert report["total"] == [{"currency": "EUR", "spend": 2.0}, {"currency": "USD", "spend": 0.75}]


def test_audit_activity_counts_actions_and_lists_what_a_reviewer_reads_first(history):
    history.add("refusal", T0 + h(30), "api", "production", "a9", code="UD-GATE-REFUSED", message="tests failed")
    report = audit.report(history.entries, WIN)
    api = row(report["activity"], "unit", "api")
    assert api["actions"]["promotion"] == 3 and api["actions"]["rollback"] == 1
    assert [(n["action"], n["code"]) for n in report["notable"]] == [("refusal", "UD-GATE-REFUSED")]


def test_the_html_report_is_one_self_contained_file_with_charts_and_escapes_names(history):
    units = {**UNITS, "<b>evil</b>": {"team": "x|y", "kind": "app"}}
    report = dora.report(history.entries, WIN, "production", units)
    page = html.page("DORA metrics", "window", {"ok": True, "count": 12}, charts.dora_charts(report), render.dora_tables(report))
    assert page.count("<svg") == 4 and "<rect" in page
    assert "<b>evil</b>" not in page and "&lt;b&gt;evil&lt;/b&gt;" in page
    # Nothing to fetch: no script, no external reference (the SVG namespace is a name, not a request).
    assert not re.search(r"<script|<link|<img|<iframe|src=|href=|url\(|@import", page, re.I)
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {"http://www.w3.org/2000/svg"}
    assert "Ledger verified: 12 entries" in page


def test_a_report_over_a_tampered_ledger_says_so_first(history):
    broken = {"ok": False, "count": 3, "first_bad_seq": 4, "reason": "entry 4 does not match its hash"}
    page = html.page("DORA metrics", "", broken, [], render.dora_tables(dora.report(history.entries, WIN)))
    body = page.split("<body>", 1)[1]
    assert body.startswith('<p class="warn">WARNING: the ledger is BROKEN at entry 4')
    meta = scorecard.scorecard_metadata(history.entries, broken, UNITS)
    assert meta["ledger"].startswith("WARNING") and meta["dora"].value.startswith("**WARNING")


def test_charts_say_no_data_instead_of_drawing_zero():
    svg = charts.bar_chart("Time to restore", [("api", 30.0), ("model", None)], render.duration)
    assert svg.count("<rect") == 1 and "no data" in svg and "30 s" in svg
    assert "no data" in charts.bar_chart("empty", [])
    assert charts.data_uri(svg).startswith("data:image/svg+xml;base64,")


def test_markdown_tables_escape_cell_separators():
    md = render.markdown({"title": "t", "headers": ["a", "b"], "rows": [["x|y", "line\nbreak"]]})
    assert "| x\\|y | line break |" in md
    assert "_no data_" in render.markdown({"title": "t", "headers": ["a"], "rows": []})


def test_stage_metadata_carries_the_units_dora_figures_spend_and_deploy_cost():
    hist = History()
    now = datetime.now(timezone.utc)
    hist.candidate("api", "a1", now - h(3), created=now - h(4), cost={"amount": 0.1, "currency": "USD"})
    hist.deploy("api", "a1", now - h(2), cost={"amount": 0.05, "currency": "USD"})
    meta = scorecard.stage_metadata(hist.entries, "api", "production")
    assert meta["dora_deployments"] == 1 and meta["dora_lead_time_seconds"] == pytest.approx(7200, abs=1)
    assert meta["dora_change_failure_ratio"] == 0.0 and "dora_time_to_restore_seconds" not in meta  # no data: left out
    assert "dora_deploys_per_day" in meta  # every metric's name carries its unit
    assert meta["spend_30d_usd"] == pytest.approx(0.15) and meta["deploy_cost_usd"] == 0.05
    assert "DORA: api in production" in meta["dora"].value
    assert scorecard.stage_metadata(hist.entries, "api", "staging")["dora"].startswith("no deploy of api to staging")
    assert scorecard.gate_summary({"tests": {"passed": True}, "approval": {"passed": False, "overridden": True}}) == \
        "1/2 passed, 1 overridden (approval)"


def test_scorecard_metadata_renders_charts_as_images_and_tables():
    hist = History()
    hist.deploy("model", "7", datetime.now(timezone.utc) - h(5), cost={"amount": 1.5, "currency": "USD"})
    meta = scorecard.scorecard_metadata(hist.entries, {"ok": True, "count": 1}, UNITS)
    md = meta["dora"].value
    assert md.count("](data:image/svg+xml;base64,") == 4 and "**DORA by unit (production)**" in md
    assert "| api | web | app | 0 |" in md and "| model | ml | model | 1 |" in md
    assert meta["platform_deployments"] == 1 and meta["spend_USD"] == 1.5 and meta["ledger"].startswith("verified: 1")
    assert meta["cost"].value.count("](data:image/svg+xml;base64,") == 1


# --- traces -------------------------------------------------------------------------------------------------


@pytest.fixture
def trace_env(ud_home, monkeypatch):
    for var in ("UD_TRACES", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(var, raising=False)
    return ud_home


def _gate_and_deploy(run_id: str) -> None:
    with tracing.span("gate tests", run_id=run_id, unit="api", gate="tests", version=None) as s:
        tracing.record_gate(s, GateResult(False, "UD-GATE-TESTS-FAILED", "2 tests failed", "fix them"))
    with pytest.raises(RuntimeError):
        with tracing.span("deploy api to production", run_id=run_id, unit="api", env="production"):
            raise RuntimeError("target down")


def test_spans_go_to_a_file_under_the_home_by_default_one_trace_per_run(trace_env, capsys):
    run_id = "0b6f3c3e-8c1e-4a52-9f0e-2a4f1c9d7e11"
    _gate_and_deploy(run_id)
    assert capsys.readouterr() == ("", "")  # nothing on the terminal by default
    spans = [json.loads(line) for line in tracing.trace_file().read_text().splitlines()]
    assert [s["name"] for s in spans] == ["gate tests", "deploy api to production"]
    assert {s["context"]["trace_id"] for s in spans} == {"0x" + run_id.replace("-", "")}
    gate, deploy = spans
    assert gate["attributes"]["ud.gate.code"] == "UD-GATE-TESTS-FAILED" and gate["attributes"]["ud.gate.passed"] is False
    assert gate["status"]["status_code"] == "ERROR" and "ud.version" not in gate["attributes"]
    assert deploy["status"]["status_code"] == "ERROR" and deploy["events"][0]["name"] == "exception"
    assert gate["resource"]["attributes"]["service.name"] == "unified-delivery"


def test_console_spans_go_to_stderr_never_stdout_and_none_writes_nothing(trace_env, monkeypatch, capsys):
    monkeypatch.setenv("UD_TRACES", "console")
    _gate_and_deploy("run-console")
    out, err = capsys.readouterr()
    assert out == "" and err.count('"name": "gate tests"') == 1
    monkeypatch.setenv("UD_TRACES", "none")
    _gate_and_deploy("run-none")
    assert capsys.readouterr() == ("", "") and not tracing.trace_file().exists()
    monkeypatch.setenv("UD_TRACES", "jaeger")
    _gate_and_deploy("run-unknown")
    assert "UD_TRACES='jaeger' is not one of" in capsys.readouterr().err


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_otlp_is_used_when_an_endpoint_is_configured(trace_env, monkeypatch):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    server = HTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "delivery-test")
        assert tracing.mode() == "otlp"
        _gate_and_deploy("run-otlp")
    finally:
        server.shutdown()
    names, services = [], set()
    for path, body in _Collector.received:
        assert path == "/v1/traces"
        request = ExportTraceServiceRequest.FromString(body)
        for rs in request.resource_spans:
            services |= {a.value.string_value for a in rs.resource.attributes if a.key == "service.name"}
            names += [s.name for ss in rs.scope_spans for s in ss.spans]
    assert names == ["gate tests", "deploy api to production"] and services == {"delivery-test"}
    assert not tracing.trace_file().exists()


# --- `ud report` on a real ledger -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report_home(tmp_path_factory) -> Path:
    """A home whose ledger holds a small history of the reference units, written through the real Ledger."""
    home = tmp_path_factory.mktemp("report-home")
    ledger = Ledger(f"sqlite:///{home / 'ledger.db'}")
    ledger.append("candidate", principal="human:test", unit="recommendation_api", env="candidate", version="c1",
                  payload={"artifact": {"details": {"change_created_at": utc_iso(datetime.now(timezone.utc) - h(1))}},
                           "team": "web", "kind": "app", "cost": {"amount": 0.02, "currency": "USD"}})
    ledger.append("promotion", principal="human:test", unit="recommendation_api", env="production", version="c1",
                  payload={"team": "web", "kind": "app", "cost": {"amount": 0.01, "currency": "USD"}})
    ledger.append("promotion", principal="human:test", unit="churn_model", env="production", version="3",
                  payload={"team": "ml", "kind": "model"})
    ledger.dispose()
    return home


def test_ud_report_dora_and_cost_json(run_ud, report_home, tmp_path):
    out = run_ud("report", "dora", "--json", "--html", str(tmp_path / "dora.html"), home=report_home)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert list(data)[:3] == ["ok", "report", "ledger"] and data["ledger"]["ok"] is True and "warning" not in data
    units = {u["unit"]: u for u in data["units"]}
    assert set(units) == {"customer_features", "churn_model", "recommendation_api"}
    assert units["recommendation_api"]["lead_time_seconds"] == pytest.approx(3600, abs=120)
    assert units["customer_features"]["deployments"] == 0 and units["customer_features"]["change_failure_rate"] is None
    page = Path(data["html"]).read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 4
    out = run_ud("report", "cost", "--json", home=report_home)
    teams = {t["team"]: t for t in json.loads(out.stdout)["teams"]}
    assert teams["web"]["spend"] == pytest.approx(0.03) and teams["web"]["currency"] == "USD"
    assert teams["ml"]["spend"] == 0.0 and teams["analytics"]["spend"] == 0.0


def test_ud_report_refuses_bad_input_with_a_code(run_ud, report_home, tmp_path):
    out = run_ud("report", "dora", "--since", "last tuesday", "--json", home=report_home)
    assert out.returncode == 2 and json.loads(out.stdout)["error"]["code"] == "UD-USAGE"
    out = run_ud("report", "cost", "--html", str(tmp_path / "missing" / "dir" / "x.html"), home=report_home)
    assert out.returncode == 2 and "UD-REPORT-HTML" in out.stderr and "Traceback" not in out.stderr
    out = run_ud("report", "velocity", home=report_home)
    assert out.returncode == 2 and "UD-USAGE" in out.stderr


def test_ud_report_over_a_tampered_ledger_says_so_first(run_ud, report_home, tmp_path):
    home = tmp_path / "tampered"
    home.mkdir()
    (home / "ledger.db").write_bytes((report_home / "ledger.db").read_bytes())
    with sqlite3.connect(home / "ledger.db") as con:
        con.execute("UPDATE ud_ledger SET principal = 'human:mallory' WHERE seq = 2")
    out = run_ud("report", "dora", home=home)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("WARNING: the ledger is BROKEN at entry 2")
    data = json.loads(run_ud("report", "audit", "--json", home=home).stdout)
    assert data["ledger"]["ok"] is False and data["warning"].startswith("WARNING") and list(data).index("warning") < 4


@pytest.mark.e2e
def test_reports_after_the_demo(demo_home, tmp_path):
    home, run = demo_home
    assert run.returncode == 0, run.stderr[-3000:]
    env = {**os.environ, "UD_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)

    def ud(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV_BIN / "ud"), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=300)

    dora_out = ud("report", "dora", "--json", "--html", str(tmp_path / "dora.html"))
    assert dora_out.returncode == 0, dora_out.stderr
    units = {u["unit"]: u for u in json.loads(dora_out.stdout)["units"]}
    assert set(units) == {"customer_features", "churn_model", "recommendation_api"}
    for unit in units.values():
        assert unit["deployments"] >= 1 and unit["deployment_frequency"] > 0 and unit["lead_time_seconds"] is not None
        assert set(dora.METRICS) <= set(unit)
    app = units["recommendation_api"]  # the demo rolled its second release back
    assert app["change_failure_rate"] > 0 and app["time_to_restore_seconds"] > 0
    page = (tmp_path / "dora.html").read_text()
    assert page.count("<svg") == 4 and "<script" not in page
    cost_out = ud("report", "cost", "--json")
    teams = json.loads(cost_out.stdout)["teams"]
    assert {t["team"] for t in teams} == {"analytics", "ml", "web"}
    assert all(set(t) >= {"team", "spend", "currency"} and t["spend"] >= 0 for t in teams)
