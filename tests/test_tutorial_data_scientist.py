"""docs/tutorials/data-scientist.md, run as written (tests/tutorials.py), and what it claims."""

from pathlib import Path

import pytest

from tutorials import deployed, ledger_entries, platform_remote, run_tutorial

pytestmark = pytest.mark.e2e


def test_data_scientist(tmp_path: Path):
    proc = run_tutorial("data-scientist.md", tmp_path, PLATFORM_REMOTE=str(platform_remote(tmp_path / "platform")))
    assert "refused: UD-GATE-REFUSED" in proc.stdout
    root = tmp_path / "acme"
    # v1 from a script, v2 the notebook's random forest, v3 the refused baseline
    assert deployed(root)["churn"] == {"staging": "2", "production": "2"}
    promotions = ledger_entries(root, unit="churn", action="promotion")
    assert [(e.version, e.env) for e in promotions] == [("1", "staging"), ("2", "staging"), ("2", "production")]
    assert any(e.version == "3" and not e.payload["passed"] and e.payload["gate"] == "model_metric"
               for e in ledger_entries(root, unit="churn", action="gate"))
