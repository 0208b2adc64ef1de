"""`ud audit verify` and `ud audit export`: the ledger's integrity, and the evidence for
every production change (version, principal, gate results, approvals, overrides,
rollbacks) for a compliance review."""

from __future__ import annotations

import csv
import io
import json

from ..errors import EXIT_GATE


def _ledger():
    """The platform's ledger, found through its catalog: no load unless the catalog is stale."""
    from ..service import read_catalog

    return read_catalog().ledger()


def _repo():
    from ..home import project_root

    return project_root()


def cmd_verify(args, out) -> int:
    from ..home import Home
    from ..ledger import LedgerKey, checkpoints

    ledger = _ledger()
    home = Home.current()
    checkpoint, problems = checkpoints.newest(home, _repo())
    report = ledger.verify(
        checkpoint=checkpoint,
        public_key=checkpoint.key if checkpoint else LedgerKey.for_home(home).public,
        full=args.full,
    )
    if report.ok and checkpoint is not None and checkpoint.key != LedgerKey.for_home(home).public:
        report_key = (
            "the ledger key changed since the checkpoint: new entries are signed with another key"
        )
        data = {
            "ok": False,
            **report.to_dict(),
            "finding": "key-changed",
            "reason": report_key,
            "problems": problems,
        }
        out.result(data, f"ledger BROKEN: {report_key}")
        return EXIT_GATE
    data = {"ok": report.ok, **report.to_dict(), "problems": problems}
    anchored = (
        f"held against checkpoint {report.checkpoint_seq}"
        if report.checkpoint_seq
        else (
            "no checkpoint (`ud audit checkpoint` makes one: a truncated tail is only found "
            "against one)"
        )
    )
    signed = (
        f"signed from entry {report.signed_from}" if report.signed_from else "no signed entries"
    )
    lines = [
        f"ledger ok: {report.count} entries, chain intact, {signed}, {anchored}"
        if report.ok
        else f"ledger BROKEN ({report.finding}) at entry {report.first_bad_seq}: {report.reason}"
    ]
    lines += [f"warning: {p}" for p in problems]
    out.result(data, "\n".join(lines))
    return 0 if report.ok else EXIT_GATE


def cmd_checkpoint(args, out) -> int:
    from ..home import Home
    from ..ledger import LedgerKey, checkpoints

    ledger = _ledger()
    home = Home.current()
    cp, kept = checkpoints.write(ledger, LedgerKey.for_home(home), home, _repo())
    data = {"ok": True, "seq": cp.seq, "hash": cp.hash, "ts": cp.ts, "key": cp.key, "kept": kept}
    out.result(data, f"checkpoint of entry {cp.seq} ({cp.hash[:12]}) kept in: " + ", ".join(kept))
    return 0


def cmd_export(args, out) -> int:
    from ..service.reports import evidence, parse_date

    ledger = _ledger()
    report = ledger.verify()
    changes = evidence(ledger, parse_date("--since", args.since))
    data = {"ok": True, "ledger": report.to_dict(), "since": args.since or None, "changes": changes}
    if args.format == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(
            [
                "seq",
                "at",
                "action",
                "unit",
                "env",
                "version",
                "from_version",
                "principal",
                "reason",
                "gates",
                "approvals",
                "overrides",
                "ledger_ok",
            ]
        )
        for c in changes:
            writer.writerow(
                [
                    c["seq"],
                    c["at"],
                    c["action"],
                    c["unit"],
                    c["env"],
                    c["version"],
                    c["from_version"],
                    c["principal"],
                    c["reason"],
                    ";".join(f"{g['gate']}={g['code']}" for g in c["gates"]),
                    ";".join(a["principal"] for a in c["approvals"]),
                    ";".join(
                        f"{o['gate']}:{o['principal']}:{o['justification']}" for o in c["overrides"]
                    ),
                    report.ok,
                ]
            )
        print(buf.getvalue(), end="")
        return 0
    if not report.ok and not out.as_json:
        print(f"WARNING: the ledger is BROKEN at entry {report.first_bad_seq}: {report.reason}")
    out.result(data, lambda: json.dumps(data, indent=2, default=str))
    return 0


def register(add) -> None:
    sp = add(
        "audit",
        lambda args, out: args.audit_fn(args, out),
        "ledger integrity and compliance evidence",
    )
    verbs = sp.add_subparsers(dest="verb", required=True, parser_class=type(sp))
    v = verbs.add_parser(
        "verify",
        help="check the hash chain, the signatures and the newest checkpoint; exit 3 and "
        "name what was found (gap, swap, rewritten, forged, unsigned, truncated)",
    )
    v.add_argument(
        "--full", action="store_true", help="check every entry's signature, not only the head's"
    )
    v.set_defaults(audit_fn=cmd_verify)
    c = verbs.add_parser(
        "checkpoint",
        help="sign the ledger's head and keep it outside the ledger (a file under "
        "the home, and refs/ud/checkpoints in the platform's Git repository)",
    )
    c.set_defaults(audit_fn=cmd_checkpoint)
    e = verbs.add_parser("export", help="every production change with its evidence")
    e.add_argument("--since", default="")
    e.add_argument("--format", choices=["json", "csv"], default="json")
    e.set_defaults(audit_fn=cmd_export)
