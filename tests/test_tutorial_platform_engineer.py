"""docs/tutorials/platform-engineer.md, run as written (tests/tutorials.py), and what it claims."""

import subprocess
from pathlib import Path

import pytest

from tutorials import TUTORIALS, blocks, deployed, run_tutorial, stop_services, ud_json

pytestmark = pytest.mark.e2e


def test_platform_engineer(tmp_path: Path):
    try:
        run_tutorial("platform-engineer.md", tmp_path)
    finally:
        stop_services(tmp_path / "acme")
    root = tmp_path / "acme"
    state = deployed(root)
    for unit in ("features", "scorer", "api", "daily_report"):
        assert state[unit]["production"], f"{unit} is not in production: {state}"
    assert ud_json(root, "audit", "verify")["ok"]
    heads = subprocess.run(["git", "ls-remote", "--heads", str(tmp_path / "acme.git")], capture_output=True, text=True)
    assert "refs/heads/main" in heads.stdout


def test_every_tutorial_has_its_test_and_commands():
    for doc in TUTORIALS.glob("*.md"):
        if doc.name != "README.md":
            assert (Path(__file__).parent / f"test_tutorial_{doc.stem.replace('-', '_')}.py").exists(), doc.name
            assert blocks(doc.name), f"{doc.name} has no sh blocks"
