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
from functools import lru_cache
from json.encoder import encode_basestring
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from unified_delivery.errors import UDError
from unified_delivery.ledger.keys import LedgerKey, fingerprint, verify_with
from unified_delivery.redaction import REDACTED, redact  # noqa: F401  (REDACTED: the ledger's marker)

if TYPE_CHECKING:
    from unified_delivery.ledger.checkpoints import Checkpoint

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
    # Ed25519 over `hash` with the ledger key (keys.py); empty on entries written before signing.
    sa.Column("signature", sa.String(128)),
    sa.Index("ix_ud_ledger_unit_env", "unit", "env"),
    sa.Index("ix_ud_ledger_action", "action"),
)
_COLUMNS = tuple(ledger_table.c)
# Built once: constructing a statement costs more than running it on SQLite.
_HEAD = (
    sa.select(ledger_table.c.seq, ledger_table.c.hash).order_by(ledger_table.c.seq.desc()).limit(1)
)
_INSERT = ledger_table.insert()


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _enc(value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is int:
        return str(value)  # what JSON writes for an int, without the encoder's cost
    if type(value) is str:
        return encode_basestring(value)  # what the encoder itself calls, with ensure_ascii=False
    return _ENCODER.encode(value)


@lru_cache(maxsize=8192)
def _enc_name(value: Any) -> str:
    """_enc of the few values that repeat across entries (action, principal, unit, env)."""
    return _enc(value)


def entry_hash(prev_hash, seq, ts, action, principal, unit, env, version, payload_json) -> str:
    """sha256(prev_hash + canonical_json(fields with the payload dict)).

    Built around the stored payload text instead of re-serialising the parsed dict: it
    yields the same bytes for an honest entry, and any edit of the stored text (even a
    semantically equal one) breaks the hash. It is also what makes verify fast.
    """
    body = (
        f'{{"action":{_enc_name(action)},"env":{_enc_name(env)},"payload":{payload_json},'
        f'"principal":{_enc_name(principal)},"seq":{_enc(seq)},"ts":{_enc(ts)},'
        f'"unit":{_enc_name(unit)},"version":{_enc(version)}}}'
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
    signature: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# What verify can name: an entry missing (gap), entries out of order or unlinked (swap), an
# entry changed in place (rewritten), entries written without the ledger key (forged: also a
# history re-hashed from an edit on), an unsigned entry among signed ones, the history cut
# short of a checkpoint (truncated), or signed with another key than the checkpoint's.
FINDINGS = ("gap", "swap", "rewritten", "forged", "unsigned", "truncated", "key-changed")


@dataclass(frozen=True)
class VerifyReport:
    """`count` is the number of entries that verified before the first bad one."""

    ok: bool
    count: int
    first_bad_seq: int | None = None
    reason: str | None = None
    finding: str | None = None  # one of FINDINGS when not ok
    signed_from: int | None = None  # the first signed entry (older ones predate signing)
    key: str | None = None  # fingerprint of the public key the signatures were checked with
    checkpoint_seq: int | None = None  # the checkpoint the chain was held against
    signatures_checked: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _entry(row) -> LedgerEntry:
    try:
        payload = json.loads(row.payload)
    except ValueError as exc:
        raise UDError(
            "UD-LEDGER-CORRUPT",
            f"ledger entry {row.seq} has an unreadable payload: {exc}",
            "run `verify()` on the ledger and restore it from a backup",
        ) from exc
    return LedgerEntry(
        row.seq,
        row.ts,
        row.action,
        row.principal,
        row.unit,
        row.env,
        row.version,
        payload,
        row.prev_hash,
        row.hash,
        row.signature or None,
    )


def _transient(exc: DBAPIError) -> bool:
    """A lost race (duplicate seq or prev_hash), a busy SQLite file, a Postgres
    serialization/deadlock abort."""
    if isinstance(exc, IntegrityError):
        return True
    text = str(exc.orig).lower()
    return (
        "locked" in text
        or "busy" in text
        or getattr(exc.orig, "pgcode", None) in ("40001", "40P01")
    )


class Ledger:
    """The ledger at `url`; with `key`, every entry it appends is signed (LedgerResource always
    gives the platform's key; a Ledger made by hand for reading or tests may have none)."""

    def __init__(self, url: str, key: LedgerKey | None = None):
        self.url = url
        self.key = key
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
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            event.listen(engine, "connect", _sqlite_pragmas)
        try:
            metadata.create_all(engine)
        except DBAPIError:
            # Another process created it between the check and the CREATE.
            if not sa.inspect(engine).has_table(ledger_table.name):
                raise
        _add_signature_column(engine)
        return engine

    def dispose(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def append(
        self,
        action: str,
        *,
        principal: str,
        unit: str | None = None,
        env: str | None = None,
        version: str | None = None,
        payload: dict | None = None,
    ) -> LedgerEntry:
        if not action or not principal:
            raise ValueError("a ledger entry needs an action and a principal")
        if payload is not None and not isinstance(payload, dict):
            raise TypeError(f"ledger payload must be a dict, not {type(payload).__name__}")
        # Secrets must never reach the ledger (it is exported for audit), whoever forgot.
        payload_json = canonical_json(redact(payload or {}))
        last: DBAPIError | None = None
        for attempt in range(_RETRIES):
            try:
                with self.engine.begin() as conn:
                    head = conn.execute(_HEAD).first()
                    seq, prev = (head.seq + 1, head.hash) if head else (1, GENESIS)
                    ts = utc_iso()
                    digest = entry_hash(
                        prev, seq, ts, action, principal, unit, env, version, payload_json
                    )
                    signature = self.key.sign(digest.encode()) if self.key else None
                    conn.execute(
                        _INSERT,
                        {
                            "seq": seq,
                            "ts": ts,
                            "action": action,
                            "principal": principal,
                            "unit": unit,
                            "env": env,
                            "version": version,
                            "payload": payload_json,
                            "prev_hash": prev,
                            "hash": digest,
                            "signature": signature,
                        },
                    )
                return LedgerEntry(
                    seq,
                    ts,
                    action,
                    principal,
                    unit,
                    env,
                    version,
                    json.loads(payload_json),
                    prev,
                    digest,
                    signature,
                )
            except (IntegrityError, OperationalError) as exc:
                if not _transient(exc):
                    raise
                last = exc
                time.sleep(random.uniform(0.001, min(0.05, 0.002 * (attempt + 1))))
        raise UDError(
            "UD-LEDGER-CONTENDED",
            f"could not append to the ledger after {_RETRIES} attempts: {last}",
            "too many concurrent writers; retry, or move the ledger to Postgres",
        ) from last

    def _select(self, unit=None, env=None, action=None, since=None, until=None):
        t = ledger_table
        query = sa.select(*_COLUMNS)
        for column, value in ((t.c.unit, unit), (t.c.env, env)):
            if value is not None:
                query = query.where(column == value)
        if isinstance(action, str):
            query = query.where(t.c.action == action)
        elif action is not None:  # any of several actions, decided by the database
            query = query.where(t.c.action.in_(tuple(action)))
        if since is not None:
            query = query.where(t.c.ts >= utc_iso(since))
        if until is not None:
            query = query.where(t.c.ts < utc_iso(until))
        return query

    def entries(
        self,
        *,
        unit: str | None = None,
        env: str | None = None,
        action: str | Sequence[str] | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        after_seq: int | None = None,
    ) -> list[LedgerEntry]:
        """Entries in seq order; `since` is inclusive, `until` exclusive; `after_seq`: only
        entries after that one (a reader that keeps its place, as the notifier does)."""
        query = self._select(unit, env, action, since, until).order_by(ledger_table.c.seq)
        if after_seq is not None:
            query = query.where(ledger_table.c.seq > after_seq)
        with self.engine.connect() as conn:
            return [_entry(row) for row in conn.execute(query)]

    def latest(
        self,
        *,
        unit: str | None = None,
        env: str | None = None,
        action: str | Sequence[str] | None = None,
        predicate: Callable[[LedgerEntry], bool] | None = None,
    ) -> LedgerEntry | None:
        query = self._select(unit, env, action).order_by(ledger_table.c.seq.desc())
        if predicate is None:
            query = query.limit(1)
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=500).execute(query):
                entry = _entry(row)
                if predicate is None or predicate(entry):
                    return entry
        return None

    def latest_by_place(self, action: str | Sequence[str]) -> dict[tuple[str, str], LedgerEntry]:
        """The newest entry of `action` (or any of several) for every unit and environment,
        in one query: what each environment last recorded, without reading its history."""
        t = ledger_table
        newest = (
            self._select(action=action)
            .with_only_columns(sa.func.max(t.c.seq))
            .where(t.c.unit.is_not(None), t.c.env.is_not(None))
            .group_by(t.c.unit, t.c.env)
        )
        query = sa.select(*_COLUMNS).where(t.c.seq.in_(newest))
        with self.engine.connect() as conn:
            entries = [_entry(row) for row in conn.execute(query)]
        return {(e.unit or "", e.env or ""): e for e in entries}

    def head(self) -> LedgerEntry | None:
        return self.latest()

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(ledger_table)).scalar_one()

    def verify(
        self,
        *,
        expected_head: str | None = None,
        checkpoint: Checkpoint | None = None,
        public_key: str | None = None,
        full: bool = False,
    ) -> VerifyReport:
        """Walk the chain and name the first thing that does not fit (FINDINGS).

        The chain alone cannot tell a truncated tail from a shorter history, nor a history
        rewritten and re-hashed from the first edit on: signatures tell the second (only the
        ledger key signs), a checkpoint kept elsewhere the first (`checkpoint`, or a head hash
        recorded elsewhere earlier as `expected_head`). Signatures are checked with
        `public_key`, else the checkpoint's, else this ledger's key: the head's and the
        checkpointed entry's always (each covers every entry before it through the chain),
        every one with `full` or when the head's does not verify (to name the first bad one).
        """
        expected, prev, anchored = 1, GENESIS, expected_head is None
        key = (
            public_key
            or (checkpoint.key if checkpoint else None)
            or (self.key.public if self.key else None)
        )
        report = _Walk(key, full, checkpoint, lambda: self._first_forged(key) if key else None)
        # Every column in the table's order, as the loop unpacks them (the same SELECT as
        # *_COLUMNS, which type checkers cannot count).
        query = sa.select(ledger_table).order_by(ledger_table.c.seq)
        with self.engine.connect() as conn:
            for (
                seq,
                ts,
                action,
                principal,
                unit,
                env,
                version,
                payload,
                prev_hash,
                digest,
                signature,
            ) in conn.execution_options(yield_per=5000).execute(query):
                if seq != expected:
                    if seq > expected:
                        return report.bad(
                            expected - 1,
                            expected,
                            "gap",
                            f"entry {expected} is missing (next is {seq})",
                        )
                    return report.bad(
                        expected - 1,
                        seq,
                        "swap",
                        f"entry {seq} is out of sequence (expected {expected})",
                    )
                if prev_hash != prev:
                    return report.bad(
                        expected - 1,
                        seq,
                        "swap",
                        f"entry {seq} does not link to entry {seq - 1}: "
                        "an entry was removed, inserted or moved here",
                    )
                if (
                    entry_hash(prev_hash, seq, ts, action, principal, unit, env, version, payload)
                    != digest
                ):
                    return report.bad(
                        expected - 1,
                        seq,
                        "rewritten",
                        f"entry {seq} does not match its hash: its content or hash was changed",
                    )
                problem = report.entry(seq, digest, signature)
                if problem:
                    return problem
                anchored = anchored or digest == expected_head
                prev, expected = digest, expected + 1
        count = expected - 1
        if not anchored:
            return report.bad(
                count,
                expected,
                "truncated",
                f"expected head {expected_head} is not in the chain: "
                f"entries after {count} were removed, or the history was rewritten",
            )
        return report.finish(count)

    def _first_forged(self, key: str) -> tuple[int, int] | None:
        """(count of good entries before it, seq) of the first entry whose signature does not
        verify."""
        query = sa.select(
            ledger_table.c.seq, ledger_table.c.hash, ledger_table.c.signature
        ).order_by(ledger_table.c.seq)
        with self.engine.connect() as conn:
            for seq, digest, signature in conn.execution_options(yield_per=5000).execute(query):
                if signature and not verify_with(key, signature, digest.encode()):
                    return seq - 1, seq
        return None


class _Walk:
    """What verify learns on its way through the chain: signatures, the checkpoint."""

    def __init__(
        self,
        key: str | None,
        full: bool,
        checkpoint: Checkpoint | None,
        first_forged: Callable[[], tuple[int, int] | None],
    ):
        self.key, self.full, self.checkpoint, self.first_forged = (
            key,
            full,
            checkpoint,
            first_forged,
        )
        self.signed_from: int | None = None
        self.head: tuple[int, str, str | None] | None = None
        self.checked = 0

    def _report(
        self,
        ok: bool,
        count: int,
        seq: int | None = None,
        finding: str | None = None,
        reason: str | None = None,
    ) -> VerifyReport:
        return VerifyReport(
            ok,
            count,
            seq,
            reason,
            finding,
            self.signed_from,
            fingerprint(self.key) if self.key else None,
            self.checkpoint.seq if self.checkpoint else None,
            self.checked,
        )

    def bad(self, count: int, seq: int, finding: str, reason: str) -> VerifyReport:
        return self._report(False, count, seq, finding, reason)

    def _signed(self, digest: str, signature: str) -> bool:
        self.checked += 1
        return verify_with(self.key or "", signature, digest.encode())

    def entry(self, seq: int, digest: str, signature: str | None) -> VerifyReport | None:
        if signature:
            self.signed_from = self.signed_from or seq
        elif self.signed_from is not None:
            return self.bad(
                seq - 1,
                seq,
                "unsigned",
                f"entry {seq} has no signature, and entries since "
                f"{self.signed_from} all do: it was written without the ledger's code or key",
            )
        cp = self.checkpoint
        if cp is not None and seq == cp.seq:
            if digest != cp.hash:
                found = self.first_forged()  # re-hashed from an earlier edit: name where it starts
                if found and found[1] <= seq:
                    return self.bad(
                        found[0],
                        found[1],
                        "forged",
                        f"entries from {found[1]} on are not signed by the ledger key: rewritten "
                        f"and re-hashed without it (checkpoint {cp.seq} disagrees too)",
                    )
                return self.bad(
                    seq - 1,
                    seq,
                    "rewritten",
                    f"entry {seq} is not the one checkpoint {cp.seq} of "
                    f"{cp.ts[:19]} recorded: the history was rewritten from there on",
                )
            if signature and self.key and not self._signed(digest, signature):
                return self.bad(
                    seq - 1,
                    seq,
                    "forged",
                    f"entry {seq}, the checkpointed head, is not signed by the key "
                    f"the checkpoint names ({fingerprint(self.key)})",
                )
        elif signature and self.key and self.full and not self._signed(digest, signature):
            return self.bad(
                seq - 1,
                seq,
                "forged",
                f"entry {seq} is not signed by the ledger key ({fingerprint(self.key)}): "
                "written, or re-hashed, without it",
            )
        self.head = (seq, digest, signature)
        return None

    def finish(self, count: int) -> VerifyReport:
        cp = self.checkpoint
        if cp is not None and count < cp.seq:
            return self.bad(
                count,
                count + 1,
                "truncated",
                f"the chain ends at entry {count}, but checkpoint {cp.seq} of {cp.ts[:19]} saw "
                f"entries up to {cp.seq}: entries {count + 1}..{cp.seq} were removed",
            )
        if cp is not None and cp.first_signed and self.signed_from != cp.first_signed:
            return self.bad(
                count,
                self.signed_from or 1,
                "unsigned",
                f"checkpoint {cp.seq} saw entries signed from {cp.first_signed} on; now "
                f"{'none are' if self.signed_from is None else f'from {self.signed_from}'}",
            )
        if (
            self.head
            and self.head[2]
            and self.key
            and not self.full
            and not self._signed(self.head[1], self.head[2])
        ):
            found = self.first_forged()
            seq = found[1] if found else self.head[0]
            return self.bad(
                found[0] if found else count,
                seq,
                "forged",
                f"entry {seq} is not signed by the ledger key "
                f"({fingerprint(self.key)}): written, or re-hashed, without it",
            )
        return self._report(True, count)


_LEDGERS: dict[str, Ledger] = {}
_LEDGERS_LOCK = threading.Lock()


def ledger_for(url: str, key: LedgerKey | None = None) -> Ledger:
    """One Ledger (and engine) per URL per process, shared by every resource instance."""
    with _LEDGERS_LOCK:
        if url not in _LEDGERS:
            _LEDGERS[url] = Ledger(url, key)
        elif key is not None and _LEDGERS[url].key is None:
            _LEDGERS[url].key = key
        return _LEDGERS[url]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Write-ahead logging: a commit is an append to the log, not a rewrite of the journal,
    and readers do not block the writer (22 ms an append became under 1 ms here:
    docs/performance.md). synchronous=NORMAL keeps every committed entry across a crash of
    the process; a power loss may lose the last ones (the chain stays whole), which a
    checkpoint kept elsewhere then shows."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _add_signature_column(engine: sa.Engine) -> None:
    """Ledgers made before entries were signed get the column (their old entries stay unsigned)."""
    columns = {c["name"] for c in sa.inspect(engine).get_columns(ledger_table.name)}
    if "signature" not in columns:
        try:
            with engine.begin() as conn:
                conn.execute(
                    sa.text(f"ALTER TABLE {ledger_table.name} ADD COLUMN signature VARCHAR(128)")
                )
        except DBAPIError:  # another process added it first
            if "signature" not in {
                c["name"] for c in sa.inspect(engine).get_columns(ledger_table.name)
            }:
                raise
