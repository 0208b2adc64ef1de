"""Ledger append and verify rates at 100,000 entries (the embedded SQLite ledger).

    python bench/ledger.py --workdir /tmp/ud-ledger --entries 100000 --appends 2000 --repeat 3

Fills a fresh ledger to --entries, then measures, each in a fresh process and --repeat
times: --appends appends on top of it (one transaction each, as promotions write them)
and a verify of the whole chain (the head's signature, then every signature). Every
entry is signed with an Ed25519 ledger key, as a platform's are. Medians are reported.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH, PYTHON, ROOT, child_env, machine, median, run_child, save, table  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="emptied, then holds the ledger file")
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--appends", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    db = str(args.workdir / "ledger.db")
    env = child_env()

    def child(*argv: str) -> dict:
        return run_child([PYTHON, str(BENCH / "ledger_child.py"), *argv], cwd=ROOT, env=env)

    filled = child("fill", db, str(args.entries))
    appends, verifies, fulls = [], [], []
    for _ in range(args.repeat):
        appends.append(child("append", db, str(args.appends)))
        verifies.append(child("verify", db))
        fulls.append(child("verify-full", db))
    rows = [["bulk fill (set-up)", args.entries, filled["seconds"], filled["per_second"]],
            [f"append at {args.entries:,}+ entries", args.appends, median([a["seconds"] for a in appends]),
             median([a["per_second"] for a in appends])],
            [f"verify (up to {verifies[-1]['size']:,} entries)", verifies[-1]["verified"],
             median([v["seconds"] for v in verifies]), median([v["per_second"] for v in verifies])],
            [f"verify --full, every signature (up to {fulls[-1]['size']:,})", fulls[-1]["verified"],
             median([v["seconds"] for v in fulls]), median([v["per_second"] for v in fulls])]]
    save(args.out, {"machine": machine(), "fill": filled, "appends": appends, "verifies": verifies,
                    "verifies_full": fulls})
    print(table(["operation", "entries", "seconds (median)", "entries/s (median)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
