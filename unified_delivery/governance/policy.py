"""Who may do what, where: principals, roles per environment, agent quotas, change freezes.

Read from the platform's policy file (`resources/policy.yaml`). Roles: `deploy` (promote
into and roll back an environment), `approve`, `override` (break-glass), `admin` (issue
tokens). `*` as an environment means every environment.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import NotPermitted
from ..events import CHANGES
from .tokens import parse_duration

Role = Literal["deploy", "approve", "override", "admin"]
ROLES: tuple[str, ...] = Role.__args__
PRINCIPAL_RE = re.compile(r"^(human|service|agent):[A-Za-z0-9_.@/-]+$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quotas(Strict):
    promotions_per_day: dict[str, int] = Field(
        default_factory=dict,
        description="per environment: changes (promotions and rollbacks) a day, 0 or more",
    )
    spend_per_month: float | None = Field(
        default=None, ge=0, le=1e9, description="spend a month, in the price table's currency"
    )

    @field_validator("promotions_per_day")
    @classmethod
    def _counts(cls, v: dict[str, int]) -> dict[str, int]:
        bad = {env: n for env, n in v.items() if not 0 <= n <= 100_000}
        if bad:
            raise ValueError(f"a quota is a count from 0 to 100000: {bad}")
        return v


class Principal(Strict):
    roles: dict[str, list[Role]] = Field(default_factory=dict)
    email: str | None = None  # to recognise the author of a commit (four-eyes)
    quotas: Quotas = Field(default_factory=Quotas)


class Freeze(Strict):
    env: str
    start: datetime | None = None  # a fixed window ...
    end: datetime | None = None
    cron: str | None = None  # ... or a recurring one: starts on the cron, lasts `duration`
    duration: str | None = None
    timezone: str = "UTC"
    reason: str = ""

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not a time zone") from None
        return v

    @model_validator(mode="after")
    def _shape(self) -> "Freeze":
        if self.cron:
            from croniter import croniter

            if not croniter.is_valid(self.cron):
                raise ValueError(f"cron {self.cron!r} does not parse")
            if not self.duration:
                raise ValueError("a cron freeze needs a duration (e.g. 62h)")
            parse_duration(self.duration)
        elif not (self.start and self.end and self.start < self.end):
            raise ValueError("a freeze needs start < end, or cron and duration")
        return self

    def window(self, now: datetime) -> tuple[datetime, datetime] | None:
        tz = ZoneInfo(self.timezone)
        local = now.astimezone(tz)
        if self.cron:
            from croniter import croniter

            start = croniter(self.cron, local).get_prev(datetime)
            end = start + timedelta(seconds=parse_duration(self.duration or "0s"))
        else:
            assert self.start is not None and self.end is not None  # _shape: both, without a cron
            start = self.start if self.start.tzinfo else self.start.replace(tzinfo=tz)
            end = self.end if self.end.tzinfo else self.end.replace(tzinfo=tz)
        return (start, end) if start <= local < end else None


class Defaults(Strict):
    ui_principal: str = "service:dagster-ui"  # a run started without a grant (the Dagster UI)
    local_principal: str = (
        "human:local-operator"  # `ud` without a token, on the machine that holds the key
    )


class PolicyFile(Strict):
    defaults: Defaults = Field(default_factory=Defaults)
    principals: dict[str, Principal] = Field(default_factory=dict)
    freezes: list[Freeze] = Field(default_factory=list)

    @field_validator("principals")
    @classmethod
    def _names(cls, v: dict) -> dict:
        for name in v:
            if not PRINCIPAL_RE.match(name) or len(name) > 200:
                raise ValueError(
                    f"{name[:60]!r} is not a principal name (human:NAME, service:NAME or "
                    "agent:NAME)"
                )
        return v

    @model_validator(mode="after")
    def _defaults_are_principals(self) -> "PolicyFile":
        # A run without a grant acts for ui_principal: one the file does not name would have no
        # roles, and every UI run would fail for a reason nobody could read. Refuse it here.
        # Only a name written in the file: left implicit, a missing UI principal means the UI
        # may do nothing, which a policy may well want.
        for field in sorted(self.defaults.model_fields_set & {"ui_principal", "local_principal"}):
            name = getattr(self.defaults, field)
            if name not in self.principals:
                raise ValueError(f"defaults.{field} {name!r} is not one of the principals below")
        return self


class Governance:
    def __init__(self, policy: PolicyFile | None = None, source: str = "(built in)"):
        self.policy = policy or PolicyFile()
        self.source = source

    @classmethod
    def default(cls) -> "Governance":
        """Without a policy file: the local operator may do everything, the UI may deploy to
        staging."""
        return cls(
            PolicyFile(
                principals={
                    "human:local-operator": Principal(
                        roles={"*": ["deploy", "approve", "override", "admin"]}
                    ),
                    "service:dagster-ui": Principal(roles={"staging": ["deploy"]}),
                }
            )
        )

    @classmethod
    def from_file(cls, path: Path) -> "Governance":
        from ..settings_files import read_settings

        policy = read_settings(
            path,
            PolicyFile,
            code="UD-CONFIG-POLICY",
            keys="defaults, principals, freezes",
            remedy="fix the policy file",
            code_for=lambda loc: (
                "UD-CONFIG-FREEZE" if loc and loc[0] == "freezes" else ("UD-CONFIG-POLICY")
            ),
        )
        return cls(policy, str(path))

    @property
    def ui_principal(self) -> str:
        return self.policy.defaults.ui_principal

    @property
    def local_principal(self) -> str:
        return self.policy.defaults.local_principal

    def principal(self, name: str) -> Principal:
        found = self.policy.principals.get(name)
        if found is None:
            raise NotPermitted(
                "UD-AUTH-UNKNOWN-PRINCIPAL",
                f"{name} is not a principal of this platform",
                "an admin adds principals to the platform's policy (a reviewed change)",
            )
        return found

    def roles(self, name: str, env: str) -> set[str]:
        p = self.principal(name)
        return set(p.roles.get(env, [])) | set(p.roles.get("*", []))

    def allowed(self, name: str, role: str, env: str) -> bool:
        try:
            return role in self.roles(name, env)
        except NotPermitted:
            return False

    def authorize(self, name: str, role: str, env: str) -> None:
        if role not in self.roles(name, env):
            raise NotPermitted(
                "UD-AUTH-FORBIDDEN",
                f"{name} may not {role} in {env}",
                f"ask someone with the {role} role in {env} to act; roles change only through a "
                "reviewed change of the platform's policy, never to get past a refusal",
            )

    def check_quota(self, name: str, env: str, ledger, now: datetime | None = None) -> None:
        """Agents' daily quota of changes to `env`, counted from the ledger (so restarts cannot
        reset it): promotions and rollbacks alike, since a rollback changes what runs as much."""
        limit = self.principal(name).quotas.promotions_per_day.get(env)
        if limit is None:
            return
        used = self.quota_used(name, env, ledger, now)
        if used >= limit:
            raise NotPermitted(
                "UD-AUTH-QUOTA",
                f"{name} has used its quota of {limit} changes (promotions and "
                f"rollbacks) to {env} per day",
                "wait for the quota to free up, or ask a human to promote",
            )

    def quota_used(self, name: str, env: str, ledger, now: datetime | None = None) -> int:
        """Changes (promotions and rollbacks) `name` made to `env` in the last 24 hours."""
        since = (now or datetime.now(timezone.utc)) - timedelta(days=1)
        return sum(
            1
            for action in CHANGES
            for e in ledger.entries(env=env, action=action, since=since)
            if e.principal == name
        )

    def active_freeze(
        self, env: str, now: datetime | None = None
    ) -> tuple[Freeze, tuple[datetime, datetime]] | None:
        now = now or datetime.now(timezone.utc)
        for freeze in self.policy.freezes:
            if freeze.env in (env, "*") and (window := freeze.window(now)):
                return freeze, window
        return None

    def is_author(self, name: str, author: str) -> bool:
        """Whether a principal wrote the change: its email in a commit author, or its name as
        registrant."""
        if not author:
            return False
        p = self.policy.principals.get(name)
        local = name.split(":", 1)[1]
        return bool(
            (p and p.email and p.email.lower() in author.lower())
            or author.strip().lower() == local.lower()
        )
