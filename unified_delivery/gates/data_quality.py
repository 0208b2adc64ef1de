"""Data quality: a Great Expectations 1.x suite, run against the candidate's audit schema
before anything is published.

The suite is declared inline in the gate's settings (unit YAML, or `meta.ud.gates` in dbt):

    - type: data-quality
      settings:
        table: customer_features   # a model or seed of the selection; default: the unit's name
        expectations:
          - {type: expect_column_values_to_not_be_null, column: customer_id}
          - {type: expect_column_values_to_be_between, column: tenure_days, min_value: 0}

Each expectation is a GX expectation type (snake case) with its keyword arguments. Only
the types in EXPECTATIONS are accepted: they run as SQL on DuckDB and Postgres, and they
are checked with their arguments, and every column they name against the columns the dbt
project documents, when the definitions load, without importing GX.

GX runs here through SQLAlchemy (duckdb-engine for DuckDB), one ephemeral context per
check, every expectation in one validation so GX bundles the metrics into few queries. A
warehouse (the unit's, targets/roles.py) that is not DuckDB gives the gate its SQLAlchemy URL
through a `sqlalchemy_url()` method, so credentials stay in the target and never reach the
artifact or the ledger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from .. import dbt
from ..errors import ConfigError, UDError
from ..kinds.data.unit import DataUnit
from ..targets.roles import Warehouse
from ..units import Unit
from .base import Gate, GateContext, GateResult, GateSettings

_BOUNDS = ("min_value", "max_value", "strict_min", "strict_max")

# type -> (arguments naming one column, required arguments, optional arguments)
EXPECTATIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "expect_column_to_exist": (("column",), (), ()),
    "expect_column_values_to_not_be_null": (("column",), (), ("mostly",)),
    "expect_column_values_to_be_null": (("column",), (), ("mostly",)),
    "expect_column_values_to_be_unique": (("column",), (), ("mostly",)),
    "expect_column_values_to_be_between": (("column",), (), (*_BOUNDS, "mostly")),
    "expect_column_values_to_be_in_set": (("column",), ("value_set",), ("mostly",)),
    "expect_column_values_to_not_be_in_set": (("column",), ("value_set",), ("mostly",)),
    "expect_column_value_lengths_to_be_between": (("column",), (), (*_BOUNDS, "mostly")),
    "expect_column_min_to_be_between": (("column",), (), _BOUNDS),
    "expect_column_max_to_be_between": (("column",), (), _BOUNDS),
    "expect_column_mean_to_be_between": (("column",), (), _BOUNDS),
    "expect_column_sum_to_be_between": (("column",), (), _BOUNDS),
    "expect_column_stdev_to_be_between": (("column",), (), _BOUNDS),
    "expect_column_distinct_values_to_be_in_set": (("column",), ("value_set",), ()),
    "expect_column_distinct_values_to_contain_set": (("column",), ("value_set",), ()),
    "expect_column_proportion_of_unique_values_to_be_between": (("column",), (), _BOUNDS),
    "expect_column_unique_value_count_to_be_between": (("column",), (), _BOUNDS),
    "expect_column_pair_values_a_to_be_greater_than_b": (
        ("column_A", "column_B"),
        (),
        ("or_equal", "mostly"),
    ),
    "expect_column_pair_values_to_be_equal": (("column_A", "column_B"), (), ("mostly",)),
    "expect_compound_columns_to_be_unique": ((), ("column_list",), ("mostly",)),
    "expect_table_row_count_to_be_between": ((), (), _BOUNDS),
    "expect_table_row_count_to_equal": ((), ("value",), ()),
    "expect_table_columns_to_match_set": ((), ("column_set",), ("exact_match",)),
}
COLUMN_LISTS = ("column_list", "column_set")  # arguments naming several columns


class Expectation(BaseModel):
    """One expectation: its GX type and keyword arguments (kept as extra fields)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def columns(self) -> list[str]:
        single, _, _ = EXPECTATIONS[self.type]
        names = [self.kwargs[a] for a in single if a in self.kwargs]
        for arg in COLUMN_LISTS:
            names += list(self.kwargs.get(arg) or [])
        return [str(n) for n in names]

    def label(self) -> str:
        cols = self.columns()
        return f"{self.type}({', '.join(cols)})" if cols else self.type


class DataQualitySettings(GateSettings):
    table: str | None = None
    expectations: list[Expectation] = Field(min_length=1)
    failing_values: int = Field(default=5, ge=0, le=50)  # failing values shown per expectation


