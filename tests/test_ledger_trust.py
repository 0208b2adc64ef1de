"""The ledger against someone who can write its database: each attack the review found to pass
`ud audit verify` (a truncated tail, an entry rewritten and every later one re-hashed with
the project's own `entry_hash`, a forged entry appended with a correct chain), and the ones
that follow from them (signatures stripped, the key replaced, a checkpoint deleted or
edited), done on the real SQLite file and named by verify."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from unified_delivery.home import Home
from unified_delivery.ledger import Ledger, LedgerKey, canonical_json, checkpoints, entry_hash  # noqa: F401

COLUMNS = ("seq", "ts", "action", "principal", "unit", "env", "version", "payload", "prev_hash", "hash", "signature")


def new_key(name: str = "test") -> LedgerKey:
    pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()).decode()
    return LedgerKey.from_pem(pem, name)


@pytest.fixture
def signed(tmp_path):
    """A signed ledger of 12 entries in a home, checkpointed at entry 10 (file and Git ref)."""
    home = Home(tmp_path / "home")
    repo = tmp_path / "platform"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    key = LedgerKey.for_home(home)
    db = home.root / "ledger.db"
    ledger = Ledger(f"sqlite:///{db}", key)
    for i in range(1, 11):
        ledger.append("promotion" if i % 2 else "gate", principal="human:dana", unit="api", env="production",
                      version=f"v{i}", payload={"i": i})
    cp, kept = checkpoints.write(ledger, key, home, repo)
    for i in range(11, 13):
        ledger.append("gate", principal="human:dana", unit="api", env="staging", version=f"v{i}", payload={"i": i})
    ledger.dispose()
    return {"home": home, "repo": repo, "db": db, "key": key, "checkpoint": cp, "kept": kept}


def rows(db: Path) -> list[dict]:
    with sqlite3.connect(db) as con:
        return [dict(zip(COLUMNS, r)) for r in con.execute(f"SELECT {', '.join(COLUMNS)} FROM ud_ledger ORDER BY seq")]


def rewrite(db: Path, entries: list[dict]) -> None:
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM ud_ledger")
        con.executemany(f"INSERT INTO ud_ledger ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                        [tuple(e[c] for c in COLUMNS) for e in entries])


def rehash(entries: list[dict], sign=None) -> list[dict]:
    """What an attacker with the project's code (and maybe a key) does after an edit."""
    prev = entries[0]["prev_hash"]
    for e in entries:
        e["prev_hash"] = prev
        e["hash"] = entry_hash(prev, e["seq"], e["ts"], e["action"], e["principal"], e["unit"], e["env"], e["version"],
                               e["payload"])
        if sign is not None:
            e["signature"] = sign(e["hash"])
        prev = e["hash"]
    return entries


def verify(s: dict, **kw):
    cp, problems = checkpoints.newest(s["home"], s["repo"])
    ledger = Ledger(f"sqlite:///{s['db']}")
    try:
        return ledger.verify(checkpoint=cp, **kw), problems
    finally:
        ledger.dispose()


def test_an_intact_signed_ledger_verifies_against_its_checkpoint(signed):
    report, problems = verify(signed)
    assert report.ok and report.count == 12 and report.signed_from == 1 and report.checkpoint_seq == 10, report
    assert not problems and len(signed["kept"]) == 2 and signed["kept"][1].endswith("refs/ud/checkpoints")
    assert report.signatures_checked == 2  # the checkpointed entry's and the head's: each covers all before it
    full, _ = verify(signed, full=True)
    assert full.ok and full.signatures_checked == 12
    assert all(r["signature"] for r in rows(signed["db"]))


def test_a_truncated_tail_is_found_against_the_checkpoint(signed):
    with sqlite3.connect(signed["db"]) as con:
        con.execute("DELETE FROM ud_ledger WHERE seq > 8")
    report, _ = verify(signed)
    assert not report.ok and report.finding == "truncated" and report.count == 8 and "9..10" in report.reason


def test_the_git_ref_still_holds_the_checkpoint_when_the_homes_files_are_gone(signed):
    for path in (signed["home"].root / "checkpoints").iterdir():
        path.unlink()
    with sqlite3.connect(signed["db"]) as con:
        con.execute("DELETE FROM ud_ledger WHERE seq > 5")
    report, _ = verify(signed)
    assert report.finding == "truncated" and report.checkpoint_seq == 10


