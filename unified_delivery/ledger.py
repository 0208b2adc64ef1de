"""The audit ledger: append-only, hash-chained, tamper-evident.

Every gate result, promotion, rollback, approval and override lands here, and audit
export, DORA metrics and cost showback read it back, so it has to be trustworthy on its
own: each entry's hash covers its content and its predecessor's hash, and `verify()`
names the first entry that no longer fits. Plain SQLAlchemy Core with portable SQL, so
the embedded SQLite file and a shared Postgres behave the same.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import dagster as dg
import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from unified_delivery.errors import UDError
from unified_delivery.home import Home
from unified_delivery.redaction import REDACTED, redact  # noqa: F401  (REDACTED: the ledger's marker)

GENESIS = "0" * 64
_RETRIES = 50
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)

metadata = sa.MetaData()
ledger_table = sa.Table(
    "ud_ledger",
    metadata,
    # Assigned by the appender: the chain needs gap-free numbering, which autoincrement
    # does not promise (Postgres sequences skip values on rollback).
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ts", sa.String(40), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("principal", sa.String(255), nullable=False),
    sa.Column("unit", sa.String(255)),
    sa.Column("env", sa.String(255)),
    sa.Column("version", sa.String(255)),
    sa.Column("payload", sa.Text, nullable=False),
    # UNIQUE: two writers that read the same head cannot both extend it; the loser gets
    # an IntegrityError and retries on the new head, so the chain never forks.
    sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_ud_ledger_unit_env", "unit", "env"),
    sa.Index("ix_ud_ledger_action", "action"),
)
_COLUMNS = tuple(ledger_table.c)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _enc(value: Any) -> str:
    return "null" if value is None else _ENCODER.encode(value)


def entry_hash(prev_hash, seq, ts, action, principal, unit, env, version, payload_json) -> str:
    """sha256(prev_hash + canonical_json(fields with the payload dict)).

    Built around the stored payload text instead of re-serialising the parsed dict: it
    yields the same bytes for an honest entry, and any edit of the stored text (even a
    semantically equal one) breaks the hash. It is also what makes verify fast.
    """
    body = (
        f'{{"action":{_enc(action)},"env":{_enc(env)},"payload":{payload_json},'
        f'"principal":{_enc(principal)},"seq":{_enc(seq)},"ts":{_enc(ts)},'
        f'"unit":{_enc(unit)},"version":{_enc(version)}}}'
    )
    return hashlib.sha256(f"{prev_hash}{body}".encode("utf-8", "surrogatepass")).hexdigest()


def utc_iso(value: datetime | str | None = None) -> str:
    """One fixed-width UTC format, so string comparison in SQL is time comparison."""
    if value is None:
        value = datetime.now(timezone.utc)
    elif isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    ts: str
    action: str
    principal: str
    unit: str | None
    env: str | None
    version: str | None
    payload: dict
    prev_hash: str
    hash: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class VerifyReport:
    """`count` is the number of entries that verified before the first bad one."""

    ok: bool
    count: int
    first_bad_seq: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _entry(row) -> LedgerEntry:
    try:
        payload = json.loads(row.payload)
    except ValueError as exc:
        raise UDError("UD-LEDGER-CORRUPT", f"ledger entry {row.seq} has an unreadable payload: {exc}",
                      "run `verify()` on the ledger and restore it from a backup") from exc
    return LedgerEntry(row.seq, row.ts, row.action, row.principal, row.unit, row.env,
                       row.version, payload, row.prev_hash, row.hash)


def _transient(exc: DBAPIError) -> bool:
    """A lost race (duplicate seq or prev_hash), a busy SQLite file, a Postgres serialization/deadlock abort."""
    if isinstance(exc, IntegrityError):
        return True
    text = str(exc.orig).lower()
    return "locked" in text or "busy" in text or getattr(exc.orig, "pgcode", None) in ("40001", "40P01")


class Ledger:
    def __init__(self, url: str):
        self.url = url
        self._engine: sa.Engine | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> sa.Engine:
        with self._lock:
            if self._engine is None:
                self._engine = self._connect()
            return self._engine

    def _connect(self) -> sa.Engine:
        url = sa.make_url(self.url)
        kwargs: dict[str, Any] = {}
        if url.get_backend_name() == "sqlite":
            # Waiting out another writer beats failing; the retry loop covers the rest.
            kwargs["connect_args"] = {"timeout": 30}
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, **kwargs)
        try:
            metadata.create_all(engine)
        except DBAPIError:
            # Another process created it between the check and the CREATE.
            if not sa.inspect(engine).has_table(ledger_table.name):
                raise
        return engine

    def dispose(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def append(self, action: str, *, principal: str, unit: str | None = None, env: str | None = None,
               version: str | None = None, payload: dict | None = None) -> LedgerEntry:
        if not action or not principal:
            raise ValueError("a ledger entry needs an action and a principal")
        if payload is not None and not isinstance(payload, dict):
            raise TypeError(f"ledger payload must be a dict, not {type(payload).__name__}")
        # Secrets must never reach the ledger (it is exported for audit), whoever forgot.
        payload_json = canonical_json(redact(payload or {}))
        t = ledger_table
        last: DBAPIError | None = None
        for attempt in range(_RETRIES):
            try:
                with self.engine.begin() as conn:
                    head = conn.execute(sa.select(t.c.seq, t.c.hash).order_by(t.c.seq.desc()).limit(1)).first()
                    seq, prev = (head.seq + 1, head.hash) if head else (1, GENESIS)
                    ts = utc_iso()
                    digest = entry_hash(prev, seq, ts, action, principal, unit, env, version, payload_json)
                    conn.execute(t.insert().values(seq=seq, ts=ts, action=action, principal=principal, unit=unit,
                                                   env=env, version=version, payload=payload_json,
                                                   prev_hash=prev, hash=digest))
                return LedgerEntry(seq, ts, action, principal, unit, env, version,
                                   json.loads(payload_json), prev, digest)
            except (IntegrityError, OperationalError) as exc:
                if not _transient(exc):
                    raise
                last = exc
                time.sleep(random.uniform(0.001, min(0.05, 0.002 * (attempt + 1))))
        raise UDError("UD-LEDGER-CONTENDED", f"could not append to the ledger after {_RETRIES} attempts: {last}",
                      "too many concurrent writers; retry, or move the ledger to Postgres") from last

    def _select(self, unit=None, env=None, action=None, since=None, until=None):
        t = ledger_table
        query = sa.select(*_COLUMNS)
        for column, value in ((t.c.unit, unit), (t.c.env, env), (t.c.action, action)):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(t.c.ts >= utc_iso(since))
        if until is not None:
            query = query.where(t.c.ts < utc_iso(until))
        return query

    def entries(self, *, unit: str | None = None, env: str | None = None, action: str | None = None,
                since: datetime | str | None = None, until: datetime | str | None = None) -> list[LedgerEntry]:
        """Entries in seq order; `since` is inclusive, `until` exclusive."""
        query = self._select(unit, env, action, since, until).order_by(ledger_table.c.seq)
        with self.engine.connect() as conn:
            return [_entry(row) for row in conn.execute(query)]

    def latest(self, *, unit: str | None = None, env: str | None = None, action: str | None = None,
               predicate: Callable[[LedgerEntry], bool] | None = None) -> LedgerEntry | None:
        query = self._select(unit, env, action).order_by(ledger_table.c.seq.desc())
        if predicate is None:
            query = query.limit(1)
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=500).execute(query):
                entry = _entry(row)
                if predicate is None or predicate(entry):
                    return entry
        return None

    def head(self) -> LedgerEntry | None:
        return self.latest()

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(ledger_table)).scalar_one()

    def verify(self, *, expected_head: str | None = None) -> VerifyReport:
        """Walk the chain and name the first entry that does not fit.

        The chain alone cannot tell a truncated tail from a shorter history, nor a
        history rewritten and re-hashed from the first edit on. Pass `expected_head`, a
        hash recorded elsewhere earlier (an audit export, a release note): it must still
        be in the chain, or the entries after the last intact one count as removed.
        """
        expected, prev, anchored = 1, GENESIS, expected_head is None
        query = sa.select(*_COLUMNS).order_by(ledger_table.c.seq)
        with self.engine.connect() as conn:
            for seq, ts, action, principal, unit, env, version, payload, prev_hash, digest in (
                conn.execution_options(yield_per=5000).execute(query)
            ):
                if seq != expected:
                    bad, why = (expected, f"entry {expected} is missing (next is {seq})") if seq > expected \
                        else (seq, f"entry {seq} is out of sequence (expected {expected})")
                    return VerifyReport(False, expected - 1, bad, why)
                if prev_hash != prev:
                    return VerifyReport(False, expected - 1, seq, f"entry {seq} does not link to entry {seq - 1}: "
                                        "an entry was removed, inserted or moved here")
                if entry_hash(prev_hash, seq, ts, action, principal, unit, env, version, payload) != digest:
                    return VerifyReport(False, expected - 1, seq,
                                        f"entry {seq} does not match its hash: its content or hash was changed")
                anchored = anchored or digest == expected_head
                prev, expected = digest, expected + 1
        if not anchored:
            return VerifyReport(False, expected - 1, expected, f"expected head {expected_head} is not in the chain: "
                                f"entries after {expected - 1} were removed, or the history was rewritten")
        return VerifyReport(True, expected - 1)


_LEDGERS: dict[str, Ledger] = {}
_LEDGERS_LOCK = threading.Lock()


def ledger_for(url: str) -> Ledger:
    """One Ledger (and engine) per URL per process, shared by every resource instance."""
    with _LEDGERS_LOCK:
        if url not in _LEDGERS:
            _LEDGERS[url] = Ledger(url)
        return _LEDGERS[url]


class LedgerResource(dg.ConfigurableResource):
    """The ledger as a Dagster resource; Postgres at scale, the embedded SQLite file by default."""

    url: str = Field(default="", description="SQLAlchemy URL; empty means the embedded home's SQLite file.")

    def ledger(self) -> Ledger:
        # Resolved here, at run time, so one process can serve several homes.
        if self.url:
            return ledger_for(self.url)
        home = Home.current()
        if not home.root.exists():
            home.ensure()
        return ledger_for(home.ledger_url)

    def append(self, action: str, *, principal: str, unit: str | None = None, env: str | None = None,
               version: str | None = None, payload: dict | None = None) -> LedgerEntry:
        return self.ledger().append(action, principal=principal, unit=unit, env=env, version=version, payload=payload)
