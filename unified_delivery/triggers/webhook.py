"""A receiver for MLflow model registry webhooks (MLflow servers with a SQL store send them).

Each delivery must carry MLflow's HMAC-SHA256 signature of `delivery-id.timestamp.body` under
the shared secret, and a timestamp no older than five minutes (replay protection). A valid
delivery evaluates the registry sensor at once: through a running Dagster (`ud ui`) when one
answers, otherwise in this process as `ud sensors tick` does. The sensor itself decides what
is new, so a repeated or forged-but-valid event can never start a run twice.

The receiver listens on a port anyone on the network may reach, so what it does before the
signature is checked is bounded: the body must be announced by a plain Content-Length of at
most MAX_BODY (no chunked bodies), is refused before a byte of it is read otherwise, and is
read to exactly that length; a connection has `timeout` seconds in all to send its headers
and body (a deadline, not an idle timer, so trickling a byte at a time does not help); at most
`max_connections` are served at once and the rest get a 503, which MLflow retries. Every
refusal is logged with the client's address and the reason, never the body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_AGE_S = 300
MAX_BODY = 1 << 20
TIMEOUT_S = 10.0
MAX_CONNECTIONS = 64


def signature(secret: str, delivery_id: str, timestamp: str, body: str | bytes) -> str:
    raw = body.encode() if isinstance(body, str) else body
    # MLflow signs the UTF-8 of f"{id}.{ts}.{payload}"; signing the bytes received gives the
    # same digest for a real delivery and needs no decoding of an unauthenticated body.
    signed = f"{delivery_id}.{timestamp}.".encode() + raw
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: Any, body: str | bytes, now: float | None = None) -> str | None:
    """Why a delivery is refused, or None when its signature and timestamp are good."""
    names = ("X-MLflow-Signature", "X-MLflow-Timestamp", "X-MLflow-Delivery-Id")
    sig, ts, delivery = (headers.get(h) for h in names)
    if not (sig and ts and delivery):
        return "missing X-MLflow-Signature, X-MLflow-Timestamp or X-MLflow-Delivery-Id"
    try:
        age = (now or time.time()) - int(ts)
    except (ValueError, OverflowError):  # OverflowError: an integer too large for a float
        return "timestamp is not a number"
    if abs(age) > MAX_AGE_S:
        return f"timestamp is {age:.0f} s off (more than {MAX_AGE_S} s): a replay or a wrong clock"
    # Bytes, not str: compare_digest raises on a str with non-ASCII characters, and header
    # values are whatever the client sent.
    expected = signature(secret, delivery, ts, body).encode()
    if not hmac.compare_digest(sig.encode(), expected):
        return "signature does not match"
    return None


def event_problem(event: object) -> str | None:
    """Why a signed body is not an MLflow webhook event, or None when it is one."""
    if not isinstance(event, dict):
        kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
        return f"body is {kinds.get(type(event), 'a number')} in JSON, not an object"
    missing = [k for k in ("entity", "action") if not isinstance(event.get(k), str)]
    if not isinstance(event.get("data"), dict):
        missing.append("data")
    if missing:
        return f"event lacks {', '.join(missing)} (entity and action strings, data an object)"
    return None


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class _DeadlineReader(io.RawIOBase):
    """The reading side of a connection that ends at one deadline for headers and body.

    A socket timeout alone restarts at every byte, so a client sending one byte every few
    seconds would hold its thread for ever; here each recv gets only the time left.
    """

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self.sock, self.deadline, self.count = sock, time.monotonic() + seconds, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the connection's deadline has passed")
        self.sock.settimeout(left)
        n = self.sock.recv_into(buffer)
        self.count += n
        return n


def body_length(headers: Any, max_body: int) -> int:
    """The announced body length, or _Refused when it cannot be trusted to bound the read."""
    if headers.get("Transfer-Encoding") is not None:
        raise _Refused(411, "Transfer-Encoding is not accepted: send a Content-Length")
    values = headers.get_all("Content-Length") or []
    if not values:
        raise _Refused(411, "Content-Length is required")
    if len(values) > 1:
        raise _Refused(400, "more than one Content-Length")
    value = values[0].strip()
    # int() would take "-1", "+5" and "1_000"; only plain ASCII digits bound the read.
    if not (value.isascii() and value.isdigit()):
        raise _Refused(400, f"Content-Length {value[:40]!r} is not a non-negative integer")
    length = int(value)
    if length > max_body:
        raise _Refused(413, f"body of {length} bytes is over the limit of {max_body}")
    return length


class Receiver(ThreadingHTTPServer):
    """A threading HTTP server that serves at most `max_connections` connections at once."""

    # socketserver's backlog of 5 makes a burst of connections wait in SYN retries (a second
    # and more each) before they are even accepted and counted.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        max_connections: int,
        log: Callable[[str], None],
    ) -> None:
        self.slots = threading.BoundedSemaphore(max_connections)
        self.max_connections, self.log = max_connections, log
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.log(
                f"webhook refused from {client_address[0]}: 503, all {self.max_connections} "
                "connections busy"
            )
            data = json.dumps({"ok": False, "error": "busy, retry later"}).encode()
            head = (
                f"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Retry-After: 1\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode()
            try:
                # A fresh connection's send buffer is empty, so this does not block the accept
                # loop; the timeout is there in case it ever would.
                request.settimeout(1.0)
                request.sendall(head + data)
            except OSError:
                pass  # the client is gone already; it was being turned away anyway
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the connection's thread, before the socket is shut: the slot is free by the
        # time the client sees the close, so a client that waited for one finds it.
        try:
            super().finish_request(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # a reset or broken pipe: the client's doing, no traceback
            self.log(f"webhook connection from {client_address[0]} lost: {exc}")
        else:
            super().handle_error(request, client_address)


def make_server(
    host: str,
    port: int,
    secret: str,
    on_event: Callable[[dict], None],
    log: Callable[[str], None] = print,
    *,
    timeout: float = TIMEOUT_S,
    max_connections: int = MAX_CONNECTIONS,
    max_body: int = MAX_BODY,
) -> Receiver:
    """A receiver (not yet serving) for MLflow webhooks signed with `secret`.

    `timeout`: seconds a connection has for its headers and body together (and again for
    writing the answer); `max_connections`: connections served at once; `max_body`: bytes.
    """
    # One evaluation at a time; events that arrive meanwhile are covered by it or the next.
    busy = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def setup(self) -> None:
            super().setup()
            self.rfile.close()  # the plain socket file; an unclosed one would delay the close
            self.received = _DeadlineReader(self.connection, timeout)
            self.rfile = io.BufferedReader(self.received)

        def do_POST(self) -> None:
            try:
                self._deliver()
            except _Refused as refused:
                self._refuse(refused.status, refused.reason)

        def _deliver(self) -> None:
            length = body_length(self.headers, max_body)
            body = self._read_body(length)
            problem = verify(secret, self.headers, body)
            if problem:
                raise _Refused(401, problem)
            try:
                event = json.loads(body.decode("utf-8"))
            except UnicodeDecodeError:
                raise _Refused(400, "body is not UTF-8") from None
            except ValueError:
                raise _Refused(400, "body is not JSON") from None
            except RecursionError:
                raise _Refused(400, "body is JSON nested too deeply") from None
            problem = event_problem(event)
            if problem:
                raise _Refused(400, problem)
            log(f"webhook {event['entity']}.{event['action']}: evaluating the registry sensor")
            threading.Thread(target=self._evaluate, args=(event,), daemon=True).start()
            self._answer(200, {"ok": True})

        def _read_body(self, length: int) -> bytes:
            body = bytearray()
            try:
                while len(body) < length:
                    chunk = self.rfile.read1(length - len(body))
                    if not chunk:
                        raise _Refused(400, f"body ended after {len(body)} of {length} bytes")
                    body += chunk
            except TimeoutError:
                raise _Refused(
                    408, f"body not complete within {timeout:g} s ({len(body)} of {length} bytes)"
                ) from None
            return bytes(body)

        def _evaluate(self, event: dict) -> None:
            with busy:
                try:
                    on_event(event)
                except Exception as exc:  # noqa: BLE001
                    # The receiver stays up and logs the cause; the sensor's own tick catches up.
                    log(f"webhook evaluation failed: {type(exc).__name__}: {exc}")

        def _refuse(self, status: int, reason: str) -> None:
            log(
                f"webhook refused from {self.client_address[0]}: {status}, {reason} "
                f"({self.received.count} bytes read)"
            )
            self.close_connection = True
            self._answer(status, {"ok": False, "error": reason})

        def _answer(self, status: int, doc: dict) -> None:
            # The reader leaves the socket with whatever time was left, perhaps none: the
            # answer gets a fresh, equally bounded, allowance.
            self.connection.settimeout(timeout)
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_error(self, format: str, *args: Any) -> None:
            # http.server's own refusals (a request line or header too long, a method other
            # than POST, a connection that timed out before its headers ended).
            log(
                f"webhook refused from {self.client_address[0]}: {format % args} "
                f"({self.received.count} bytes read)"
            )

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Receiver((host, port), Handler, max_connections=max_connections, log=log)


def evaluator(
    sensor: str, dagster_url: str, defs: Any, home: Any, log: Callable[[str], None]
) -> Callable[[dict], None]:
    from .dagster_api import Unavailable, evaluate_now

    def on_event(event: dict) -> None:
        try:
            out = evaluate_now(dagster_url, sensor)
            launched = [r["run_key"] for r in out["launched"]]
            log(f"{sensor} evaluated by Dagster: launched {launched}")
        except Unavailable:
            from .tick import tick

            data = tick(defs, home, [sensor])
            runs = [
                (r["run_key"], r.get("outcome")) for s in data["sensors"] for r in s["requested"]
            ]
            log(f"{sensor} evaluated here: {runs}")

    return on_event


def serve(
    host: str,
    port: int,
    secret: str,
    *,
    sensor: str,
    dagster_url: str,
    defs: Any,
    home: Any,
    log: Callable[[str], None],
) -> None:
    server = make_server(host, port, secret, evaluator(sensor, dagster_url, defs, home, log), log)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
