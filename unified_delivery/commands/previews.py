"""`ud previews [UNIT] [--prune]`: the live preview environments of pushed branches
(docs/previews.md), read from the ledger: unit, branch, environment, version, verdict, URL or
schema, age, expiry; `--prune` tears down those whose time to live is over."""

from __future__ import annotations

from ..output import table


def cmd_previews(args, out) -> int:
    from ..previews import age, live
    from ..service import read_catalog

    if args.prune:
        return _prune(out)
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


def _prune(out) -> int:
    from ..engine.preview import prune
    from ..service import load_platform
    from ..service.principals import identity

    platform, _ = load_platform()
    done = prune(platform, identity(platform), log=out.progress)

    def text() -> str:
        if not done:
            return "no expired previews"
        lines = []
        for r in done:
            gone = ", ".join(r["removed"]) or "nothing"
            lines.append(f"{r['unit']} {r['env']} ({r['branch']}): removed {gone}")
        return "\n".join(lines)

    out.result({"pruned": done}, text)
    return 0


def register(add) -> None:
    sp = add(
        "previews",
        cmd_previews,
        "the live preview environments of pushed branches: verdict, URL or schema, expiry",
    )
    sp.add_argument("unit", nargs="?", default="")
    sp.add_argument(
        "--prune",
        action="store_true",
        help="tear down the previews whose time to live is over (the Git sensor does at each tick)",
    )
