"""`ud previews [UNIT]`: the live preview environments of pushed branches (docs/previews.md),
read from the ledger: unit, branch, environment, version, verdict, URL or schema, age, expiry."""

from __future__ import annotations

from ..output import table


def cmd_previews(args, out) -> int:
    from ..previews import age, live
    from ..service import read_catalog

    rows = live(read_catalog().ledger(), unit=args.unit or None)
    data = {"previews": rows}

    def text() -> str:
        if not rows:
            return "no live previews" + (f" of {args.unit}" if args.unit else "")
        lines = [("unit", "branch", "env", "version", "verdict", "at", "age", "expires")]
        for r in rows:
            where = r["url"] or r["schema"] or r["alias"] or r["code"]
            expires = r["expires_at"] + (" (expired)" if r["expired"] else "")
            lines.append(
                (
                    r["unit"],
                    r["branch"],
                    r["env"],
                    (r["version"] or "")[:12],
                    r["verdict"],
                    where,
                    age(r["age_s"]),
                    expires,
                )
            )
        return table(lines)

    out.result(data, text)
    return 0


def register(add) -> None:
    sp = add(
        "previews",
        cmd_previews,
        "the live preview environments of pushed branches: verdict, URL or schema, expiry",
    )
    sp.add_argument("unit", nargs="?", default="")
