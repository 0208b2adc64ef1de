"""The Dagster UI as a person sees it after `ud demo`: the webserver on the demo's instance,
driven by headless Chromium. The asset graph shows each unit's three stage assets inside
the unit's group, a gate check shows its result and code, a stage asset shows its DORA
figures (observed by the scorecard), and the platform scorecard renders its charts. Screenshots are kept under
test-artifacts/browser/."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = REPO_ROOT / ".venv" / "bin"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
UNITS = ("customer_features", "churn_model", "recommendation_api")
STAGES = {"candidate", "staging", "production"}
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the webserver exited ({proc.returncode}): {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the webserver did not answer in {timeout:.0f} s: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def ui(demo_home):
    """The webserver on the demo's instance, with the scorecard materialized; yields its base URL."""
    home, run = demo_home
    assert run.returncode == 0, run.stderr[-3000:]
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run does it)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "UD_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    port = _free_port()
    log = ARTIFACTS / "webserver.log"
    with open(log, "w") as out:
        web = subprocess.Popen([str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                               cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Meanwhile (both load the definitions), a run materializes the scorecard on the same instance.
        scorecard = subprocess.run([str(BIN / "dagster"), "asset", "materialize", "--select", "platform/scorecard",
                                    "-m", "assets.definitions", "-a", "defs"], cwd=REPO_ROOT, env=env,
                                   capture_output=True, text=True, timeout=300)
        assert scorecard.returncode == 0, scorecard.stderr[-3000:]
        _wait_until_up(f"http://127.0.0.1:{port}/server_info", web, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(web.pid, signal.SIGTERM)  # the webserver and the code server it started
        try:
            web.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(web.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def page(ui):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_context(viewport={"width": 1920, "height": 1080}).new_page()
        pg.set_default_timeout(60_000)
        try:
            yield pg
        finally:
            browser.close()


def _open(page, url: str, ready: str) -> None:
    page.goto(url, wait_until="networkidle")  # statuses and metadata arrive after the page
    page.get_by_text(ready, exact=True).first.wait_for()
    skip = page.get_by_role("button", name="Skip")  # the first visit's newsletter dialog covers the page
    if skip.count():
        skip.click()


# Each graph node is a foreignObject; a group's box holds the nodes of its assets.
NODES_IN_GROUPS = """() => {
  const nodes = [...document.querySelectorAll('foreignObject')]
    .map(e => ({text: e.textContent.trim(), box: e.getBoundingClientRect()})).filter(n => n.text);
  const inside = (a, b) => a.left >= b.left && a.right <= b.right && a.top >= b.top && a.bottom <= b.bottom;
  const out = {};
  for (const g of nodes) out[g.text] = nodes.filter(n => n !== g && inside(n.box, g.box)).map(n => n.text);
  return out;
}"""


def test_the_asset_graph_shows_each_units_three_stages(ui, page):
    expanded = ",".join(f"global@global:{group}" for group in (*UNITS, "platform"))
    _open(page, f"{ui}/asset-groups?expanded={quote(expanded)}", "production")
    page.wait_for_function("() => document.querySelectorAll('foreignObject').length >= 14")
    page.wait_for_timeout(1000)  # the graph settles its zoom-to-fit
    page.screenshot(path=str(ARTIFACTS / "asset-graph.png"))
    groups = page.evaluate(NODES_IN_GROUPS)
    for unit in UNITS:
        assert set(groups.get(unit, [])) == STAGES, (unit, groups)
    assert groups.get("platform") == ["scorecard"], groups


def test_a_gate_check_shows_its_result_and_the_refusal_in_its_history(demo_home, ui, page):
    from unified_delivery.ledger import Ledger

    ledger = Ledger(f"sqlite:///{demo_home[0] / 'ledger.db'}")
    try:
        tests = [e.payload for e in ledger.entries(unit="recommendation_api", action="gate") if e.payload["gate"] == "tests"]
    finally:
        ledger.dispose()
    latest, refused = tests[-1], next(p for p in tests if not p["passed"])  # the demo's commit whose tests fail
    _open(page, f"{ui}/assets/recommendation_api/candidate?view=checks&checkDetail=tests", "Evaluation result")
    page.get_by_text(latest["code"], exact=True).wait_for()
    assert "This is a blocking asset check." in page.inner_text("body")
    page.screenshot(path=str(ARTIFACTS / "gate-check.png"))
    page.get_by_text("Execution history", exact=True).click()
    row = page.locator("tr", has_text=refused["message"])
    row.wait_for()
    assert "Failed" in row.inner_text()
    page.screenshot(path=str(ARTIFACTS / "gate-check-history.png"))


def test_a_stage_asset_shows_its_dora_figures(ui, page):
    # Recorded on the stage asset as an observation when the scorecard is materialized (the
    # ui fixture does), not computed on every deploy: the asset's events show it.
    _open(page, f"{ui}/assets/recommendation_api/production?view=events", "Metadata")
    page.get_by_text("Observed in run").first.wait_for()  # the newest event, shown first: the observation
    page.get_by_text("dora_change_failure_ratio").first.wait_for()
    text = page.inner_text("body")
    assert "dora_deployments" in text and "spend_30d" in text and "DORA: recommendation_api in production" in text
    page.screenshot(path=str(ARTIFACTS / "stage-asset.png"), full_page=True)


def test_the_scorecard_renders_dora_tables_and_charts(ui, page):
    _open(page, f"{ui}/assets/platform/scorecard", "Metadata")
    page.get_by_text("[Show Markdown]").first.click()  # the first markdown entry: dora
    dialog = page.get_by_role("dialog").last
    dialog.get_by_text("DORA by unit (production)").wait_for()
    charts = dialog.locator("img")
    assert charts.count() == 4
    assert all(charts.nth(i).evaluate("img => img.complete && img.naturalWidth > 0") for i in range(4))
    text = dialog.inner_text()
    assert all(unit in text for unit in UNITS) and "change failure rate" in text
    page.screenshot(path=str(ARTIFACTS / "scorecard.png"))


def test_a_refused_run_says_why_and_production_says_which_gates_guard_it(demo_home, ui, page):
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(demo_home[0] / "dagster"))
    try:  # the demo's commit whose own tests fail: its run carries the refusal's code
        (refused,) = instance.get_run_records(filters=dg.RunsFilter(tags={"ud/outcome": "UD-GATE-TESTS-FAILED"}),
                                              limit=1)
    finally:
        instance.dispose()
    # The run list, filtered by that tag as a person would: the row says why, unopened.
    _open(page, f"{ui}/runs?q%5B0%5D={quote('tag:ud/outcome=UD-GATE-TESTS-FAILED')}", "Launched by")
    page.get_by_text(refused.dagster_run.run_id[:8], exact=True).first.wait_for()
    assert "ud/outcome: UD-GATE-TESTS-FAILED" in page.inner_text("body")
    page.screenshot(path=str(ARTIFACTS / "refused-run.png"))
    page.goto(f"{ui}/assets/recommendation_api/production", wait_until="networkidle")
    page.get_by_text("Guarded by", exact=False).first.wait_for()
    assert "recommendation_api/staging" in page.inner_text("body")
    page.screenshot(path=str(ARTIFACTS / "production-guarded-by.png"))
