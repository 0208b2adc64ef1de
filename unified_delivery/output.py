"""How front doors print: progress on a terminal, one JSON object for scripts and agents, and
the plain-text tables people read."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable


class Output:
    """Progress on a terminal, silence and one JSON object with --json."""

    def __init__(self, as_json: bool):
        self.as_json = as_json
        self.started = time.monotonic()

    def progress(self, text: str) -> None:
        if not self.as_json:
            print(f"[{time.monotonic() - self.started:6.1f}s] {text}", file=sys.stderr, flush=True)

    def result(self, data: Any, text: str | Callable[[], str]) -> None:
        if self.as_json:
            print(json.dumps(data, indent=2, default=str))
        else:
            print(text() if callable(text) else text)


def table(rows: list[tuple[str, ...]]) -> str:
    """Columns padded to their widest cell, the first row a header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def status_table(data: dict) -> str:
    rows = [("unit", "kind", "environment", "version", "deployed at")]
    for u in data["units"]:
        for env, dep in u["environments"].items():
            rows.append(
                (
                    u["name"],
                    u["kind"],
                    env,
                    (dep or {}).get("version", "-")[:12] or "-",
                    (dep or {}).get("deployed_at", "")[:19].replace("T", " "),
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
    return "\n".join(lines)