class DataQualityGate(Gate[DataQualitySettings]):
    type = "data-quality"
    family = "data-quality"
    kinds = ("data",)
    needs = (Warehouse,)
    Settings = DataQualitySettings

    @property
    def table(self) -> str:
        return self.settings.table or self.unit.name

    def validate_for(self, unit: Unit) -> None:
        assert isinstance(unit, DataUnit)  # the registry builds it for data units only
        if unit.repository:  # its dbt files are read at the commit a build checks out
            return
        manifest = dbt.ensure_manifest(unit.project)
        nodes = {
            manifest["nodes"][u]["name"]: manifest["nodes"][u]
            for u in dbt.select(manifest, unit.select, Path(unit.project))
        }
        if self.table not in nodes:
            self._refuse(
                "settings.table",
                f"{self.table!r} is not a model or seed of the selection {unit.select!r}",
                f"name one of: {', '.join(sorted(nodes))}",
            )
        documented = list(nodes[self.table].get("columns") or {})
        for i, exp in enumerate(self.settings.expectations):
            where = f"settings.expectations[{i}]"
            if exp.type not in EXPECTATIONS:
                self._refuse(
                    f"{where}.type",
                    f"{exp.type!r} is not a supported expectation type",
                    f"use one of: {', '.join(sorted(EXPECTATIONS))}",
                )
            single, required, optional = EXPECTATIONS[exp.type]
            allowed = (*single, *required, *optional)
            for arg in exp.kwargs:
                if arg not in allowed:
                    self._refuse(
                        f"{where}.{arg}",
                        f"is not an argument of {exp.type}",
                        f"{exp.type} takes: {', '.join(allowed) or 'no arguments'}",
                    )
            for arg in (*single, *required):
                if arg not in exp.kwargs:
                    self._refuse(
                        f"{where}.{arg}",
                        f"{exp.type} needs `{arg}`",
                        f"add `{arg}` to the expectation",
                    )
            for arg in [a for a in (*single, *COLUMN_LISTS) if a in exp.kwargs]:
                value = exp.kwargs[arg]
                names = value if arg in COLUMN_LISTS and isinstance(value, list) else [value]
                missing = [n for n in names if documented and n not in documented]
                if missing:
                    self._refuse(
                        f"{where}.{arg}",
                        f"{missing[0]!r} is not a column of {self.table}",
                        f"documented columns of {self.table}: {', '.join(documented)}",
                    )

    def _refuse(self, field: str, problem: str, remediation: str) -> None:
        raise ConfigError(
            "UD-CONFIG-GATE",
            f"unit {self.unit.name}: gate {self.name!r} field {field}: {problem}",
            remediation,
        )

    def evaluate(self, ctx: GateContext) -> GateResult:
        if ctx.artifact is None or not ctx.artifact.location:
            raise UDError(
                "UD-GATE-DQ-ERROR",
                f"unit {ctx.unit.name}: the candidate has no audit schema",
                "rebuild the candidate",
            )
        schema, n_values = ctx.artifact.location, self.settings.failing_values
        ctx.log(f"running {len(self.settings.expectations)} expectations on {schema}.{self.table}")
        results = run_suite(
            connection(ctx),
            schema,
            self.table,
            self.settings.expectations,
            n_values,
            f"{ctx.unit.name}.{self.name}",
        )
        errors = [
            (exp, r["error"])
            for exp, r in zip(self.settings.expectations, results)
            if r.get("error")
        ]
        if errors:
            exp, msg = errors[0]
            raise UDError(
                "UD-GATE-DQ-ERROR",
                f"unit {ctx.unit.name}: {exp.label()} could not be evaluated on "
                f"{schema}.{self.table}: {msg[:300]}",
                "check that the table and columns exist in the candidate and the arguments are "
                "valid",
            )
        failed = [r for r in results if not r["passed"]]
        meta = {
            "schema": schema,
            "table": self.table,
            "expectations": len(results),
            "failed": len(failed),
            "results": results,
        }
        if failed:
            summary = "; ".join(_describe(r) for r in failed[:5])
            return GateResult(
                False,
                "UD-GATE-DQ-FAILED",
                f"{len(failed)} of {len(results)} expectations failed on {self.table}: {summary}",
                "fix the data or the dbt model so the expectations hold; nothing was published",
                meta,
            )
        return GateResult(
            True,
            "UD-GATE-DQ-PASSED",
            f"{len(results)} expectations passed on {schema}.{self.table}",
            "",
            meta,
        )


@runtime_checkable
class SqlalchemyWarehouse(Protocol):
    """A warehouse that is not DuckDB: it says how GX connects, credentials included."""

    def sqlalchemy_url(self) -> str: ...


def connection(ctx: GateContext) -> tuple[str, dict[str, Any]]:
    """A SQLAlchemy URL and engine arguments for the warehouse the candidate was written to."""
    warehouse = ctx.role(Warehouse)
    if isinstance(warehouse, SqlalchemyWarehouse):
        return warehouse.sqlalchemy_url(), {}
    path = ctx.artifact.details.get("warehouse") if ctx.artifact else None
    if not path:
        raise UDError(
            "UD-GATE-DQ-ERROR",
            f"unit {ctx.unit.name}: the candidate does not say which warehouse holds it",
            "rebuild the candidate",
        )
    return f"duckdb:///{path}", {"connect_args": {"read_only": True}}


def _buffer_rows(conn, cursor, statement, parameters, context, executemany) -> None:
    # GX returns a query's result after closing its connection; a DuckDB connection drops
    # unfetched rows then (psycopg2 has them already), so fetch them while it is open.
    from sqlalchemy.engine.cursor import FullyBufferedCursorFetchStrategy

    if cursor.description is not None:
        context.cursor_fetch_strategy = FullyBufferedCursorFetchStrategy(cursor)


