"""The webhook receiver under attack: the real server from make_server on a loopback port, fed
hand-written HTTP over raw sockets (an HTTP client library would refuse to send most of these
requests). Each attack must be answered or dropped quickly, read next to nothing of what
follows, be logged with the client's address, and never reach on_event."""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest

from unified_delivery.triggers.webhook import MAX_BODY, make_server, signature

SECRET = "s3cret"
TIMEOUT = 1.0  # the receiver's deadline per connection; the default is 10 s
MAX_CONNECTIONS = 32
EVENT = {"entity": "model_version", "action": "created", "timestamp": "2025-01-01T00:00:00+00:00",
         "data": {"name": "spam", "version": "1"}}


@dataclass
class ReceiverUnderTest:
    port: int
    events: list = field(default_factory=list)
    logs: list = field(default_factory=list)
    delivered: threading.Event = field(default_factory=threading.Event)

    def refusals(self, fragment: str) -> list[str]:
        return [line for line in self.logs if "refused from 127.0.0.1" in line and fragment in line]

    def bytes_read(self, fragment: str) -> int:
        (line,) = self.refusals(fragment)
        return int(re.search(r"\((\d+) bytes read\)", line).group(1))


@pytest.fixture
def receiver():
    state = ReceiverUnderTest(port=0)

    def on_event(event: dict) -> None:
        state.events.append(event)
        state.delivered.set()

    server = make_server("127.0.0.1", 0, SECRET, on_event, log=state.logs.append,
                         timeout=TIMEOUT, max_connections=MAX_CONNECTIONS)
    state.port = server.server_address[1]
    # A short poll interval only makes shutdown() quick.
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


def signed_headers(body: bytes, secret: str = SECRET) -> bytes:
    delivery, ts = "delivery-1", str(int(time.time()))
    return (f"X-MLflow-Delivery-Id: {delivery}\r\nX-MLflow-Timestamp: {ts}\r\n"
            f"X-MLflow-Signature: {signature(secret, delivery, ts, body)}\r\n").encode()


def request(headers: bytes, body: bytes = b"") -> bytes:
    return b"POST / HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\n" + headers \
        + b"\r\n" + body


def delivery(body: bytes) -> bytes:
    return request(signed_headers(body) + f"Content-Length: {len(body)}\r\n".encode(), body)


def read_answer(sock: socket.socket) -> bytes:
    sock.settimeout(TIMEOUT + 5)
    raw = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:  # the receiver closed with our unread bytes in its buffer
            return raw
        if not chunk:
            return raw
        raw += chunk


