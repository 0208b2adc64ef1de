"""dbt's failures told by their cause: the file and line of a compile error, the relation a
model reads that does not exist, instead of "fix the dbt models"."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UDError
from .redaction import redact_text

if TYPE_CHECKING:
    from .kinds.data.unit import DataUnit
    from .targets.dbt_wap import DbtRun

# "Compilation Error in model stg_orders (models/staging/stg_orders.sql)"
FILE_RE = re.compile(r"\(([^()\s]+\.(?:sql|yml|yaml|csv|py))\)")
JINJA_LINE_RE = re.compile(r"\bline (\d+)\b")
SQL_LINE_RE = re.compile(r"LINE (\d+):\s?(.*)")
MISSING_RE = (
    re.compile(r"Table with name (\S+?) does not exist", re.I),  # DuckDB
    re.compile(r'relation "([^"]+)" does not exist', re.I),  # Postgres
)
PARSE_MARKERS = ("Parser Error", "Compilation Error", "Parsing Error", "syntax error")


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(redact_text(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def explain(output: str) -> str | None:
    """`<file> line N` (or `<file>`) of the first error dbt printed, None when it names none."""
    found = FILE_RE.search(output)
    if not found:
        return None
    after = output[found.end() : found.end() + 2000]
    line = JINJA_LINE_RE.search(after)
    return found.group(1) + (f" line {line.group(1)}" if line else "")


def source_line(node: dict, message: str) -> int | None:
    """The line of the model's own file that a warehouse's `LINE n: <text>` points at: the
    warehouse counts lines of the compiled statement, so the text is looked up in the file."""
    found = SQL_LINE_RE.search(message)
    if not found:
        return None
    text = found.group(2).strip()
    raw = node.get("raw_code") or ""
    if text:
        for i, line in enumerate(raw.splitlines(), start=1):
            if text[:40] and text[:40] in line:
                return i
    return None


def missing_relation(message: str) -> str | None:
    for pattern in MISSING_RE:
        found = pattern.search(message)
        if found:
            return found.group(1)
    return None


def _named(relation: str, manifest: dict) -> str:
    """A missing relation as the project names it: `source raw.payments ("w"."raw"."payments")`."""
    last = relation.strip('"').split(".")[-1].strip('"').lower()
    for src in (manifest.get("sources") or {}).values():
        if str(src.get("identifier") or src.get("name", "")).lower() == last:
            return f"source {src['source_name']}.{src['name']} ({src.get('relation_name')})"
    return relation


def cause(node: dict, message: str, manifest: dict | None = None) -> tuple[str, str]:
    """(code, remediation) for one failed node's dbt message."""
    path = node.get("original_file_path") or node.get("unique_id", "the model")
    relation = missing_relation(message)
    if relation:
        relation = _named(relation, manifest or {})
        return (
            "UD-DATA-MISSING-PARENT",
            f"{path} reads {relation}, which is not in the warehouse: load it (a source dbt "
            "does not build), or select the model that builds it",
        )
    if any(marker in message for marker in PARSE_MARKERS):
        line = source_line(node, message)
        where = f"{path} line {line}" if line else (explain(message) or path)
        return "UD-DATA-COMPILE-ERROR", f"fix {where}: {_reason(message)}"
    return "UD-DATA-BUILD-FAILED", f"fix {path}: {_reason(message)}"


def _reason(message: str) -> str:
    """The warehouse's own words: without dbt's "Runtime Error in model x (file)" before them
    and the compiled statement's `LINE n:` after them (the file and line are said already)."""
    text = re.sub(r"^.*?Error in \w+ \S+ \([^)]*\)\s*", "", message, count=1, flags=re.S)
    text = SQL_LINE_RE.split(text)[0]
    return _one_line(text or message, 200)


def build_failure(
    unit: DataUnit, schema: str, run: DbtRun, failed: list[dict[str, Any]], warehouse: str
) -> UDError:
    """The refusal of a build: its first failed node's real cause, the others named."""
    nodes = run.manifest.get("nodes", {})
    if not failed:
        where = explain(run.output)
        return UDError(
            "UD-DATA-BUILD-FAILED",
            f"unit {unit.name}: dbt build into {schema} failed: "
            f"{_one_line(run.output[-600:], 600)}",
            (f"fix {where}; " if where else "")
            + f"nothing was published; dbt's log: {Path(run.work) / 'dbt.log'}",
            exit_code=5,
        )
    first = failed[0]
    message = first.get("message") or ""
    code, remedy = cause(nodes.get(first["unique_id"], {}), message, run.manifest)
    detail = "; ".join(
        f"{r['unique_id']}: {_one_line(r.get('message') or '', 200)}" for r in failed[:3]
    )
    if code == "UD-DATA-MISSING-PARENT":
        remedy += f" ({warehouse})"
    return UDError(
        code,
        f"unit {unit.name}: dbt build into {schema} failed: {detail}",
        f"{remedy}; nothing was published; dbt's log: {Path(run.work) / 'dbt.log'}",
        exit_code=5,
    )
