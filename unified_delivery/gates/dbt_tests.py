"""The dbt tests of a data unit's selection, run against the audit schema the candidate
was written to, before anything is published."""

from __future__ import annotations

import json

from ..errors import UDError
from ..kinds.data.unit import DataUnit
from ..targets.roles import Warehouse
from .base import Gate, GateContext, GateResult, GateSettings


class DbtTestsSettings(GateSettings):
    fail_on_warn: bool = False


class DbtTestsGate(Gate[DbtTestsSettings]):
    type = "dbt-tests"
    family = "dbt-tests"
    kinds = ("data",)
    needs = (Warehouse,)
    Settings = DbtTestsSettings

    def evaluate(self, ctx: GateContext) -> GateResult:
        unit, artifact = ctx.unit, ctx.artifact
        assert isinstance(unit, DataUnit)  # the registry builds it for data units only
        if artifact is None:
            raise UDError(
                "UD-GATE-DBT-TESTS-ERROR",
                f"unit {unit.name}: version {ctx.version} has no audit schema to test",
                "rebuild the candidate",
            )
        results = ctx.role(Warehouse).run_tests(unit, artifact, log=ctx.log)
        bad = [
            r
            for r in results
            if r["status"] in ("fail", "error")
            or (self.settings.fail_on_warn and r["status"] == "warn")
        ]
        meta = {
            "tests": len(results),
            "failed": len(bad),
            "schema": artifact.location,
            "failures": [
                {
                    "test": r["name"],
                    "status": r["status"],
                    "failures": r.get("failures"),
                    "message": (r.get("message") or "")[:300],
                    "rows": r.get("rows") or [],
                }
                for r in bad[:20]
            ],
        }
        if not results:
            return GateResult(
                False,
                "UD-GATE-DBT-NO-TESTS",
                f"the selection {unit.select!r} has no dbt tests",
                "add tests to the models of the selection (schema.yml)",
                meta,
            )
        if bad:
            names = ", ".join(r["name"] for r in bad[:5])
            first = bad[0]
            rows = first.get("rows") or []
            shown = "; ".join(json.dumps(row, default=str)[:160] for row in rows[:3])
            failing = (
                f"; {first['name']} failed on {first.get('failures')} row(s), e.g. {shown}"
                if rows
                else ""
            )
            return GateResult(
                False,
                "UD-GATE-DBT-TESTS-FAILED",
                f"{len(bad)} of {len(results)} dbt tests failed: {names}{failing}",
                "fix the data or the model so the tests pass (the failing rows are stored in "
                f"{artifact.location}_dbt_test__audit); nothing was published",
                meta,
            )
        return GateResult(
            True, "UD-GATE-DBT-TESTS-PASSED", f"{len(results)} dbt tests passed", "", meta
        )
