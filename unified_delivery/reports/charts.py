"""Bar charts as inline SVG: no plotting library, no network, the same picture in the HTML
report and (as a data URI) in the Dagster UI's markdown."""

from __future__ import annotations

import base64
from html import escape
from typing import Callable

from . import render

ROW, LABEL_W, VALUE_W, TOP = 24, 190, 110, 34
BAR, MUTED = "#4f6fb3", "#8a8f98"


def bar_chart(
    title: str,
    items: list[tuple[str, float | None]],
    fmt: Callable[[float], str] = render.number,
    width: int = 640,
) -> str:
    """One horizontal bar per item; an item without a value says "no data" instead of drawing a
    zero."""
    bar_w = width - LABEL_W - VALUE_W
    top = max((v for _, v in items if v is not None), default=0) or 1
    height = TOP + ROW * max(len(items), 1) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 '
        f'{width} {height}" role="img" aria-label="{escape(title)}" font-family="sans-serif" '
        'font-size="13">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="18" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    if not items:
        parts.append(f'<text x="0" y="{TOP + 16}" fill="{MUTED}">no data</text>')
    for i, (label, value) in enumerate(items):
        y = TOP + i * ROW
        parts.append(
            f'<text x="{LABEL_W - 8}" y="{y + 16}" text-anchor="end">{escape(label[:28])}</text>'
        )
        if value is None:
            parts.append(f'<text x="{LABEL_W}" y="{y + 16}" fill="{MUTED}">no data</text>')
            continue
        w = max(1.0, bar_w * value / top) if value > 0 else 0
        parts.append(
            f'<rect x="{LABEL_W}" y="{y + 3}" width="{w:.1f}" height="{ROW - 7}" fill="{BAR}" '
            'rx="2"/>'
        )
        parts.append(f'<text x="{LABEL_W + w + 6:.1f}" y="{y + 16}">{escape(fmt(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def dora_charts(report: dict) -> list[str]:
    units = report["units"]
    return [
        bar_chart(
            f"{title} ({report['env']}, by unit)", [(u["unit"], u[metric]) for u in units], fmt
        )
        for metric, title, fmt in (
            ("deployment_frequency", "Deploys per day", render.frequency),
            ("lead_time_seconds", "Lead time for changes", render.duration),
            ("change_failure_rate", "Change failure rate", render.rate),
            ("time_to_restore_seconds", "Time to restore", render.duration),
        )
    ]


def cost_charts(report: dict) -> list[str]:
    charts = []
    for currency in sorted({t["currency"] for t in report["teams"]}) or ["USD"]:
        teams = [(t["team"], t["spend"]) for t in report["teams"] if t["currency"] == currency]
        charts.append(
            bar_chart(
                f"Spend by team ({currency})", teams, lambda v, c=currency: render.money(v, c)
            )
        )
    return charts


def audit_charts(report: dict) -> list[str]:
    return [
        bar_chart("Ledger entries by unit", [(a["unit"], a["total"]) for a in report["activity"]])
    ]
