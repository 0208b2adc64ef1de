"""`ud report dora|cost|audit [--since DATE] [--until DATE] [--json] [--html PATH]`: DORA
metrics, cost showback or audit activity from the ledger, as a table, one JSON object, or
one self-contained HTML file with charts. The ledger is verified first; a broken chain is
the first thing the report says."""

from __future__ import annotations

from pathlib import Path

from ..errors import UDError
from ..service.reports import REPORTS

TITLES = {"dora": "DORA metrics", "cost": "Cost showback", "audit": "Audit activity"}


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
    from ..reports import html, render
    from ..service import read_catalog
    from ..service.reports import report_of, report_window

    win = report_window(args.since, args.until)
    catalog = read_catalog()  # the platform's units and ledger; loaded only if the catalog is stale
    ledger = catalog.ledger()
    out.progress(f"verifying and reading the ledger ({ledger.count()} entries)")
    units = {
        u["name"]: {"team": u["team"], "kind": u["kind"], "environments": u["environments"]}
        for u in catalog.units
    }
    data = report_of(units, ledger, args.what, win, args.env)
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
    sp.add_argument("what", choices=REPORTS)
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
