"""Sending one message to one channel: a signed JSON webhook, a Slack-compatible webhook, or
an email over SMTP. Each raises `DeliveryFailed` with a one-line reason; the outbox decides
whether to retry."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import smtplib
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from typing import Any

from ..errors import one_line
from .config import Channel

SIGNATURE_HEADER = "X-UD-Signature"  # "sha256=" + HMAC-SHA256(key, f"{timestamp}.{body}")
TIMESTAMP_HEADER = "X-UD-Timestamp"  # seconds since the epoch, part of what is signed


class DeliveryFailed(Exception):
    pass


@dataclass(frozen=True)
class Message:
    """What a notification says, the same for every channel."""

    event: str
    title: str  # one line: what happened, to what
    text: str  # the cause and what to do
    seq: int  # the ledger entry it is about
    ts: str
    unit: str | None = None
    env: str | None = None
    version: str | None = None
    principal: str = ""
    team: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"source": "unified-delivery", **asdict(self)}


def send(name: str, channel: Channel, message: Message) -> None:
    if channel.type == "email":
        _email(name, channel, message)
    elif channel.type == "slack":
        _post(name, channel, _slack(message), None)
    else:
        _post(name, channel, message.body(), _signature(name, channel))


def _secret(name: str, variable: str, what: str) -> str:
    value = os.environ.get(variable, "")
    if not value:
        raise DeliveryFailed(f"channel {name}: ${variable} ({what}) is not set")
    return value


def _url(name: str, channel: Channel) -> str:
    return channel.url or _secret(name, channel.url_env, "its URL")


def _signature(name: str, channel: Channel) -> Callable[[bytes], dict[str, str]]:
    key = _secret(name, channel.secret_env, "its HMAC key").encode()

    def sign(body: bytes) -> dict[str, str]:
        stamp = str(int(time.time()))
        digest = hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return {SIGNATURE_HEADER: f"sha256={digest}", TIMESTAMP_HEADER: stamp}

    return sign


def verify(key: bytes, body: bytes, headers: dict[str, str], max_age_s: float = 300) -> bool:
    """A receiver's check of a generic webhook (also what the tests' receiver runs)."""
    lower = {k.lower(): v for k, v in headers.items()}  # header names are case-insensitive
    stamp = lower.get(TIMESTAMP_HEADER.lower(), "")
    given = lower.get(SIGNATURE_HEADER.lower(), "")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > max_age_s:
        return False
    want = "sha256=" + hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, given)


def _post(
    name: str,
    channel: Channel,
    payload: dict[str, Any],
    sign: Callable[[bytes], dict[str, str]] | None,
) -> None:
    body = json.dumps(payload, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "unified-delivery"}
    if sign is not None:
        headers.update(sign(body))
    request = urllib.request.Request(_url(name, channel), data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=channel.timeout_s) as resp:
            resp.read(65536)
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"channel {name}: HTTP {exc.code} {one_line(exc.reason)}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryFailed(f"channel {name}: {one_line(reason)}") from None


def _slack(message: Message) -> dict[str, Any]:
    facts = [
        f"*{k}:* {v}"
        for k, v in (
            ("unit", message.unit),
            ("environment", message.env),
            ("version", message.version),
            ("by", message.principal),
            ("team", message.team),
        )
        if v
    ]
    return {
        "text": f"{message.title}: {message.text}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": message.text[:3000]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)}]},
        ],
    }


def _email(name: str, channel: Channel, message: Message) -> None:
    host, _, port = channel.smtp.rpartition(":")
    mail = EmailMessage()
    mail["Subject"] = f"[ud] {message.title}"
    mail["From"] = channel.sender
    mail["To"] = ", ".join(channel.to)
    mail.set_content(
        f"{message.text}\n\n"
        + "\n".join(f"{k}: {v}" for k, v in message.body().items() if v and k != "text")
    )
    try:
        with smtplib.SMTP(host, int(port), timeout=channel.timeout_s) as smtp:
            if channel.starttls:
                smtp.starttls()
            if channel.user_env:
                smtp.login(
                    _secret(name, channel.user_env, "the SMTP user"),
                    _secret(name, channel.password_env, "the SMTP password"),
                )
            smtp.send_message(mail)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(f"channel {name}: SMTP: {one_line(exc)}") from None
