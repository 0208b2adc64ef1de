"""`ud report dora|cost|audit [--since DATE] [--until DATE] [--json] [--html PATH]`: DORA
metrics, cost showback or audit activity from the ledger, as a table, one JSON object, or
one self-contained HTML file with charts. The ledger is verified first; a broken chain is
the first thing the report says."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from ..errors import UDError

KINDS = ("dora", "cost", "audit")
TITLES = {"dora": "DORA metrics", "cost": "Cost showback", "audit": "Audit activity"}


def _date(flag: str, text: str) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UDError(
            "UD-USAGE", f"{flag} {text!r} is not a date", "use an ISO date or time like 2026-11-01"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def build(what: str, units: dict, ledger, win, env: str = "production") -> dict:
    """The report as data: the ledger's verification first, then the figures."""
    from ..reports import audit, cost, dora
    from ..reports.period import parse_ts
    from ..reports.render import ledger_warning

    check = ledger.verify().to_dict()
    entries = (
        ledger.entries()
    )  # all of it: a deploy's candidate may predate the window, its rollback follow it
    head = {"ok": True, "report": what, "ledger": check}
    if warning := ledger_warning(check):
        head["warning"] = warning
    if what == "dora":
        return {**head, **dora.report(entries, win, env, units)}
    if what == "cost":
        return {**head, **cost.report(entries, win, units)}
    from .audit import evidence

    changes = [c for c in evidence(ledger, win.since) if parse_ts(c["at"]) < win.until]
    return {**head, **audit.report(entries, win), "changes": changes}


def tables_and_charts(data: dict) -> tuple[list, list[str]]:
    from ..reports import charts, render

    what = data["report"]
    tables = {"dora": render.dora_tables, "cost": render.cost_tables, "audit": render.audit_tables}[
        what
    ](data)
    return tables, {
        "dora": charts.dora_charts,
        "cost": charts.cost_charts,
        "audit": charts.audit_charts,
    }[what](data)


def subtitle(data: dict) -> str:
    w = data["window"]
    where = f" in {data['env']}" if "env" in data else ""
    return f"{w['since'][:19]} to {w['until'][:19]} UTC ({w['days']:g} days){where}"


def cmd_report(args, out) -> int:
    from ..reports import html, render, window
    from ..service import read_catalog

    until = _date("--until", args.until)
    win = window(_date("--since", args.since), until)
    if win.since >= win.until:
        raise UDError(
            "UD-USAGE",
            f"--since {win.since.isoformat()} is not before --until {win.until.isoformat()}",
            "give a --since earlier than --until",
        )
    catalog = read_catalog()  # the platform's units and ledger; loaded only if the catalog is stale
    envs = {e for u in catalog.units for e in u["environments"]}
    if args.what == "dora" and args.env not in envs:
        raise UDError(
            "UD-UNKNOWN-ENV",
            f"no unit has an environment {args.env!r}",
            f"use one of: {', '.join(sorted(envs))}",
        )
    ledger = catalog.ledger()
    out.progress(f"verifying and reading the ledger ({ledger.count()} entries)")
    units = {u["name"]: {"team": u["team"], "kind": u["kind"]} for u in catalog.units}
    data = build(args.what, units, ledger, win, args.env)
    if "warning" in data:
        out.progress(data["warning"])
    tables, charts = tables_and_charts(data)
    if args.html:
        path = Path(args.html).expanduser().resolve()
        out.progress(f"writing {path}")
        try:
            path.write_text(
                html.page(TITLES[args.what], subtitle(data), data["ledger"], charts, tables)
            )
        except OSError as exc:
            raise UDError(
                "UD-REPORT-HTML",
                f"cannot write the {args.what} report to {path}: {exc.strerror}",
                "give --html a path in a folder that exists and is writable",
            ) from None
        data["html"] = str(path)

    def text() -> str:
        lines = [w for w in (data.get("warning"),) if w]
        lines += [f"{TITLES[args.what]}: {subtitle(data)}", "", render.text(tables)]
        if args.html:
            lines += ["", f"wrote {data['html']}"]
        return "\n".join(lines)

    out.result(data, text)
    return 0


def register(add) -> None:
    sp = add("report", cmd_report, "DORA metrics, cost showback or audit activity from the ledger")
    sp.add_argument("what", choices=KINDS)
    sp.add_argument(
        "--since", default="", help="ISO date or time (default: 30 days before --until)"
    )
    sp.add_argument("--until", default="", help="ISO date or time, exclusive (default: now)")
    sp.add_argument("--env", default="production", help="dora: the environment whose deploys count")
    sp.add_argument(
        "--html",
        default="",
        metavar="PATH",
        help="also write one self-contained HTML file with charts",
    )
