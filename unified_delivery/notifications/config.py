"""The routes of notifications: channels (where), routes (which events of which teams go to
which channels) and the retry policy, from `resources/notifications.yaml`. Secrets (a Slack
URL, an HMAC key, an SMTP password) are named by the environment variable that holds them and
read when a message is sent, never stored in the file or the ledger."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..settings_files import read_settings

EVENTS = (
    "refused",  # a gate refused a version, or a principal was refused an action
    "approval-pending",  # a version waits for an approval
    "promoted",
    "rollback",
    "deploy-failed",  # a deploy or rollback failed and the environment kept its version
    "drift",  # an environment runs what the platform did not deploy
    "monitor-breach",  # a unit in soak broke its monitor (drift, rows, freshness): rolled back
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Channel(Strict):
    type: Literal["webhook", "slack", "email"] = Field(
        description="webhook: a JSON body signed with HMAC-SHA256; slack: Slack-compatible "
        "JSON (`text` and `blocks`) to an incoming-webhook URL; email: a message over SMTP"
    )
    url: str = Field(default="", description="webhook, slack: where to POST")
    url_env: str = Field(
        default="", description="webhook, slack: the environment variable holding the URL"
    )
    secret_env: str = Field(
        default="",
        description="webhook: the environment variable holding the HMAC key (required)",
    )
    smtp: str = Field(default="", description="email: host:port of the SMTP server")
    sender: str = Field(default="ud@localhost", alias="from", description="email: From")
    to: list[str] = Field(default_factory=list, description="email: recipients")
    starttls: bool = Field(default=False, description="email: STARTTLS before sending")
    user_env: str = Field(default="", description="email: variable holding the SMTP user")
    password_env: str = Field(default="", description="email: variable holding the password")
    timeout_s: float = Field(default=5, gt=0, le=60, description="per attempt")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _shape(self) -> Channel:
        if self.type in ("webhook", "slack") and not (self.url or self.url_env):
            raise ValueError(f"a {self.type} channel needs url or url_env")
        if self.type == "webhook" and not self.secret_env:
            raise ValueError("a webhook channel needs secret_env (its body is signed)")
        if self.type == "email" and not (self.smtp and self.to):
            raise ValueError("an email channel needs smtp (host:port) and to")
        if self.smtp and not self.smtp.rpartition(":")[2].isdigit():
            raise ValueError(f"smtp {self.smtp!r} is not host:port")
        return self


class Route(Strict):
    events: list[str] = Field(description=f"which events, or '*': {', '.join(EVENTS)}")
    channels: list[str] = Field(min_length=1, description="names of channels above")
    teams: list[str] = Field(default_factory=list, description="whose units; empty: every team")
    envs: list[str] = Field(default_factory=list, description="which environments; empty: all")

    @model_validator(mode="after")
    def _events(self) -> Route:
        unknown = [e for e in self.events if e != "*" and e not in EVENTS]
        if unknown:
            raise ValueError(f"unknown events {unknown}: known are {', '.join(EVENTS)}")
        return self


class Retry(Strict):
    attempts: int = Field(default=5, ge=1, le=50, description="attempts before a dead letter")
    backoff_s: float = Field(default=30, ge=0, le=86400, description="wait after the first")
    max_backoff_s: float = Field(default=1800, ge=0, le=86400, description="longest wait")

    def wait(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): doubling, capped."""
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)


class NotificationsFile(Strict):
    channels: dict[str, Channel] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    retry: Retry = Field(default_factory=Retry)

    @model_validator(mode="after")
    def _known_channels(self) -> NotificationsFile:
        for i, route in enumerate(self.routes):
            missing = [c for c in route.channels if c not in self.channels]
            if missing:
                raise ValueError(f"routes.{i} names channels {missing} that are not defined")
        return self


class Notifications:
    def __init__(
        self, file: NotificationsFile | None = None, source: str = "(none)", since: str = ""
    ):
        self.file = file or NotificationsFile()
        self.source = source
        # When the routes were written (the file's time): a first delivery tells what happened
        # from then on, not the ledger's whole history.
        self.since = since

    @classmethod
    def from_file(cls, path: Path) -> Notifications:
        """The file's routes; a platform without the file notifies nobody."""
        path = Path(path)
        if not path.exists():
            return cls(source=f"{path}: no such file")
        file = read_settings(
            path,
            NotificationsFile,
            code="UD-CONFIG-NOTIFY",
            keys="channels, routes, retry",
            remedy="fix the notifications file (docs/notifications.md)",
        )
        written = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat()
        return cls(file, str(path), since=written)

    def channels_for(self, event: str, team: str, env: str | None) -> list[str]:
        """The channels an event of `team` in `env` goes to, each once, in the file's order."""
        out: list[str] = []
        for route in self.file.routes:
            if "*" not in route.events and event not in route.events:
                continue
            if route.teams and team not in route.teams:
                continue
            if route.envs and env not in route.envs:
                continue
            out += [c for c in route.channels if c not in out]
        return out
