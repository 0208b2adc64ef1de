"""Service downtime of an app deploy on the embedded target (LocalReleaseTarget).

  .venv/bin/python bench/app_downtime.py [--deploys 5] [--start-delay 2.0]

Deploys v0, then `--deploys` new versions one after another, each a stdlib HTTP service
that sleeps `--start-delay` seconds before it listens (an app that imports a framework and
loads a model). A thread follows the environment as a client would: every 50 ms it reads
the URL from `status()` and GETs its /health. Printed per deploy: its wall time, the polls
that got no 200, and the longest stretch without a 200 (from the last poll that got one to
the next poll that got one; 0 when no poll failed).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from unified_delivery.targets.base import Artifact
from unified_delivery.targets.local_release import LocalReleaseTarget
from unified_delivery.kinds.app.unit import AppUnit, ServiceSpec

ENV = "staging"
POLL_S = 0.05

APP = """
import argparse, os, time
from http.server import BaseHTTPRequestHandler, HTTPServer

time.sleep({delay})


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["UD_VERSION"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
HTTPServer(("127.0.0.1", parser.parse_args().port), Handler).serve_forever()
"""

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def poll(target: LocalReleaseTarget, stop: threading.Event, seen: list[tuple[float, bool]]) -> None:
    while not stop.is_set():
        ok = False
        try:
            status = target.status("svc", ENV)
            url = status.details["url"] if status else None
            with _OPENER.open(f"{url}/health", timeout=1) as response:
                ok = response.status == 200
        except Exception:  # noqa: BLE001 - any failure to get a 200 is what is counted
            ok = False
        seen.append((time.monotonic(), ok))
        time.sleep(POLL_S)


def longest_outage(seen: list[tuple[float, bool]]) -> float:
    worst, last_ok, failing = 0.0, None, False
    for at, ok in seen:
        if ok:
            if failing and last_ok is not None:
                worst = max(worst, at - last_ok)
            last_ok, failing = at, False
        else:
            failing = True
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploys", type=int, default=5)
    parser.add_argument("--start-delay", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        target = LocalReleaseTarget(home=str(root / "home"))
        unit = AppUnit(name="svc", team="t", repository="/nowhere", service=ServiceSpec(startup_timeout_s=30))

        def artifact(version: str, delay: float) -> Artifact:
            src = root / "src" / version
            src.mkdir(parents=True)
            (src / "app.py").write_text(APP.format(delay=delay))
            return Artifact(unit="svc", kind="app", version=version, location=str(src))

        try:
            target.deploy(unit, ENV, artifact("v0", 0))
            walls, outages = [], []
            for n in range(1, args.deploys + 1):
                seen: list[tuple[float, bool]] = []
                stop = threading.Event()
                thread = threading.Thread(target=poll, args=(target, stop, seen))
                thread.start()
                time.sleep(0.3)
                started = time.monotonic()
                target.deploy(unit, ENV, artifact(f"v{n}", args.start_delay))
                wall = time.monotonic() - started
                time.sleep(0.3)
                stop.set()
                thread.join()
                failed = sum(1 for _, ok in seen if not ok)
                outage = longest_outage(seen)
                walls.append(wall)
                outages.append(outage)
                print(f"deploy v{n}: wall {wall:.2f} s, {failed} of {len(seen)} polls without a 200, "
                      f"longest stretch without a 200 {outage:.2f} s")
            print(f"median: wall {statistics.median(walls):.2f} s, outage {statistics.median(outages):.2f} s "
                  f"(start delay {args.start_delay:g} s)")
        finally:
            target.stop_all()


if __name__ == "__main__":
    main()
