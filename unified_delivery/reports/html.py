"""One self-contained HTML file per report: inline CSS and SVG charts, no script and no
external resource, so it opens anywhere without a network (and a mail gateway keeps it)."""

from __future__ import annotations

from html import escape

from .render import NO_DATA, Table, ledger_warning

CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2430;max-width:1100px}
h1{font-size:1.5rem;margin-bottom:.2rem}.sub{color:#5b6270;margin-top:0}
.warn{background:#fde8e8;border:1px solid #c0392b;color:#7b1d14;padding:.8rem 1rem;
border-radius:4px;font-weight:600}
.ok{color:#1e7b3c}.charts{display:flex;flex-wrap:wrap;gap:1.5rem;margin:1rem 0}
table{border-collapse:collapse;margin:.4rem 0 1.6rem;font-size:.9rem}
th,td{border:1px solid #d5d9e0;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#eef1f6}h2{font-size:1.1rem;margin-top:1.4rem}
"""


def _table(t: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in t["headers"])
    body = (
        "".join(
            "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in t["rows"]
        )
        or f'<tr><td colspan="{len(t["headers"])}">{NO_DATA}</td></tr>'
    )
    return (
        f"<h2>{escape(t['title'])}</h2><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def page(title: str, subtitle: str, ledger: dict, charts: list[str], tables: list[Table]) -> str:
    warning = ledger_warning(ledger)
    status = (
        f'<p class="warn">{escape(warning)}</p>'
        if warning
        else f'<p class="ok">Ledger verified: {ledger.get("count")} entries, hash chain intact.</p>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f'{status}<h1>{escape(title)}</h1><p class="sub">{escape(subtitle)}</p>'
        f'<div class="charts">{"".join(charts)}</div>'
        f"{''.join(_table(t) for t in tables)}</body></html>\n"
    )
