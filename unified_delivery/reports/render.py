"""Reports as tables (title, headers, rows of strings), and those tables as terminal text or
markdown. The HTML page and the Dagster scorecard use the same tables, so every surface
shows the same figures in the same words."""

from __future__ import annotations

from typing import Any

NO_DATA = "no data"
Table = dict[str, Any]  # {"title": str, "headers": [str], "rows": [[str]]}


def number(v: float | None) -> str:
    return NO_DATA if v is None else f"{v:g}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return NO_DATA
    for limit, div, unit in ((120, 1, "s"), (7200, 60, "min"), (172800, 3600, "h")):
        if seconds < limit:
            return f"{seconds / div:.0f} {unit}" if div == 1 else f"{seconds / div:.1f} {unit}"
    return f"{seconds / 86400:.1f} d"


def rate(v: float | None) -> str:
    return NO_DATA if v is None else f"{v * 100:.0f}%"


def frequency(v: float | None) -> str:
    return NO_DATA if v is None else f"{v:.3g}/day"


def money(v: float, currency: str) -> str:
    return f"{v:,.4f} {currency}"


def _dora_row(r: dict) -> list[str]:
    return [
        str(r["deployments"]),
        frequency(r["deployment_frequency"]),
        duration(r["lead_time_seconds"]),
        rate(r["change_failure_rate"]),
        duration(r["time_to_restore_seconds"]),
    ]


DORA_HEADERS = ["deploys", "frequency", "lead time", "change failure rate", "time to restore"]


def dora_tables(report: dict) -> list[Table]:
    return [
        {
            "title": f"DORA by unit ({report['env']})",
            "headers": ["unit", "team", "kind", *DORA_HEADERS],
            "rows": [[u["unit"], u["team"], u["kind"], *_dora_row(u)] for u in report["units"]],
        },
        {
            "title": "DORA by team",
            "headers": ["team", *DORA_HEADERS],
            "rows": [[t["team"], *_dora_row(t)] for t in report["teams"]],
        },
        {
            "title": "DORA by kind",
            "headers": ["kind", *DORA_HEADERS],
            "rows": [[k["kind"], *_dora_row(k)] for k in report["kinds"]],
        },
        {
            "title": "DORA for the platform",
            "headers": DORA_HEADERS,
            "rows": [_dora_row(report["platform"])],
        },
    ]


def cost_tables(report: dict) -> list[Table]:
    tables = [
        {
            "title": "Spend by team",
            "headers": ["team", "spend", "of which previews", "costed entries", "units"],
            "rows": [
                [
                    t["team"],
                    money(t["spend"], t["currency"]),
                    money(t.get("preview_spend", 0.0), t["currency"]),
                    str(t["costed_entries"]),
                    ", ".join(u["unit"] for u in t["units"]),
                ]
                for t in report["teams"]
            ],
        },
        {
            "title": "Spend by unit",
            "headers": ["unit", "team", "spend", "builds", "deploys", "previews"],
            "rows": [
                [
                    u["unit"],
                    u["team"],
                    money(u["spend"], u["currency"]),
                    money(u["by_action"].get("candidate", 0.0), u["currency"]),
                    money(u["by_action"].get("promotion", 0.0), u["currency"]),
                    money(u["by_action"].get("preview", 0.0), u["currency"]),
                ]
                for u in report["units"]
            ],
        },
    ]
    if report["invalid"]:
        tables.append(
            {
                "title": "Costs left out (unreadable)",
                "headers": ["seq", "unit", "action", "why"],
                "rows": [
                    [str(i["seq"]), i["unit"] or "-", i["action"], i["reason"]]
                    for i in report["invalid"]
                ],
            }
        )
    return tables


def audit_tables(report: dict) -> list[Table]:
    def gates(c: dict) -> str:
        return ", ".join(
            f"{g['gate']}={g['code']}" + (" (overridden)" if g.get("overridden") else "")
            for g in c["gates"]
        )

    return [
        {
            "title": "Production changes",
            "headers": [
                "seq",
                "at",
                "action",
                "unit",
                "version",
                "from",
                "principal",
                "reason",
                "gates",
                "approvals",
            ],
            "rows": [
                [
                    str(c["seq"]),
                    c["at"][:19].replace("T", " "),
                    c["action"],
                    c["unit"],
                    (c["version"] or "-")[:12],
                    (c["from_version"] or "-")[:12],
                    c["principal"],
                    c["reason"],
                    gates(c),
                    ", ".join(a["principal"] for a in c["approvals"]),
                ]
                for c in report["changes"]
            ],
        },
        {
            "title": "Activity by unit",
            "headers": ["unit", "entries", "by action"],
            "rows": [
                [a["unit"], str(a["total"]), ", ".join(f"{k} {v}" for k, v in a["actions"].items())]
                for a in report["activity"]
            ],
        },
        {
            "title": "Refusals, overrides, forgeries and failures",
            "headers": ["seq", "at", "action", "unit", "principal", "code", "message"],
            "rows": [
                [
                    str(n["seq"]),
                    n["at"][:19].replace("T", " "),
                    n["action"],
                    n["unit"] or "-",
                    n["principal"],
                    n["code"] or "-",
                    n["message"],
                ]
                for n in report["notable"]
            ],
        },
    ]


def text(tables: list[Table]) -> str:
    out = []
    for t in tables:
        rows = [t["headers"], *t["rows"]]
        widths = [max(len(r[i]) for r in rows) for i in range(len(t["headers"]))]
        out += [
            "",
            t["title"],
            *("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows),
        ]
        if not t["rows"]:
            out.append(f"({NO_DATA})")
    return "\n".join(out[1:])


def _md_cell(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ") or " "


def markdown(table: Table) -> str:
    lines = [
        f"**{table['title']}**",
        "",
        "| " + " | ".join(map(_md_cell, table["headers"])) + " |",
        "|" + "---|" * len(table["headers"]),
    ]
    lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in table["rows"]]
    return "\n".join(lines if table["rows"] else [*lines[:2], f"_{NO_DATA}_"])


def ledger_warning(ledger: dict) -> str | None:
    """The first thing a report over a tampered ledger says."""
    if ledger.get("ok"):
        return None
    return (
        f"WARNING: the ledger is BROKEN at entry {ledger.get('first_bad_seq')}: "
        f"{ledger.get('reason')}; the figures below come from entries that may have been changed"
    )
