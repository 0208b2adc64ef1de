"""`ud runs [UNIT]` and `ud logs RUN`: the platform's Dagster runs and what one of them did,
from the instance's storage (service/run_history.py)."""

from __future__ import annotations

from ..output import table


def cmd_runs(args, out) -> int:
    from ..service.run_history import runs

    data = runs(args.unit, limit=args.limit)

    def text() -> str:
        if not data["runs"]:
            return "no runs" + (f" of {args.unit}" if args.unit else "")
        rows = [("run", "job", "status", "by", "started", "s", "why")]
        rows += [
            (
                r["run_id"][:8],
                r["job"],
                r["status"],
                r["principal"] or "-",
                (r["started_at"] or "-")[:19],
                str(r["seconds"] or "-"),
                (r["reason"] or r["trigger"] or "")[:40],
            )
            for r in data["runs"]
        ]
        return table(rows)

    out.result(data, text)
    return 0


def cmd_logs(args, out) -> int:
    from ..service.run_history import run_log

    data = run_log(args.run)

    def text() -> str:
        lines = [f"{data['run_id']} {data['job']} {data['status']} (by {data['principal'] or '-'})"]
        for e in data["events"]:
            what = e["event"]
            if "check" in e:
                mark = "PASS" if e["passed"] else "FAIL"
                what = f"check {e['check']}: {mark} {e.get('code') or ''}".rstrip()
            lines.append(f"  {(e['at'] or '')[11:19]}  {e['step'] or '':40} {what}")
            if e.get("error"):
                lines += [f"      {line}" for line in e["error"].splitlines()[:8]]
        return "\n".join(lines)

    out.result(data, text)
    return 0


def register(add) -> None:
    sp = add("runs", cmd_runs, "the platform's recent Dagster runs (of a unit): status, who, why")
    sp.add_argument("unit", nargs="?", default="")
    sp.add_argument("--limit", type=int, default=20)
    sp = add("logs", cmd_logs, "what a run did: its steps, gate checks and failures")
    sp.add_argument("run", help="the run id (or its start), as `ud runs` prints it")