def test_a_rewritten_entry_rehashed_onwards_is_forged_from_that_entry(signed):
    entries = rows(signed["db"])
    entries[6]["payload"] = canonical_json({"i": 7, "note": "approved by olivia"})
    rewrite(signed["db"], rehash(entries))  # the old signatures no longer fit the new hashes
    report, _ = verify(signed)
    assert not report.ok and report.finding in ("rewritten", "forged") and report.first_bad_seq == 7, report
    beyond = rows(signed["db"])
    rewrite(signed["db"], beyond)
    no_checkpoint = Ledger(f"sqlite:///{signed['db']}").verify(public_key=signed["key"].public)
    assert no_checkpoint.finding == "forged" and no_checkpoint.first_bad_seq == 7  # signatures alone name it too


def test_a_forged_entry_appended_with_a_correct_chain(signed):
    entries = rows(signed["db"])
    last = entries[-1]
    forged = {**last, "seq": last["seq"] + 1, "action": "promotion", "version": "evil", "signature": None,
              "payload": canonical_json({"reason": "hotfix"}), "prev_hash": last["hash"]}
    rewrite(signed["db"], [*entries, *rehash([forged])])
    report, _ = verify(signed)
    assert report.finding == "unsigned" and report.first_bad_seq == 13
    other = new_key("attacker")
    forged["signature"] = other.sign(forged["hash"].encode())
    rewrite(signed["db"], [*entries, forged])
    report, _ = verify(signed)
    assert report.finding == "forged" and report.first_bad_seq == 13


def test_stripped_signatures_and_a_replaced_key_are_found(signed):
    entries = rows(signed["db"])
    for e in entries:
        e["signature"] = None
    rewrite(signed["db"], entries)
    report, _ = verify(signed)
    assert report.finding == "unsigned", report
    attacker = new_key("attacker")
    rewrite(signed["db"], rehash(rows(signed["db"]), sign=lambda h: attacker.sign(h.encode())))
    report, _ = verify(signed)  # checked with the key the checkpoint names, not the attacker's
    assert report.finding == "forged" and report.first_bad_seq is not None


def test_an_edited_checkpoint_is_not_trusted_and_is_reported(signed):
    path = signed["home"].root / "checkpoints" / f"{10:012d}.json"
    doc = json.loads(path.read_text())
    doc["seq"] = 3  # claim less was checkpointed, to hide a truncation
    path.write_text(json.dumps(doc))
    subprocess.run(["git", "-C", str(signed["repo"]), "update-ref", "-d", "refs/ud/checkpoints"], check=True)
    cp, problems = checkpoints.newest(signed["home"], signed["repo"])
    assert cp is None and problems and "signature does not hold" in problems[0]


def test_an_older_unsigned_history_stays_readable(tmp_path):
    db = tmp_path / "l.db"
    old = Ledger(f"sqlite:///{db}")
    for i in range(3):
        old.append("gate", principal="human:dana", unit="api", payload={"i": i})
    old.dispose()
    key = new_key()
    signed = Ledger(f"sqlite:///{db}", key)
    signed.append("promotion", principal="human:dana", unit="api", payload={"i": 3})
    report = signed.verify()
    assert report.ok and report.signed_from == 4, report


def test_ud_audit_checkpoint_and_verify_name_a_truncation(tmp_path):
    from tests import tiny_platform as tiny

    paths = tiny.make(tmp_path)
    empty = tiny.ud(paths, "audit", "checkpoint", "--json")
    assert empty.returncode == 2 and json.loads(empty.stdout)["error"]["code"] == "UD-CHECKPOINT-EMPTY"
    # Four signed entries: the policy adopted by the first command, then three token-issued.
    for who in ("human:dana", "human:olivia", "agent:release-bot"):
        assert tiny.ud(paths, "token", "issue", who).returncode == 0
    made = tiny.ud(paths, "audit", "checkpoint", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["seq"] == 4
    ok = json.loads(tiny.ud(paths, "audit", "verify", "--json").stdout)
    assert ok["ok"] and ok["checkpoint_seq"] == 4 and ok["signed_from"] == 1
    with sqlite3.connect(paths["home"] / "ledger.db") as con:
        con.execute("DELETE FROM ud_ledger WHERE seq = 4")
    broken = tiny.ud(paths, "audit", "verify")
    assert broken.returncode == 3 and "BROKEN (truncated)" in broken.stdout, broken.stdout + broken.stderr
