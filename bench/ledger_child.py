"""One ledger measurement in this fresh process, on the SQLite ledger at DB.

    python bench/ledger_child.py fill DB N       # N chained entries in one transaction (set-up)
    python bench/ledger_child.py append DB K     # K appends through Ledger.append, one transaction each
    python bench/ledger_child.py verify DB       # Ledger.verify over the whole chain (the head's signature)
    python bench/ledger_child.py verify-full DB  # ... and every entry's signature

The fill computes each entry's hash with the ledger's own `entry_hash`, so the chain is
the one `append` would have written (verify accepting it is the proof); it only skips
100,000 separate transactions, which are what `append` measures.
"""

import json
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from unified_delivery.ledger import GENESIS, Ledger, LedgerKey, canonical_json, entry_hash, ledger_table, utc_iso


def bench_key(db: Path) -> LedgerKey:
    """One Ed25519 ledger key per bench ledger, beside it: every entry is signed, as in a platform."""
    path = db.with_suffix(".key")
    if not path.exists():
        path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return LedgerKey.from_pem(path.read_text(), str(path))


def payload(i: int) -> dict:
    """About the size of a gate result the platform records."""
    return {"gate": "dbt_tests", "family": "dbt-tests", "stage": "candidate", "passed": i % 7 != 0,
            "code": "UD-GATE-DBT-TESTS-PASSED", "message": f"{40 + i % 9} dbt tests passed", "remediation": "",
            "metadata": {"tests": 40 + i % 9, "failed": 0}, "run_id": f"{i:032x}", "team": f"team_{i % 25:02d}",
            "kind": "data"}


def fill(ledger: Ledger, n: int) -> dict:
    rows, prev = [], GENESIS
    for seq in range(1, n + 1):
        ts, body = utc_iso(), canonical_json(payload(seq))
        unit, env, version = f"data_{seq % 1000:04d}", ("staging", "production")[seq % 2], f"{seq:012x}"
        digest = entry_hash(prev, seq, ts, "gate", "service:sensors", unit, env, version, body)
        rows.append({"seq": seq, "ts": ts, "action": "gate", "principal": "service:sensors", "unit": unit, "env": env,
                     "version": version, "payload": body, "prev_hash": prev, "hash": digest,
                     "signature": ledger.key.sign(digest.encode()) if ledger.key else None})
        prev = digest
    with ledger.engine.begin() as conn:
        conn.execute(ledger_table.insert(), rows)
    return {"entries": n}


def main() -> int:
    mode, db = sys.argv[1], Path(sys.argv[2])
    ledger = Ledger(f"sqlite:///{db}", bench_key(db))
    started = time.perf_counter()
    if mode == "fill":
        out = fill(ledger, int(sys.argv[3]))
    elif mode == "append":
        k = int(sys.argv[3])
        for i in range(k):
            ledger.append("gate", principal="service:sensors", unit="data_0001", env="staging", version="bench",
                          payload=payload(i))
        out = {"appends": k}
    else:
        report = ledger.verify(full=mode == "verify-full")
        if not report.ok:
            raise SystemExit(f"verify failed: {report.reason}")
        out = {"verified": report.count}
    seconds = time.perf_counter() - started
    count = next(iter(out.values()))
    print(json.dumps({**out, "seconds": seconds, "per_second": count / seconds, "size": ledger.count()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
