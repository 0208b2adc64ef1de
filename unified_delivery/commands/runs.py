"""`ud runs [UNIT]`, `ud logs RUN` and `ud watch RUN`: the platform's Dagster runs, what one of
them did, and one followed to its end, from the instance's storage (service/run_history.py)."""

from __future__ import annotations

from ..output import table


def cmd_runs(args, out) -> int:
    from ..service.run_history import runs

    data = runs(args.unit, limit=args.limit)

    def text() -> str:
        if not data["runs"]:
            return "no runs" + (f" of {args.unit}" if args.unit else "")
        rows = [("run", "what", "status", "by", "started", "s", "why")]
        rows += [
            (
                r["run_id"][:8],
                r["what"],
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
        lines = [
            f"{data['run_id']} {data['what']} {data['status']} (by {data['principal'] or '-'})"
        ]
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


def cmd_watch(args, out) -> int:
    from ..output import RunStream
    from ..service.run_history import watch

    data = watch(args.run, on_event=RunStream(out.progress))
    outcome = data.pop("outcome")
    if outcome.error is not None:
        raise outcome.error
    out.result(data, f"run {data['run_id'][:8]} ({data['what']}) {data['status']}")
    return 0


def register(add) -> None:
    sp = add("runs", cmd_runs, "the platform's recent Dagster runs (of a unit): status, who, why")
    sp.add_argument("unit", nargs="?", default="")
    sp.add_argument("--limit", type=int, default=20)
    sp = add("logs", cmd_logs, "what a run did: its steps, gate checks and failures")
    sp.add_argument("run", help="the run id (or its start), as `ud runs` prints it")
    sp = add("watch", cmd_watch, "follow a run to its end: its gates, deploy and outcome")
    sp.add_argument("run", help="the run id (or its start), as `ud promote --no-wait` prints it")
