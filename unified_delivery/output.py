"""How front doors print: progress on a terminal, one JSON object for scripts and agents, and
the plain-text tables people read."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable

FORMATS = ("table", "json", "yaml")


def output_format(argv: list[str]) -> str:
    """The format asked for anywhere in the arguments (`--json`, `-o json|yaml|table`,
    `--output=yaml`), read before parsing so that a usage error is printed in it too."""
    fmt = "table"
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--json":
            fmt = "json"
        elif arg in ("-o", "--output") and i + 1 < len(argv):
            fmt = argv[i + 1]
        elif arg.startswith("--output="):
            fmt = arg.split("=", 1)[1]
        elif arg.startswith("-o") and len(arg) > 2:
            fmt = arg[2:]
    return fmt if fmt in FORMATS else "table"


def envelope(data: Any) -> Any:
    """Every command's machine output is one object that starts with `ok` (a command that can
    fail on its own terms, like `ud audit verify`, sets it itself)."""
    if isinstance(data, dict):
        return data if "ok" in data else {"ok": True, **data}
    return {"ok": True, "items": data}


def dump(data: Any, fmt: str) -> str:
    if fmt == "yaml":
        import yaml

        # Through JSON first: dates, paths and enums print as the JSON output prints them.
        return yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False).rstrip()
    return json.dumps(data, indent=2, default=str)


class Output:
    """Progress on a terminal and the table people read; with --json (or -o json|yaml) silence
    and one object on stdout."""

    def __init__(self, as_json: bool | str):
        self.format = as_json if isinstance(as_json, str) else ("json" if as_json else "table")
        self.as_json = self.format != "table"  # machine output: no progress
        self.started = time.monotonic()

    def progress(self, text: str) -> None:
        if not self.as_json:
            print(f"[{time.monotonic() - self.started:6.1f}s] {text}", file=sys.stderr, flush=True)

    def result(self, data: Any, text: str | Callable[[], str]) -> None:
        if self.as_json:
            print(dump(envelope(data), self.format))
        else:
            print(text() if callable(text) else text)


def table(rows: list[tuple[str, ...]]) -> str:
    """Columns padded to their widest cell, the first row a header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def status_table(data: dict) -> str:
    """One row per unit and environment; what runs outside the platform's record is marked."""
    rows = [("unit", "kind", "environment", "version", "deployed at", "url", "")]
    for u in data["units"]:
        for env, dep in u["environments"].items():
            dep = dep or {}
            mark = ""
            if dep and not dep.get("in_sync", True):
                actual = dep.get("actual_version")
                mark = f"OUT OF SYNC: runs {actual[:12] if actual else 'nothing'}"
            rows.append(
                (
                    u["name"],
                    u["kind"],
                    env,
                    (dep.get("version") or "-")[:12],
                    (dep.get("deployed_at") or "")[:19].replace("T", " "),
                    dep.get("url", ""),
                    mark,
                )
            )
    return table(rows)


def plan_text(plan: dict) -> str:
    lines = [
        f"dry run: {plan['action']} {plan['unit']} in {plan['env']} as {plan['principal']} "
        "(nothing changed)",
        f"  would change: {plan['changes']}",
    ]
    lines += [f"  gate: {g['name']} ({g['family']})" for g in plan.get("gates", [])]
    lines += [f"  blocked: {b['code']} {b['message']}" for b in plan["blocked_by"]]
    return "\n".join(lines)


def gates_text(data: dict) -> str:
    lines = [f"{data['unit']} {data['version'] or '(none)'} ({data['env']})"]
    for g in data["gates"]:
        mark = {True: "PASS", False: "FAIL", None: "----"}[g["passed"]]
        mark = "OVRD" if g["overridden"] and not g["passed"] else mark
        lines.append(
            f"  {mark}  {g['stage']:10} {g['name']:16} {g['family']:13} {g['code'] or '':28} "
            f"{g['message']}"
        )
        if g["passed"] is False and not g["overridden"]:
            lines += [f"        {line}" for line in evidence_lines(g.get("evidence") or {})]
            if g.get("remediation"):
                lines.append(f"        what to do: {g['remediation']}")
    return "\n".join(lines)


def evidence_lines(evidence: dict, limit: int = 12) -> list[str]:
    """What a failed gate found, for a person: the end of a test run's output, the findings of
    a scan, the failed expectations (`--json` has all of it, as `evidence`)."""
    out: list[str] = []
    tail = evidence.get("output_tail")
    if isinstance(tail, str) and tail.strip():
        out += tail.strip().splitlines()[-limit:]
    for key in ("findings", "secrets"):
        for item in (evidence.get(key) or [])[:5]:
            if isinstance(item, dict):
                where = ":".join(str(item[k]) for k in ("file", "filename", "line") if k in item)
                what = item.get("message") or item.get("test_name") or item.get("type") or ""
                out.append(f"{where} {what}".strip())
    for result in evidence.get("results") or []:
        if isinstance(result, dict) and result.get("passed") is False:
            out.append(str(result.get("expectation") or result.get("type") or result)[:200])
    return out[: limit + 10]
