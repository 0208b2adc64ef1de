"""Cost: measurement, the price table and budgets, and the cost gate's verdicts."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from unified_delivery.cost import CostModel, Usage, measure
from unified_delivery.errors import ConfigError
from unified_delivery.gates.base import GateContext
from unified_delivery.gates.cost import CostGate
from unified_delivery.home import Home
from unified_delivery.ledger import Ledger
from unified_delivery.targets.base import Artifact
from unified_delivery.kinds.app.unit import AppUnit
from unified_delivery.units import GateSpec

ROOT = Path(__file__).resolve().parents[1]
PRICES = """
prices: {currency: USD, cpu_hour: 3.6, gb_hour: 0.0, gpu_hour: 10, replica_hour: {small: 0.01, large: 1.0}}
teams: {web: {per_month: 100}}
"""


def test_measure_counts_cpu_of_the_process_and_its_children():
    with measure() as m:
        subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
        end = time.process_time() + 0.2
        while time.process_time() < end:
            pass
    usage = m["usage"]
    assert usage.cpu_seconds >= 0.3 and usage.wall_seconds >= usage.cpu_seconds * 0.4
    assert usage.peak_memory_mb > 10 and usage.gpu_seconds == 0.0


@pytest.mark.parametrize("text, field", [
    ("prices: {currency: USD, cpu_hour: -1, gb_hour: 0, gpu_hour: 0}", "prices.cpu_hour"),
    ("prices: {currency: XYZ, cpu_hour: 1, gb_hour: 0, gpu_hour: 0}", "prices.currency"),
    ("prices: {currency: USD, cpu_hour: 1, gb_hour: 0}", "prices.gpu_hour"),
    ("prices: {currency: USD, cpu_hour: 1, gb_hour: 0, gpu_hour: 0, replica_hour: {small: -2}}", "prices.replica_hour"),
    ("prices: {currency: USD, cpu_hour: 1, gb_hour: 0, gpu_hour: 0}\nteams: {web: {per_month: -5}}", "teams.web.per_month"),
])
def test_a_bad_price_table_is_refused_naming_the_field(tmp_path, text, field):
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        CostModel.from_file(tmp_path / "p.yaml")
    assert info.value.code == "UD-CONFIG-COST" and field in info.value.message


def _app(**budget) -> AppUnit:
    return AppUnit(name="web_app", team="web", repository="{home}/web_app.git", budget=budget, gates=[{"type": "cost"}])


def test_budgets_that_do_not_fit_the_price_table_are_refused_at_load(tmp_path):
    from unified_delivery import Platform
    from unified_delivery.ledger import LedgerResource

    (tmp_path / "p.yaml").write_text(PRICES)
    costs = CostModel.from_file(tmp_path / "p.yaml")
    for budget, field in (({"currency": "EUR"}, "budget.currency"), ({"serving": {"size": "huge"}}, "budget.serving.size")):
        with pytest.raises(ConfigError) as info:
            Platform([_app(**budget)], costs=costs, ledger=LedgerResource(url=f"sqlite:///{tmp_path}/l.db"))
        assert info.value.code == "UD-CONFIG-COST" and field in info.value.message and "web_app" in info.value.message
    from pydantic import ValidationError

    for bad in ({"currency": "Dollars"}, {"per_month": -1}):  # the YAML loader turns these into UD-CONFIG-UNIT
        with pytest.raises(ValidationError):
            _app(**bad)


def _verdict(tmp_path, unit: AppUnit, cpu_seconds: float, deploy_file: str | None = None, others: float = 0.0):
    (tmp_path / "p.yaml").write_text(PRICES)
    costs = CostModel.from_file(tmp_path / "p.yaml")
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    if deploy_file:
        (src / "ud-deploy.yaml").write_text(deploy_file)
    usage = Usage(cpu_seconds=cpu_seconds, peak_memory_mb=100, wall_seconds=cpu_seconds)
    ledger.append("candidate", principal="human:x", unit=unit.name, env="candidate", version="v1",
                  payload={"cost": {"amount": costs.run_cost(usage), "currency": "USD"}, "team": "web"})
    if others:  # another unit of the team, already projected
        ledger.append("gate", principal="human:x", unit="other_app", env="staging", version="o1",
                      payload={"family": "cost", "team": "web", "passed": True, "metadata": {"projected_monthly": others}})
    gate = CostGate(GateSpec(type="cost"), unit)
    ctx = GateContext(unit=unit, stage="candidate", guards="staging", version="v1",
                      artifact=Artifact(unit=unit.name, kind="app", version="v1", location=str(src)), target=None,
                      home=Home(tmp_path), ledger=ledger, platform=SimpleNamespace(costs=costs))
    return gate.evaluate(ctx)


def test_a_cheap_version_passes_with_its_projection(tmp_path):
    result = _verdict(tmp_path, _app(per_run=1.0, serving={"size": "small", "replicas": 2}), cpu_seconds=60)
    assert result.passed and result.code == "UD-GATE-COST-OK"
    # 60 CPU-seconds at 3.60/CPU-hour = 0.06 a run, x30 runs, plus 2 small replicas x 730 h x 0.01
    assert result.metadata["run_cost"] == pytest.approx(0.06)
    assert result.metadata["projected_monthly"] == pytest.approx(0.06 * 30 + 14.6, abs=0.01)


def test_a_run_over_its_budget_is_refused_by_how_much(tmp_path):
    result = _verdict(tmp_path, _app(per_run=0.05), cpu_seconds=100)
    assert not result.passed and result.code == "UD-GATE-COST-RUN"
    assert "0.0500 over" in result.message  # 0.10 spent against 0.05


def test_replicas_declared_in_the_repository_can_pass_the_team_budget(tmp_path):
    unit = _app(serving={"size": "small", "replicas": 1})
    result = _verdict(tmp_path, unit, cpu_seconds=1, deploy_file="size: large\nreplicas: 1\n", others=50)
    # one large replica: 730/month, plus the other unit's 50, against the team's 100
    assert not result.passed and result.code == "UD-GATE-COST-TEAM-BUDGET"
    assert "over its budget of 100" in result.message and result.metadata["serving"] == {"size": "large", "replicas": 1}


def test_unit_economics_per_thousand_predictions(tmp_path):
    (tmp_path / "a").mkdir()
    ok = _verdict(tmp_path / "a", _app(serving={"size": "small", "replicas": 1}, volume_per_month=1_000_000,
                                        max_unit_cost=0.01), cpu_seconds=0)
    assert ok.passed and ok.metadata["unit_cost"] == pytest.approx(7.3 / 1000, rel=1e-3)
    (tmp_path / "b").mkdir()
    dear = _verdict(tmp_path / "b", _app(serving={"size": "small", "replicas": 1}, volume_per_month=100_000,
                                         max_unit_cost=0.01), cpu_seconds=0)
    assert not dear.passed and dear.code == "UD-GATE-COST-UNIT" and "per 1,000 predictions" in dear.message


def test_the_reference_platform_prices_every_unit():
    from unified_delivery.cost import CostModel as CM

    costs = CM.from_file(ROOT / "resources" / "prices.yaml")
    assert costs.currency == "USD" and {"small", "medium", "large"} <= set(costs.prices.replica_hour)