def run_suite(
    conn: tuple[str, dict[str, Any]],
    schema: str,
    table: str,
    expectations: list[Expectation],
    failing_values: int,
    name: str,
) -> list[dict[str, Any]]:
    """Validate `schema.table` against the expectations in one GX validation; one result per
    expectation, in their order (`error` set when GX could not evaluate it)."""
    import great_expectations as gx

    # GX re-exports the pydantic its models use (v1) by a star import its __all__ leaves out.
    from great_expectations.compatibility.pydantic import (
        ValidationError as GXValidationError,  # pyright: ignore[reportPrivateImportUsage]
    )
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )
    from great_expectations.datasource.fluent.interfaces import TestConnectionError
    from sqlalchemy import event, make_url

    url, engine_kwargs = conn
    # Everything in memory, no docs site, no progress bars on the run's log, no telemetry.
    context = gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            progress_bars=ProgressBarsConfig(globally=False),
            analytics_enabled=False,
        ),
    )
    suite = gx.ExpectationSuite(name=name)
    for i, exp in enumerate(expectations):
        cls = getattr(gx.expectations, "".join(p.capitalize() for p in exp.type.split("_")))
        try:
            suite.add_expectation(cls(**exp.kwargs, meta={"ud_index": i}))
        except GXValidationError as err:
            raise UDError(
                "UD-GATE-DQ-ERROR",
                f"{name}: expectations[{i}] {exp.label()}: {err.errors()[0]['msg']}",
                "fix the expectation's arguments in the gate settings",
            ) from None
    suite = context.suites.add(suite)
    try:
        # `kwargs` is a documented field of GX's SQLDatasource its generated stub leaves out.
        source = context.data_sources.add_sql(
            "warehouse",
            connection_string=url,
            kwargs=engine_kwargs,  # pyright: ignore[reportCallIssue]
        )
    except TestConnectionError as err:
        password = make_url(url).password
        cause = str(err).replace(password, "***") if password else str(err)
        raise UDError(
            "UD-GATE-DQ-ERROR",
            f"{name}: cannot connect to the warehouse: {cause[:300]}",
            "check the warehouse the candidate was written to",
        ) from None
    engines = [source.get_engine(), source.get_execution_engine().engine]
    event.listen(engines[1], "after_cursor_execute", _buffer_rows)
    if engines[1].dialect.name == "duckdb":
        # duckdb-engine cannot reflect columns under SQLAlchemy 2.1; GX then reads one row of
        # the bare table name, which the search path resolves to the audit schema.
        path = schema.replace("'", "''")
        event.listen(
            engines[1], "connect", lambda dbapi, _: dbapi.execute(f"SET search_path = '{path}'")
        )
        engines[1].dispose()  # connections made before the listener lack the search path
    try:
        try:
            asset = source.add_table_asset(table, table_name=table, schema_name=schema)
        except TestConnectionError:
            raise UDError(
                "UD-GATE-DQ-ERROR",
                f"{name}: table {schema}.{table} cannot be read",
                "check that the candidate was built and the table is in the selection",
            ) from None
        batch = asset.add_batch_definition_whole_table("whole table")
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        outcome = validation.run(
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": failing_values}
        )
    finally:
        # Pooled connections would keep the DuckDB file open read-only in this process,
        # and the target's read-write connection for the deploy would then be refused.
        for engine in engines:
            engine.dispose()
    # A result without its expectation's configuration is left out: reported as not evaluated.
    by_index = {
        int(r.expectation_config.meta["ud_index"]): r
        for r in outcome.results
        if r.expectation_config is not None
    }
    return [_result(exp, by_index.get(i), failing_values) for i, exp in enumerate(expectations)]


def _result(exp: Expectation, r: Any, failing_values: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "expectation": exp.type,
        "columns": exp.columns(),
        "passed": bool(r and r.success),
    }
    if r is None:
        return {**out, "error": "GX returned no result for it"}
    error = _exception(r.exception_info)
    if error:
        return {**out, "error": error}
    res = r.result or {}
    if "unexpected_count" in res:
        out["unexpected_count"] = int(res["unexpected_count"] or 0)
        out["unexpected_percent"] = round(float(res.get("unexpected_percent") or 0.0), 4)
        out["failing_values"] = [
            _plain(v) for v in (res.get("partial_unexpected_list") or [])[:failing_values]
        ]
    if "observed_value" in res:
        out["observed_value"] = _plain(res["observed_value"])
    return out


def _exception(info: dict | None) -> str | None:
    """GX reports a failure to evaluate inside the result, either flat or per metric."""
    if not info:
        return None
    entries = (
        [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    )
    messages = [
        str(e.get("exception_message") or "error") for e in entries if e.get("raised_exception")
    ]
    return messages[0] if messages else None


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _describe(r: dict[str, Any]) -> str:
    what = f"{r['expectation']}({', '.join(r['columns'])})" if r["columns"] else r["expectation"]
    if "unexpected_count" in r:
        return f"{what}: {r['unexpected_count']} unexpected ({r['unexpected_percent']:.2f}%)"
    return f"{what}: observed {r.get('observed_value')!r}"


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
