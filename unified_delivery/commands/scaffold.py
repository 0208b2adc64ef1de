"""`ud init DIR` (a new platform repository) and `ud new KIND NAME` (a unit in it: app, model,
data, or any kind with a scaffold)."""

from __future__ import annotations

from pathlib import Path


def cmd_init(args, out) -> int:
    from ..scaffold import init_platform

    out.progress(f"creating a platform repository in {args.directory}")
    written = init_platform(Path(args.directory), starters=not args.empty)
    data = {
        "ok": True,
        "root": str(written.root),
        "files": written.files,
        "next": written.next_steps,
    }
    out.result(
        data,
        lambda: (
            f"created {written.root} ({len(written.files)} files, one commit)\nnext:\n"
            + "\n".join(f"  {s}" for s in written.next_steps)
        ),
    )
    return 0


def cmd_new(args, out) -> int:
    from ..home import project_root
    from ..scaffold import new_unit

    written = new_unit(
        project_root(),
        args.kind,
        args.name,
        team=args.team,
        trains_on=args.trains_on,
        label=args.label,
        serves=args.serves,
    )
    data = {
        "ok": True,
        "unit": args.name,
        "kind": args.kind,
        "root": str(written.root),
        "files": written.files,
        "next": written.next_steps,
    }
    out.result(
        data,
        lambda: (
            f"new {args.kind} unit {args.name}:\n"
            + "\n".join(f"  {f}" for f in written.files)
            + "\nnext:\n"
            + "\n".join(f"  {s}" for s in written.next_steps)
        ),
    )
    return 0


def register(add) -> None:
    sp = add(
        "init",
        cmd_init,
        "a new platform repository: standard layout, a Git repository, starter units",
    )
    sp.add_argument("directory")
    sp.add_argument(
        "--empty", action="store_true", help="no starter units (features -> scorer -> api)"
    )
    sp = add(
        "new",
        cmd_new,
        "a new unit in this platform repository, with gates, a budget, a policy and a test",
    )
    # Not argparse choices: those would load every kind (and Dagster) to build the parser of
    # every command; new_unit refuses an unknown kind with UD-NEW-KIND and the list.
    sp.add_argument("kind", help="app, model, data, or an installed kind with a scaffold")
    sp.add_argument("name")
    sp.add_argument(
        "--team", default=None, help="owner team (default: web, ml or analytics by kind)"
    )
    sp.add_argument(
        "--trains-on",
        default=None,
        metavar="DATA_UNIT",
        help=(
            "model: train on this data unit's production version (default: a sample file in data/)"
        ),
    )
    sp.add_argument("--label", default=None, help="model with --trains-on: the column to predict")
    sp.add_argument(
        "--serves",
        default=None,
        metavar="MODEL_UNIT",
        help="app: serve this model unit's predictions",
    )
