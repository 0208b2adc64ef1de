"""docs/tutorials/app-developer.md, run as written (tests/tutorials.py), and what it claims."""

import subprocess
from pathlib import Path

import pytest

from tutorials import deployed, ledger_entries, platform_remote, run_tutorial, stop_services

pytestmark = pytest.mark.e2e


def test_app_developer(tmp_path: Path):
    root = tmp_path / "acme"
    try:
        run_tutorial("app-developer.md", tmp_path, PLATFORM_REMOTE=str(platform_remote(tmp_path / "platform")))
    finally:
        stop_services(root)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    refused = subprocess.run(["git", "rev-parse", "HEAD~1"], cwd=root, capture_output=True, text=True).stdout.strip()
    assert deployed(root)["shop"] == {"staging": head, "production": head}
    gate_results = ledger_entries(root, unit="shop", action="gate")
    assert any(e.version == refused and not e.payload["passed"] and e.payload["gate"] == "tests" for e in gate_results)
