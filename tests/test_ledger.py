"""The ledger: chain integrity, tamper detection, redaction and concurrent writers."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
import sqlite3
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from unified_delivery.ledger import GENESIS, REDACTED, Ledger, LedgerResource, ledger_for

COLUMNS = ("seq", "ts", "action", "principal", "unit", "env", "version", "payload", "prev_hash", "hash")


def spec_hash(entry) -> str:
    """The hash as the design states it, computed independently of the implementation."""
    body = {k: getattr(entry, k) for k in ("seq", "ts", "action", "principal", "unit", "env", "version", "payload")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256((entry.prev_hash + canonical).encode()).hexdigest()


def build(path: Path, n: int) -> Ledger:
    ledger = Ledger(f"sqlite:///{path}")
    for i in range(1, n + 1):
        ledger.append(
            ("gate", "promotion", "rollback")[i % 3],
            principal=("user:alice", "agent:release-bot")[i % 2],
            unit=("churn_model", "api", None)[i % 3],
            env=("staging", "production")[i % 2],
            version=f"v{i}" if i % 4 else None,
            payload={"i": i, "passed": i % 5 != 0, "note": "ünïcode ✓"},
        )
    return ledger


def rows(path: Path) -> dict[int, tuple]:
    with sqlite3.connect(path) as db:
        return {r[0]: r for r in db.execute(f"SELECT {', '.join(COLUMNS)} FROM ud_ledger ORDER BY seq")}


def sql(path: Path, statement: str, *params) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute(statement, params)
    db.close()


@pytest.fixture
def db(tmp_path) -> Path:
    build(tmp_path / "ledger.db", 10).dispose()
    return tmp_path / "ledger.db"


def check(path: Path, **kwargs):
    ledger = Ledger(f"sqlite:///{path}")
    try:
        return ledger.verify(**kwargs)
    finally:
        ledger.dispose()


def test_append_chains_entries_and_matches_the_spec_hash(tmp_path):
    ledger = build(tmp_path / "l.db", 5)
    entries = ledger.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:]))
    assert all(e.hash == spec_hash(e) for e in entries)
    assert entries[0].payload == {"i": 1, "passed": True, "note": "ünïcode ✓"}
    assert ledger.head() == entries[-1] and ledger.count() == 5
    parsed = datetime.fromisoformat(entries[0].ts)
    assert parsed.utcoffset() == timedelta(0) and "." in entries[0].ts


def test_append_returns_what_is_stored(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    when = datetime(2024, 5, 1, tzinfo=timezone.utc)
    entry = ledger.append("approval", principal="user:bob", unit="api", payload={"at": when, "ids": (1, 2)})
    assert entry.payload == {"at": str(when), "ids": [1, 2]}
    assert ledger.entries() == [entry]


def test_filters_and_latest(tmp_path):
    ledger = build(tmp_path / "l.db", 12)
    assert [e.seq for e in ledger.entries(unit="api")] == [1, 4, 7, 10]
    assert [e.seq for e in ledger.entries(unit="api", env="production")] == [1, 7]
    assert [e.seq for e in ledger.entries(action="gate")] == [3, 6, 9, 12]
    assert ledger.latest(unit="churn_model").seq == 12
    assert ledger.latest(action="gate", predicate=lambda e: not e.payload["passed"]) is None
    assert ledger.latest(predicate=lambda e: not e.payload["passed"]).seq == 10
    assert ledger.latest(unit="nope") is None
    # Several actions at once, decided by the database; the newest of them per unit and env.
    every = ledger.entries()
    actions = ("gate", every[0].action)
    assert [e.seq for e in ledger.entries(action=actions)] == [e.seq for e in every if e.action in actions]
    newest = {}
    for e in every:
        if e.action in actions and e.unit and e.env:
            newest[(e.unit, e.env)] = e
    assert ledger.latest_by_place(actions) == newest
    assert ledger.latest(unit="api", action=actions).seq == max(e.seq for e in newest.values() if e.unit == "api")

    everything = ledger.entries()
    middle = everything[5].ts
    assert [e.seq for e in ledger.entries(since=middle)] == list(range(6, 13))
    assert [e.seq for e in ledger.entries(until=middle)] == list(range(1, 6))
    as_datetime = datetime.fromisoformat(middle)
    assert ledger.entries(since=as_datetime) == ledger.entries(since=middle)
    assert ledger.entries(since=as_datetime.astimezone(timezone(timedelta(hours=2)))) == ledger.entries(since=middle)
    assert ledger.entries(since=datetime.now(timezone.utc) + timedelta(days=1)) == []


def test_secrets_are_redacted_recursively(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    payload = {
        "DB_PASSWORD": "hunter2",
        "nested": {"client_secret": "s", "github_token": "t", "keep": "visible"},
        "targets": [{"OpenAI_API_Key": "k", "name": "prod"}],
        "ssh_private_key": {"whole": "subtree"},
        "tokens_used": 7,
    }
    entry = ledger.append("override", principal="user:alice", payload=payload)
    assert entry.payload == {
        "DB_PASSWORD": REDACTED,
        "nested": {"client_secret": REDACTED, "github_token": REDACTED, "keep": "visible"},
        "targets": [{"OpenAI_API_Key": REDACTED, "name": "prod"}],
        "ssh_private_key": REDACTED,
        "tokens_used": REDACTED,
    }
    assert payload["DB_PASSWORD"] == "hunter2", "the caller's dict is left alone"
    stored = rows(tmp_path / "l.db")[1][COLUMNS.index("payload")]
    assert "hunter2" not in stored and "visible" in stored


def test_append_rejects_anonymous_entries(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    with pytest.raises(ValueError):
        ledger.append("promotion", principal="")
    with pytest.raises(TypeError):
        ledger.append("promotion", principal="user:a", payload=["not", "a", "dict"])
    assert ledger.count() == 0


def test_verify_accepts_an_intact_chain(db):
    report = check(db)
    assert report.ok and report.count == 10 and report.first_bad_seq is None
    assert {k: v for k, v in report.to_dict().items() if k in ("ok", "count", "first_bad_seq", "reason", "finding")} == \
        {"ok": True, "count": 10, "first_bad_seq": None, "reason": None, "finding": None}
    assert check(db.parent / "empty.db").ok


def test_verify_detects_a_modified_payload(db):
    sql(db, "UPDATE ud_ledger SET payload = ? WHERE seq = 4", '{"i":4,"note":"x","passed":false}')
    report = check(db)
    assert not report.ok and report.first_bad_seq == 4 and report.count == 3
    assert "hash" in report.reason


def test_verify_detects_a_modified_hash(db):
    sql(db, "UPDATE ud_ledger SET hash = ? WHERE seq = 6", "f" * 64)
    assert check(db).first_bad_seq == 6


def test_verify_detects_a_deleted_entry(db):
    sql(db, "DELETE FROM ud_ledger WHERE seq = 5")
    report = check(db)
    assert not report.ok and report.first_bad_seq == 5 and "missing" in report.reason


def test_verify_detects_a_deleted_entry_with_renumbering(db):
    sql(db, "DELETE FROM ud_ledger WHERE seq = 5")
    for seq in range(6, 11):
        sql(db, "UPDATE ud_ledger SET seq = ? WHERE seq = ?", seq - 1, seq)
    report = check(db)
    assert not report.ok and report.first_bad_seq == 5


def _shift_up_from(path: Path, start: int, last: int) -> None:
    for seq in range(last, start - 1, -1):
        sql(path, "UPDATE ud_ledger SET seq = ? WHERE seq = ?", seq + 1, seq)


def test_verify_detects_a_naively_inserted_entry(db):
    original = rows(db)
    _shift_up_from(db, 5, 10)
    forged = list(original[3])
    forged[0], forged[COLUMNS.index("prev_hash")] = 5, "a" * 64
    sql(db, f"INSERT INTO ud_ledger ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * 10)})", *forged)
    report = check(db)
    assert not report.ok and report.first_bad_seq == 5 and "link" in report.reason


def test_verify_detects_a_well_forged_insertion_at_the_next_original_entry(db):
    """A forger who seals the new entry properly must still relink the entry after it."""
    original = rows(db)
    _shift_up_from(db, 5, 10)
    before = original[4]
    ts = before[1]
    fields = dict(seq=5, ts=ts, action="approval", principal="user:mallory", unit="api", env="production",
                  version="v9", payload={"ok": True})
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256((before[-1] + body).encode()).hexdigest()
    sql(db, "UPDATE ud_ledger SET prev_hash = ? WHERE seq = 6", digest)
    sql(db, f"INSERT INTO ud_ledger ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * 10)})",
        5, ts, "approval", "user:mallory", "api", "production", "v9", '{"ok":true}', before[-1], digest)
    report = check(db)
    assert not report.ok and report.first_bad_seq == 6


def test_verify_detects_swapped_entries(db):
    original = rows(db)
    content = COLUMNS[1:]
    assignments = ", ".join(f"{c} = ?" for c in content)
    # prev_hash is UNIQUE, so park row 3 on a placeholder while row 7 takes its values.
    sql(db, f"UPDATE ud_ledger SET {assignments} WHERE seq = 3", *original[7][1:-2], "parked", original[7][-1])
    sql(db, f"UPDATE ud_ledger SET {assignments} WHERE seq = 7", *original[3][1:])
    sql(db, "UPDATE ud_ledger SET prev_hash = ? WHERE seq = 3", original[7][-2])
    report = check(db)
    assert not report.ok and report.first_bad_seq == 3


def test_a_deleted_tail_needs_an_anchor(db):
    head = rows(db)[10][-1]
    sql(db, "DELETE FROM ud_ledger WHERE seq >= 9")
    assert check(db).ok, "the chain alone cannot see a truncated tail"
    report = check(db, expected_head=head)
    assert not report.ok and report.first_bad_seq == 9 and report.count == 8
    assert check(db, expected_head=rows(db)[8][-1]).ok
    assert check(db, expected_head=rows(db)[3][-1]).ok, "entries appended after the anchor are fine"


def test_a_rewritten_history_needs_an_anchor(tmp_path):
    """Re-sealing everything from the edit on fools the chain but not an earlier anchor."""
    ledger = build(tmp_path / "a.db", 6)
    head = ledger.head().hash
    tampered = Ledger(f"sqlite:///{tmp_path / 'b.db'}")
    for e in ledger.entries():
        payload = {**e.payload, "passed": True}
        tampered.append(e.action, principal=e.principal, unit=e.unit, env=e.env, version=e.version, payload=payload)
    assert tampered.verify().ok
    assert not tampered.verify(expected_head=head).ok


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "ledger.db"
    build(path, 20).dispose()
    return path


def _tampered_value(column: str, old):
    if column == "seq":
        return st.integers(-(2**31), 2**31).filter(lambda v: not 1 <= v <= 20)
    text = st.text(max_size=80)
    if column in ("unit", "env", "version"):
        return st.one_of(st.none(), text, st.just(str(old).upper()), st.just("null"))
    if column == "payload":
        parsed = json.loads(old)
        variants = [json.dumps(parsed), json.dumps(dict(reversed(parsed.items())), separators=(",", ":")),
                    json.dumps(parsed, separators=(",", ":"), ensure_ascii=True), old + " "]
        return st.one_of(text, st.sampled_from(variants))
    if column == "ts":
        return st.one_of(text, st.just(old.replace("+00:00", "Z")), st.just(old[:-6]))
    hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
    return st.one_of(text, hex64, st.just(old.upper()))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_single_stored_change_is_detected(template, data):
    seq = data.draw(st.integers(1, 20), label="seq")
    column = data.draw(st.sampled_from(COLUMNS), label="column")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.db"
        shutil.copy(template, path)
        old = rows(path)[seq][COLUMNS.index(column)]
        new = data.draw(_tampered_value(column, old), label="new value")
        assume(new != old)
        try:
            sql(path, f"UPDATE ud_ledger SET {column} = ? WHERE seq = ?", new, seq)
        except sqlite3.IntegrityError:
            assume(False)  # the schema itself refused the change (unique prev_hash, NOT NULL)
        report = check(path)
        assert not report.ok and report.first_bad_seq is not None and report.reason


def _append_many(url: str, worker: int, start, n: int) -> None:
    ledger = Ledger(url)
    ledger.count()  # connect and create the table before the race starts
    start.wait()
    for i in range(n):
        ledger.append("gate", principal=f"agent:worker-{worker}", unit="api", payload={"i": i})
    ledger.dispose()


def test_concurrent_writers_never_fork_the_chain(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(4)
    workers = [ctx.Process(target=_append_many, args=(url, w, start, 50)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(120)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    ledger = Ledger(url)
    entries = ledger.entries()
    assert ledger.count() == 200 and [e.seq for e in entries] == list(range(1, 201))
    assert {e.principal for e in entries} == {f"agent:worker-{w}" for w in range(4)}
    assert ledger.verify().ok


def test_resource_resolves_the_home_at_run_time(tmp_path, monkeypatch):
    monkeypatch.delenv("UD_LEDGER_URL", raising=False)
    resource = LedgerResource()
    monkeypatch.setenv("UD_HOME", str(tmp_path / "home"))
    entry = resource.append("candidate", principal="service:ud", unit="api", version="abc123")
    assert resource.ledger() is ledger_for(f"sqlite:///{tmp_path / 'home' / 'ledger.db'}")
    assert (tmp_path / "home" / "ledger.db").exists()
    explicit = LedgerResource(url=f"sqlite:///{tmp_path / 'other.db'}")
    assert explicit.ledger().count() == 0 and resource.ledger().head() == entry
    resource.ledger().dispose()
    explicit.ledger().dispose()
