"""The release board (`ud board`, unified_delivery/board.py) in headless Chromium: after the
demo (3 units, real history), and at 1,000 units (a ledger written through the platform's own
event records), with the time to first render measured. Screenshots under
test-artifacts/browser/."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_browser import ARTIFACTS, BIN, CHROMIUM, CHROMIUM_ARGS, REPO_ROOT, _free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run does it)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _page(browser):
    page = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
    page.set_default_timeout(60_000)
    return page


def test_the_board_after_the_demo_answers_what_is_live_where_and_who_put_it_there(demo_home, browser):
    home, run = demo_home
    assert run.returncode == 0, run.stderr[-3000:]
    env = {**os.environ, "UD_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    status = subprocess.run([str(BIN / "ud"), "status", "--json"], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert status.returncode == 0, status.stderr[-2000:]
    recorded = {u["name"]: {e: (d or {}).get("version") for e, d in u["environments"].items()}
                for u in json.loads(status.stdout)["units"]}
    port = _free_port()
    board = subprocess.Popen([str(BIN / "ud"), "board", "--port", str(port)], cwd=REPO_ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert "release board of 3 units" in board.stdout.readline()
        page = _page(browser)
        page.goto(f"http://127.0.0.1:{port}/")
        page.screenshot(path=str(ARTIFACTS / "board.png"), full_page=True)
        rows = page.locator("#units tbody tr")
        assert rows.count() == 3
        for unit, envs in recorded.items():
            row = page.locator(f'#units tbody tr[data-unit="{unit}"]')
            for env, version in envs.items():
                if version:
                    assert version[:12] in row.inner_text(), (unit, env, version)
        api = page.locator('#units tbody tr[data-unit="recommendation_api"]').inner_text()
        assert "rolled back by human:local-operator" in api  # the demo's last step, with its reason
        assert page.locator('a[href*="/runs/"]').count() >= 3  # each change links to its Dagster run
        assert "DORA per team" in page.content() and "Spend per team" in page.content()
        page.select_option("select[name=kind]", "model")
        page.click("text=filter")
        page.wait_for_url("**kind=model**")
        assert page.locator("#units tbody tr").count() == 1
    finally:
        os.killpg(board.pid, signal.SIGINT)
        board.wait(timeout=30)
    assert board.returncode == 0


def test_the_board_at_1000_units_renders_every_row_and_marks_drift(tmp_path, monkeypatch, browser):
    import unified_delivery as ud
    from unified_delivery.board import BoardServer
    from unified_delivery.events import Drift, Promotion, Rollback, record
    from unified_delivery.ledger import LedgerResource

    monkeypatch.setenv("UD_HOME", str(tmp_path / "home"))
    teams = ("web", "ml", "analytics", "payments")
    (tmp_path / "repo").mkdir()
    units = [ud.AppUnit(name=f"app_{i:04d}", team=teams[i % 4], repository=str(tmp_path / "repo"),
                        policy={"approvals": {"production": 1}}) for i in range(1000)]
    platform = ud.Platform(units, ledger=LedgerResource(url=f"sqlite:///{tmp_path / 'ledger.db'}"))
    ledger = platform.ledger.ledger()
    started = time.perf_counter()
    for i, unit in enumerate(units):  # what the engine records: every unit staged, most in production
        v1, v2 = f"{i:04d}aaaaaaaaaaaa", f"{i:04d}bbbbbbbbbbbb"
        record(ledger, Promotion(run_id=f"run-{i}-1", team=unit.team, kind="app", gates={"tests": "UD-GATE-TESTS-PASSED"}),
               principal="service:sensors", unit=unit.name, env="staging", version=v1)
        if i % 10:
            record(ledger, Promotion(run_id=f"run-{i}-2", team=unit.team, kind="app"), principal="human:olivia",
                   unit=unit.name, env="production", version=v1)
        if i % 3 == 0:
            record(ledger, Promotion(run_id=f"run-{i}-3", team=unit.team, kind="app"), principal="service:sensors",
                   unit=unit.name, env="staging", version=v2)
        if i % 50 == 0:
            record(ledger, Rollback(from_version=v2, reason="errors after deploy", run_id=f"run-{i}-4"),
                   principal="human:olivia", unit=unit.name, env="staging", version=v1)
        if i % 100 == 7:
            record(ledger, Drift(recorded_version=v1, actual_version="hand-made", noticed_by="ud_reconcile"),
                   principal="service:sensors", unit=unit.name, env="production", version="hand-made")
    written = time.perf_counter() - started
    server = BoardServer(platform, "127.0.0.1", 0, "http://127.0.0.1:3000")
    server.start()
    try:
        page = _page(browser)
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        t0 = time.perf_counter()
        page.goto(url, wait_until="load")
        first_render = time.perf_counter() - t0
        timing = page.evaluate("() => { const t = performance.getEntriesByType('navigation')[0];"
                               " return {response: t.responseEnd, load: t.loadEventEnd}; }")
        page.screenshot(path=str(ARTIFACTS / "board-1000.png"))
        assert page.locator("#units tbody tr").count() == 1000
        assert page.locator("td.drift").count() == 10
        waiting = page.locator("td.wait")  # staging moved on (i % 3 == 0) or never reached production
        assert waiting.count() >= 300
        assert "ud approve app_0003 --env production --version 0003bbbbbbbbbbbb" in page.content()
        page.goto(url + "?team=ml")
        assert page.locator("#units tbody tr").count() == 250
        print(f"\nboard at 1,000 units: ledger of {ledger.count()} entries written in {written:.1f} s; "
              f"first render {first_render:.2f} s wall (response end {timing['response'] / 1000:.2f} s, "
              f"load {timing['load'] / 1000:.2f} s)")
        (ARTIFACTS / "board-1000.json").write_text(json.dumps(
            {"entries": ledger.count(), "first_render_s": round(first_render, 3),
             "response_end_s": round(timing["response"] / 1000, 3), "load_s": round(timing["load"] / 1000, 3)}))
        assert first_render < 30  # a bound that only a regression by an order of magnitude breaks
    finally:
        server.shutdown()
        server.server_close()


def test_the_board_page_is_one_file_with_nothing_to_fetch():
    from unified_delivery.board import render

    html = render({"units": [], "teams": [], "kinds": [], "filter": {"team": "", "kind": ""}, "dora": [],
                   "spend": [], "window_days": 30, "entries": 0})
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")
    assert Path(__file__).exists()