def parse(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def exchange(port: int, data: bytes, *, then_close: bool = False) -> tuple[int, dict, float]:
    """Send `data`, (optionally) close our sending side, and read the answer: status, JSON
    document and seconds from the first byte sent to the answer's end."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        sock.sendall(data)
        if then_close:
            sock.shutdown(socket.SHUT_WR)
        raw = read_answer(sock)
        took = time.monotonic() - started
    status, doc = parse(raw)
    return status, doc, took


def test_a_signed_delivery_reaches_on_event_exactly_once(receiver):
    status, doc, _ = exchange(receiver.port, delivery(json.dumps(EVENT).encode()))
    assert (status, doc) == (200, {"ok": True})
    assert receiver.delivered.wait(5)
    time.sleep(0.2)  # time for a second, wrong call to show up
    assert receiver.events == [EVENT]
    assert receiver.logs == ["webhook model_version.created: evaluating the registry sensor"]


def test_content_length_minus_one_is_refused_before_the_64_mib_behind_it_are_read(receiver):
    total, chunk = 64 << 20, b"x" * 65536
    with socket.create_connection(("127.0.0.1", receiver.port)) as sock:
        started = time.monotonic()
        sock.sendall(request(b"Content-Length: -1\r\n"))
        sock.setblocking(False)
        sent = 0
        # Keep sending until the answer is readable: the old receiver read to the end of the
        # stream first, so all 64 MiB went in and no answer ever came.
        while sent < total and not select.select([sock], [], [], 0)[0]:
            if select.select([], [sock], [], 1)[1]:
                try:
                    sent += sock.send(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break
        sock.setblocking(True)
        raw = read_answer(sock)
        took = time.monotonic() - started
    status, doc = parse(raw)
    assert status == 400 and "'-1' is not a non-negative integer" in doc["error"]
    assert sent < total / 4, f"{sent} bytes went in before the answer"
    assert took < TIMEOUT / 2
    # What the receiver itself read: the headers and at most one buffer of what followed.
    assert receiver.bytes_read("'-1'") <= 16 * 1024
    assert receiver.events == []


@pytest.mark.parametrize(("headers", "status", "reason"), [
    (b"Content-Length: abc\r\n", 400, "'abc' is not a non-negative integer"),
    (b"Content-Length: +2\r\n", 400, "'+2' is not a non-negative integer"),
    (b"Content-Length: 1_0\r\n", 400, "'1_0' is not a non-negative integer"),
    (b"Content-Length: 2\r\nContent-Length: 30\r\n", 400, "more than one Content-Length"),
    (b"", 411, "Content-Length is required"),
    (b"Transfer-Encoding: chunked\r\n", 411, "Transfer-Encoding is not accepted"),
    (b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n", 411, "Transfer-Encoding"),
    (f"Content-Length: {MAX_BODY + 1}\r\n".encode(), 413, f"over the limit of {MAX_BODY}"),
    (b"Content-Length: 99999999999999999999999\r\n", 413, "over the limit"),
], ids=["abc", "plus", "underscore", "twice", "missing", "chunked", "chunked-and-length",
        "over-limit", "huge"])
def test_a_bad_length_is_refused_from_the_headers_alone(receiver, headers, status, reason):
    # Signed for the body that follows, and the body sent: the refusal must not depend on a
    # missing signature, and must come without reading (or waiting for) the body.
    body = b"5\r\nhello\r\n0\r\n\r\n"
    got, doc, took = exchange(receiver.port, request(signed_headers(body) + headers, body))
    assert (got, doc["ok"]) == (status, False) and reason in doc["error"]
    assert took < TIMEOUT / 2
    assert receiver.bytes_read(reason) < 1024
    assert receiver.events == []


def test_an_over_limit_body_is_refused_without_waiting_for_it(receiver):
    # Nothing follows the headers: an answer before the deadline shows no body was awaited.
    headers = f"Content-Length: {4 * MAX_BODY}\r\n".encode()
    got, doc, took = exchange(receiver.port, request(headers))
    assert got == 413 and "over the limit" in doc["error"] and took < TIMEOUT / 2
    assert receiver.events == []


def test_a_body_shorter_than_announced_is_refused(receiver):
    got, doc, _ = exchange(receiver.port, request(b"Content-Length: 100\r\n", b"{" * 10),
                           then_close=True)
    assert got == 400 and doc["error"] == "body ended after 10 of 100 bytes"
    assert receiver.refusals("body ended after 10 of 100 bytes")
    assert receiver.events == []


def test_a_body_that_stops_coming_is_refused_at_the_deadline(receiver):
    got, doc, took = exchange(receiver.port, request(b"Content-Length: 100\r\n", b"{" * 10))
    assert got == 408 and "(10 of 100 bytes)" in doc["error"]
    assert TIMEOUT * 0.9 <= took < TIMEOUT + 1
    assert receiver.events == []


@pytest.mark.parametrize(("body", "reason"), [
    (b"[1, 2]", "body is an array in JSON, not an object"),
    (b'"model_version.created"', "body is a string in JSON, not an object"),
    (b"42", "body is a number in JSON, not an object"),
    (b"null", "body is null in JSON, not an object"),
    (b"true", "body is a boolean in JSON, not an object"),
    (b'{"entity": "model_version"}', "event lacks action, data"),
    (b'{"entity": 1, "action": "created", "data": []}', "event lacks entity, data"),
    (b"\xff\xfe{}", "body is not UTF-8"),
    (b"{not json", "body is not JSON"),
    (b"[" * 100_000, "body is JSON nested too deeply"),
], ids=["array", "string", "number", "null", "boolean", "no-action", "wrong-types", "not-utf8",
        "not-json", "deep"])
def test_a_signed_body_of_the_wrong_shape_is_refused(receiver, body, reason):
    got, doc, _ = exchange(receiver.port, delivery(body))
    assert (got, doc) == (400, {"ok": False, "error": doc["error"]}) and reason in doc["error"]
    assert len(receiver.refusals(reason)) == 1
    assert receiver.events == []


def test_a_refusal_is_logged_without_the_body(receiver):
    got, _, _ = exchange(receiver.port, delivery(b'["do-not-log-me"]'))
    assert got == 400 and receiver.refusals("body is an array")
    assert not [line for line in receiver.logs if "do-not-log-me" in line]


@pytest.mark.parametrize(("header", "reason"), [
    (b"X-MLflow-Signature: v1,\xe9t\xe9\r\n", "signature does not match"),
    (b"X-MLflow-Timestamp: " + b"9" * 400 + b"\r\n", "timestamp is not a number"),
], ids=["non-ascii-signature", "timestamp-too-big-for-a-float"])
def test_header_values_that_crashed_verify_are_refused(receiver, header, reason):
    body = json.dumps(EVENT).encode()
    name = header.split(b":")[0]
    lines = signed_headers(body).split(b"\r\n")
    good = [line for line in lines if line and not line.startswith(name)]
    headers = b"\r\n".join(good) + b"\r\n" + header + f"Content-Length: {len(body)}\r\n".encode()
    got, doc, _ = exchange(receiver.port, request(headers, body))
    assert (got, doc["error"]) == (401, reason)
    assert receiver.events == []


def test_an_idle_connection_is_dropped_at_the_deadline_and_the_receiver_goes_on(receiver):
    with socket.create_connection(("127.0.0.1", receiver.port)) as idle:
        started = time.monotonic()
        assert read_answer(idle) == b""  # closed without a word: nothing was asked
        took = time.monotonic() - started
    assert TIMEOUT * 0.9 <= took < TIMEOUT + 1
    assert receiver.refusals("Request timed out")
    status, _, _ = exchange(receiver.port, delivery(json.dumps(EVENT).encode()))
    assert status == 200 and receiver.delivered.wait(5) and receiver.events == [EVENT]


def test_a_client_trickling_its_headers_is_dropped_at_the_deadline(receiver):
    # One byte every 50 ms: never idle long enough for a per-read timeout to fire.
    with socket.create_connection(("127.0.0.1", receiver.port)) as slow:
        started = time.monotonic()
        slow.sendall(b"POST / HTTP/1.1\r\nX-Slow: ")
        while time.monotonic() - started < TIMEOUT + 3:
            try:
                slow.send(b"a")
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([slow], [], [], 0.05)[0] and read_answer(slow) == b"":
                break
        took = time.monotonic() - started
    assert TIMEOUT * 0.9 <= took < TIMEOUT + 1
    assert receiver.refusals("Request timed out")
    assert receiver.events == []


def open_idle(port: int, count: int) -> list[socket.socket]:
    started = time.monotonic()
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    time.sleep(0.1)  # the accept loop has taken them all
    # Otherwise the first may be dropped already, and the test proves nothing.
    assert time.monotonic() - started < TIMEOUT / 2
    return socks


def test_many_idle_connections_do_not_hold_up_a_good_delivery(receiver):
    idle = open_idle(receiver.port, MAX_CONNECTIONS - 1)
    try:
        status, _, _ = exchange(receiver.port, delivery(json.dumps(EVENT).encode()))
        assert status == 200
        assert not select.select(idle, [], [], 0)[0]  # answered while all of them still wait
        assert receiver.delivered.wait(5) and receiver.events == [EVENT]
    finally:
        for sock in idle:
            sock.close()


def test_connections_over_the_cap_get_a_503_until_the_idle_ones_are_dropped(receiver):
    idle = open_idle(receiver.port, MAX_CONNECTIONS)
    try:
        status, doc, _ = exchange(receiver.port, delivery(json.dumps(EVENT).encode()))
        assert (status, doc["ok"]) == (503, False)
        assert not select.select(idle, [], [], 0)[0]  # all of them still hold their slots
        assert receiver.refusals(f"all {MAX_CONNECTIONS} connections busy")
        for sock in idle:  # each is dropped at its deadline, which frees its slot
            assert read_answer(sock) == b""
    finally:
        for sock in idle:
            sock.close()
    status, _, _ = exchange(receiver.port, delivery(json.dumps(EVENT).encode()))
    assert status == 200 and receiver.delivered.wait(5) and receiver.events == [EVENT]
