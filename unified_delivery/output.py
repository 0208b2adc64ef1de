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
            elif dep.get("soak_until"):
                mark = f"in soak until {dep['soak_until'][:19].replace('T', ' ')}"
            elif dep.get("runtime") == "container" and dep.get("image"):
                name, _, digest = str(dep["image"]).rpartition("/")[2].partition("@")
                mark = f"container {name}@{digest[:19]}"  # sha256: and 12 hex digits
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


class RunStream:
    """A run as it goes, one line per thing a person waits on: the build, each gate with its
    result and time, the deploy, and the end (`ud promote`, `ud rollback`, `ud watch`). Fed
    the instance's event log entries (runner.watch)."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.started: dict[str, float] = {}
        self.checks: dict[str, tuple[str, bool, str]] = {}
        self.planned: list[str] = []
        self.done: set[str] = set()

    def __call__(self, entry: Any) -> None:
        event = entry.dagster_event
        kind, step = event.event_type.name, event.step_key or ""
        if kind == "ASSET_MATERIALIZATION_PLANNED" and event.asset_key:
            self.planned.append(event.asset_key.to_user_string())
        elif kind == "RUN_ENQUEUED":
            self.say("queued: the instance's daemon launches it when the run queue allows")
        elif kind == "RUN_START":
            self.say(f"run {entry.run_id[:8]} started")
        elif kind == "STEP_START":
            self.started[step] = entry.timestamp
        elif kind == "ASSET_CHECK_EVALUATION":
            check = event.event_specific_data
            code = check.metadata.get("code")
            self.checks[step] = (
                check.check_name,
                check.passed,
                f"{getattr(code, 'value', code) or ''} {check.description or ''}".strip(),
            )
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            seconds = entry.timestamp - self.started.get(step, entry.timestamp)
            if step in self.checks:
                name, passed, text = self.checks.pop(step)
                mark = "PASS" if passed else "FAIL"
                text = text if len(text) <= 110 else text[:109] + "…"
                self.say(f"  gate {name:<16} {mark}  {text}  ({seconds:.1f} s)")
            elif kind == "STEP_FAILURE":
                data = event.step_failure_data
                error = data.error
                message = (
                    data.user_failure_data.description
                    if data.user_failure_data and data.user_failure_data.description
                    else (error.message.strip().splitlines() or [""])[0]
                    if error
                    else ""
                )
                self.say(f"  {step} failed ({seconds:.1f} s): {message[:140]}")
            else:
                self.say(f"  {_step_name(step)} done ({seconds:.1f} s)")
        elif kind == "ASSET_MATERIALIZATION":
            meta = event.event_specific_data.materialization.metadata
            version = meta.get("version")
            version = getattr(version, "value", version)
            key = event.asset_key.to_user_string() if event.asset_key else step
            self.done.add(key)
            self.say(f"  {key}: {str(version)[:12] if version else 'materialized'}")
        elif kind in ("RUN_SUCCESS", "RUN_FAILURE", "RUN_CANCELED"):
            for key in self.planned:
                if key not in self.done and not key.endswith("/candidate"):
                    self.say(f"  {key}: not deployed (the run stopped before it)")
            self.say(f"run {entry.run_id[:8]} {kind[4:].lower()}")


def _step_name(step: str) -> str:
    """`api__candidate` -> build api, `api__staging` -> deploy api to staging."""
    unit, _, stage = step.partition("__")
    if stage == "candidate":
        return f"build {unit}"
    if stage and "__" not in stage:
        return f"deploy {unit} to {stage}"
    return step
