"""The release board: one server-rendered page that answers "is it live, where, since when, who
put it there, waiting for whom" for every unit and environment, with DORA and spend per team
(`ud board`). A front door: it parses the query (team, kind), asks the service layer
(service/board_rows.py) and renders HTML with inline CSS and no script, so nothing is
fetched at run time and it opens behind any proxy. Each row links to its Dagster run."""

from __future__ import annotations

import threading
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlparse

from .reports.render import duration, frequency, rate

if TYPE_CHECKING:
    from .platform import Platform

CSS = """
body{font-family:system-ui,sans-serif;margin:1.2rem;color:#1d2430}
h1{font-size:1.4rem;margin:0 0 .2rem}.sub{color:#5b6270;margin:0 0 .8rem}
form{margin:.6rem 0 1rem}select,button{font-size:.9rem;padding:.15rem .4rem}
table{border-collapse:collapse;font-size:.85rem;margin-bottom:1.4rem}
th,td{border:1px solid #d5d9e0;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f6;position:sticky;top:0}
.v{font-family:ui-monospace,monospace}.muted{color:#7a808c}
.drift{background:#fde8e8;color:#7b1d14;font-weight:600}
.wait{background:#fff5db}.ok{color:#1e7b3c}.bad{color:#b03a2e}
a{color:#1f5fbf}
"""


def render(data: dict[str, Any], dagster_url: str = "") -> str:
    envs: list[str] = []
    for u in data["units"]:
        envs += [c["env"] for c in u["envs"] if c["env"] not in envs]
    head = "".join(f"<th>{escape(e)}</th>" for e in envs)
    body = []
    for u in data["units"]:
        cells = {c["env"]: c for c in u["envs"]}
        tds = "".join(_cell(cells.get(e), dagster_url) for e in envs)
        body.append(
            f'<tr data-unit="{escape(u["unit"])}"><td><b>{escape(u["unit"])}</b>'
            f'<div class="muted">{escape(u["kind"])} · {escape(u["team"])}</div></td>{tds}</tr>'
        )
    f = data["filter"]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Release board</title>"
        f"<style>{CSS}</style></head><body><h1>Release board</h1>"
        f'<p class="sub">{len(data["units"])} units · from the ledger ({data["entries"]} '
        "entries) · drift as the reconcile sensor last recorded it</p>"
        + _filters(data, f)
        + f'<table id="units"><thead><tr><th>unit</th>{head}</tr></thead><tbody>'
        + "".join(body)
        + "</tbody></table>"
        + _teams(data)
        + "</body></html>"
    )


def _filters(data: dict[str, Any], f: dict[str, str]) -> str:
    def select(name: str, values: list[str]) -> str:
        options = "".join(
            f'<option value="{escape(v)}"{" selected" if f[name] == v else ""}>{escape(v)}</option>'
            for v in values
        )
        every = '<option value="">all</option>'
        return f'<label>{name} <select name="{name}">{every}{options}</select></label> '

    return (
        '<form method="get">'
        + select("team", data["teams"])
        + select("kind", data["kinds"])
        + "<button>filter</button></form>"
    )


def _cell(c: dict[str, Any] | None, dagster_url: str) -> str:
    if c is None:
        return '<td class="muted">—</td>'
    parts, cls = [], ""
    if c.get("version"):
        v = escape(str(c["version"])[:12])
        link = (
            f'<a href="{escape(dagster_url.rstrip("/"))}/runs/{quote(c["run_id"])}">{v}</a>'
            if dagster_url and c.get("run_id")
            else v
        )
        verb = "rolled back" if c.get("action") == "rollback" else "promoted"
        parts.append(f'<span class="v">{link}</span> since {escape(c["since"][:16])}')
        why = f": {escape(c['reason'])}" if c.get("reason") else ""
        parts.append(f'<div class="muted">{verb} by {escape(c["by"])}{why}</div>')
        gates, overridden = c.get("gates") or {}, c.get("overrides") or []
        if gates:
            past = f" ({escape(', '.join(overridden))} overridden)" if overridden else ""
            parts.append(f'<div class="ok">gates: {len(gates)} passed{past}</div>')
    else:
        parts.append('<span class="muted">nothing deployed</span>')
    if c.get("drift"):
        cls = "drift"
        parts.append(
            f"<div>DRIFTED: runs {escape(str(c['drift']['runs'] or 'nothing')[:12])}</div>"
        )
    w = c.get("waiting")
    if w:
        cls = cls or "wait"
        text = f"waiting: {escape(w['version'][:12])}"
        if w.get("required"):
            text += f" · approvals {w['approvals']}/{w['required']}"
        if w.get("soak_until"):
            text += f" · soaking until {escape(w['soak_until'][:16])}"
        parts.append(f"<div>{text}</div>")
        if w.get("command"):
            parts.append(f'<div class="v muted">{escape(w["command"])}</div>')
    return f'<td class="{cls}">' + "".join(parts) + "</td>"


def _teams(data: dict[str, Any]) -> str:
    dora = "".join(
        f"<tr><td>{escape(t['team'])}</td><td>{frequency(t.get('deployment_frequency'))}</td>"
        f"<td>{duration(t.get('lead_time_seconds'))}</td><td>{rate(t.get('change_failure_rate'))}"
        f"</td><td>{duration(t.get('time_to_restore_seconds'))}</td></tr>"
        for t in data["dora"]
    )
    spend = "".join(
        f"<tr><td>{escape(t['team'])}</td><td>{t['spend']:,.2f} {escape(t['currency'])}</td></tr>"
        for t in data["spend"]
    )
    days = data["window_days"]
    return (
        f"<h2>DORA per team (production, {days:g} days)</h2><table><thead><tr><th>team</th>"
        "<th>deploys</th><th>lead time</th><th>change failure</th><th>time to restore</th></tr>"
        f"</thead><tbody>{dora}</tbody></table>"
        f"<h2>Spend per team ({days:g} days)</h2><table><thead><tr><th>team</th><th>spend</th>"
        f"</tr></thead><tbody>{spend}</tbody></table>"
    )


class BoardServer(ThreadingHTTPServer):
    """The board on `host:port`, rendering from `platform` on every request."""

    daemon_threads = True

    def __init__(self, platform: Platform, host: str, port: int, dagster_url: str = ""):
        super().__init__((host, port), _Handler)
        self.platform, self.dagster_url = platform, dagster_url

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server: BoardServer

    def do_GET(self) -> None:
        from .service.board_rows import release_board

        url = urlparse(self.path)
        if url.path not in ("/", "/board"):
            self.send_error(404)
            return
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        data = release_board(
            self.server.platform, team=query.get("team", ""), kind=query.get("kind", "")
        )
        body = render(data, self.server.dagster_url).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass
