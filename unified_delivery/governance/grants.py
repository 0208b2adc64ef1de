"""Run grants: who a Dagster run acts for, decided by the step code of that run alone.

A run never carries a user's token, and since anyone who can read the run list (the UI,
the run storage) sees its tags, it carries no grant either. `ud` records a grant for the
run it is about to start, and a sensor for each run it requests, in the platform's own
store (a table beside the ledger: the home's SQLite file, private to its owner, or the
shared Postgres at scale). A grant names the principal and is bound to

- the run: its id (runs `ud` starts) or its run key (sensor runs, whose id is not known
  when they are requested); a run-key grant is claimed by the first run that uses it and
  by no other,
- the job, and a digest of the run config (the ops' and resources' config: what the run
  will do), and the unit and environment,

and signed with a key derived from the signing key, so it is never a token and a row
written into the table by hand names no one. The step code looks the grant up for its own
run and checks every binding; a run with no grant acts for the least-privileged principal.

A sensor's dry run (`sensorDryRun`) records grants for exactly the requests the sensor
made; launching one of them runs what the sensor decided, as the sensor, once. Nothing a
caller sees or copies (tags, run keys, dry-run output) lets it change the job, the config,
the unit or the environment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from ..errors import NotPermitted

_metadata = sa.MetaData()
grants_table = sa.Table(
    "ud_run_grants",
    _metadata,
    sa.Column("bound_to", sa.String(512), primary_key=True),  # "run:<run id>" or "key:<run key>"
    sa.Column("principal", sa.String(255), nullable=False),
    sa.Column("job", sa.String(255), nullable=False),
    sa.Column("unit", sa.String(255), nullable=False),
    sa.Column("env", sa.String(255), nullable=False),
    sa.Column("config_digest", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("signature", sa.String(64), nullable=False),
    sa.Column(
        "claimed_by", sa.String(255)
    ),  # the run that used it (a run-key grant serves one run)
)
_READY: set[int] = set()
_READY_LOCK = threading.Lock()
# A run-key grant waits for the daemon (or a hook, or `ud sensors tick`) to launch its run.
REQUEST_TTL_S = 86400
RUN_TTL_S = 86400


def config_digest(run_config: dict | None) -> str:
    """What the run will do: its config without the loggers (log levels change nothing)."""
    doc = {k: v for k, v in (run_config or {}).items() if k != "loggers"}
    return hashlib.sha256(
        json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()


def _grant_key(signing_key: bytes) -> bytes:
    # A separate key: a grant's signature can never verify as a token's, nor the reverse.
    return hmac.new(signing_key, b"ud run grant v1", hashlib.sha256).digest()


def _sign(key: bytes, fields: dict[str, Any]) -> str:
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hmac.new(_grant_key(key), body, hashlib.sha256).hexdigest()


def _table(engine: sa.Engine) -> sa.Table:
    with _READY_LOCK:
        if id(engine) not in _READY:
            try:
                _metadata.create_all(engine)
            except DBAPIError:  # another process created it first
                if not sa.inspect(engine).has_table(grants_table.name):
                    raise
            _READY.add(id(engine))
    return grants_table


@dataclass(frozen=True)
class Grant:
    bound_to: str
    principal: str
    job: str
    unit: str
    env: str
    config_digest: str
    expires_at: float

    def fields(self) -> dict[str, Any]:
        return {
            "bound_to": self.bound_to,
            "principal": self.principal,
            "job": self.job,
            "unit": self.unit,
            "env": self.env,
            "config_digest": self.config_digest,
            "expires_at": round(self.expires_at, 3),
        }


def record(engine: sa.Engine, key: bytes, grant: Grant) -> None:
    """Store (or, for a request asked again, renew) a grant. A grant a run already claimed is
    never renewed for anyone else."""
    t = _table(engine)
    fields = grant.fields()
    row = {**fields, "signature": _sign(key, fields), "claimed_by": None}
    with engine.begin() as conn:
        existing = conn.execute(
            sa.select(t.c.claimed_by).where(t.c.bound_to == grant.bound_to)
        ).first()
        if existing is None:
            conn.execute(t.insert().values(**row))
        elif existing.claimed_by is None:
            conn.execute(t.update().where(t.c.bound_to == grant.bound_to).values(**row))


def for_run(
    engine: sa.Engine,
    key: bytes,
    principal: str,
    *,
    run_id: str,
    job: str,
    unit: str,
    env: str,
    run_config: dict | None,
    ttl_s: float = RUN_TTL_S,
) -> None:
    record(
        engine,
        key,
        Grant(
            f"run:{run_id}",
            principal,
            job,
            unit,
            env,
            config_digest(run_config),
            time.time() + ttl_s,
        ),
    )


def for_request(
    engine: sa.Engine,
    key: bytes,
    principal: str,
    *,
    run_key: str,
    job: str,
    unit: str,
    env: str,
    run_config: dict | None,
    ttl_s: float = REQUEST_TTL_S,
) -> None:
    record(
        engine,
        key,
        Grant(
            f"key:{run_key}",
            principal,
            job,
            unit,
            env,
            config_digest(run_config),
            time.time() + ttl_s,
        ),
    )


def _forged(message: str) -> NotPermitted:
    return NotPermitted(
        "UD-AUTH-GRANT-FORGED",
        message,
        "start promotions with `ud` (or let a sensor start them), not by copying a run",
    )


def principal_for(
    engine: sa.Engine,
    key: bytes,
    *,
    run_id: str,
    run_key: str | None,
    job: str,
    run_config: dict | None,
    unit: str | None = None,
    env: str | None = None,
    now: float | None = None,
) -> str | None:
    """The principal the run `run_id` acts for, or None when no grant was recorded for it.
    NotPermitted when a grant exists but does not fit this run (copied, altered, claimed)."""
    t = _table(engine)
    now = time.time() if now is None else now
    candidates = [f"run:{run_id}"] + ([f"key:{run_key}"] if run_key else [])
    with engine.begin() as conn:
        rows = {
            r.bound_to: r for r in conn.execute(sa.select(t).where(t.c.bound_to.in_(candidates)))
        }
        row = rows.get(candidates[0]) or (rows.get(candidates[1]) if len(candidates) > 1 else None)
        if row is None:
            return None
        fields = {
            c: getattr(row, c)
            for c in ("bound_to", "principal", "job", "unit", "env", "config_digest")
        }
        fields["expires_at"] = round(row.expires_at, 3)
        if not hmac.compare_digest(row.signature, _sign(key, fields)):
            raise _forged(f"the grant recorded for run {run_id} is not signed by this platform")
        if row.expires_at < now and row.claimed_by != run_id:
            raise NotPermitted(
                "UD-AUTH-GRANT-EXPIRED",
                f"the grant for run {run_id} expired before the run started",
                "start the promotion again",
            )
        if row.job != job:
            raise _forged(f"the grant was issued for job {row.job}, and this run is {job}")
        if row.config_digest != config_digest(run_config):
            raise _forged(f"run {run_id} does not carry the configuration its grant was issued for")
        if (unit and row.unit != unit) or (env and row.env != env):
            raise _forged(f"the grant was issued for {row.unit} in {row.env}")
        if row.claimed_by is None:
            # Atomic: of two runs that race for one run-key grant, exactly one claims it.
            claimed = conn.execute(
                t.update()
                .where(t.c.bound_to == row.bound_to)
                .where(t.c.claimed_by.is_(None))
                .values(claimed_by=run_id)
            ).rowcount
            if claimed != 1:
                raise _forged(f"the grant of run key {run_key} was used by another run")
        elif row.claimed_by != run_id:
            raise _forged(
                f"the grant of run key {run_key} was used by run {row.claimed_by}, not {run_id}"
            )
        return row.principal
