"""A receiver for MLflow model registry webhooks (MLflow servers with a SQL store send them).

Each delivery must carry MLflow's HMAC-SHA256 signature of `delivery-id.timestamp.body` under
the shared secret, and a timestamp no older than five minutes (replay protection). A valid
delivery evaluates the registry sensor at once: through a running Dagster (`ud ui`) when one
answers, otherwise in this process as `ud sensors tick` does. The sensor itself decides what
is new, so a repeated or forged-but-valid event can never start a run twice.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

MAX_AGE_S = 300
MAX_BODY = 1 << 20


def signature(secret: str, delivery_id: str, timestamp: str, body: str) -> str:
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: Any, body: str, now: float | None = None) -> str | None:
    """Why a delivery is refused, or None when its signature and timestamp are good."""
    sig, ts, delivery = (headers.get(h) for h in ("X-MLflow-Signature", "X-MLflow-Timestamp", "X-MLflow-Delivery-Id"))
    if not (sig and ts and delivery):
        return "missing X-MLflow-Signature, X-MLflow-Timestamp or X-MLflow-Delivery-Id"
    try:
        age = (now or time.time()) - int(ts)
    except ValueError:
        return "timestamp is not a number"
    if abs(age) > MAX_AGE_S:
        return f"timestamp is {age:.0f} s off (more than {MAX_AGE_S} s): a replay or a wrong clock"
    if not hmac.compare_digest(sig, signature(secret, delivery, ts, body)):
        return "signature does not match"
    return None


def make_server(host: str, port: int, secret: str, on_event: Callable[[dict], None],
                log: Callable[[str], None] = print) -> ThreadingHTTPServer:
    busy = threading.Lock()  # one evaluation at a time; events that arrive meanwhile are covered by it or the next

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                return self._answer(413, {"ok": False, "error": "body too large"})
            body = self.rfile.read(length).decode("utf-8", "replace")
            problem = verify(secret, self.headers, body)
            if problem:
                log(f"webhook refused from {self.client_address[0]}: {problem}")
                return self._answer(401, {"ok": False, "error": problem})
            try:
                event = json.loads(body)
            except json.JSONDecodeError:
                return self._answer(400, {"ok": False, "error": "body is not JSON"})
            log(f"webhook {event.get('entity')}.{event.get('action')}: evaluating the registry sensor")
            threading.Thread(target=self._evaluate, args=(event,), daemon=True).start()
            self._answer(200, {"ok": True})

        def _evaluate(self, event: dict) -> None:
            with busy:
                try:
                    on_event(event)
                except Exception as exc:  # the receiver stays up; the sensor's own tick will catch up
                    log(f"webhook evaluation failed: {type(exc).__name__}: {exc}")

        def _answer(self, status: int, doc: dict) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args: Any) -> None:
            return None

    return ThreadingHTTPServer((host, port), Handler)


def evaluator(sensor: str, dagster_url: str, defs: Any, home: Any, log: Callable[[str], None]) -> Callable[[dict], None]:
    from .dagster_api import Unavailable, evaluate_now

    def on_event(event: dict) -> None:
        try:
            out = evaluate_now(dagster_url, sensor)
            log(f"{sensor} evaluated by Dagster: launched {[r['run_key'] for r in out['launched']]}")
        except Unavailable:
            from .tick import tick

            data = tick(defs, home, [sensor])
            log(f"{sensor} evaluated here: {[(r['run_key'], r.get('outcome')) for s in data['sensors'] for r in s['requested']]}")

    return on_event


def serve(host: str, port: int, secret: str, *, sensor: str, dagster_url: str, defs: Any, home: Any,
          log: Callable[[str], None]) -> None:
    server = make_server(host, port, secret, evaluator(sensor, dagster_url, defs, home, log), log)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
