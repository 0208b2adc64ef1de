"""`ud hook install REPO`: a post-receive hook in a bare repository that asks the running
Dagster (`ud ui`) to evaluate the Git sensor at once, so a push starts its run within seconds
instead of at the next tick. Without a running Dagster the hook prints a line and the push
succeeds as always."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from ..errors import ConfigError

MARK = "# ud-push-hook"
HOOK = """#!/bin/sh
{mark}: written by `ud hook install`. Asks the Dagster at $UD_DAGSTER_URL (default {url}) to
# evaluate the sensor {sensor} now; never fails the push.
"{python}" -I "{client}" --url "${{UD_DAGSTER_URL:-{url}}}" --sensor "{sensor}" --timeout 10 || true
exit 0
"""


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


def resolve_repository(value: str) -> Path:
    """A path, or the name of a unit built from Git (an app unit): its repository."""
    if not Path(value).exists():
        from ..home import Home
        from ..service import load_platform

        platform, _ = load_platform()
        unit = platform.units.get(value)
        source = unit.git_source() if unit is not None else None
        if source is not None:
            return Path(Home.current().expand(source.repository))
        raise ConfigError(
            "UD-HOOK-REPO",
            f"{value} is neither a repository path nor an app unit",
            "give the path of a bare repository (`ud info --json` names the app's remote)",
        )
    return Path(value)


def install(repo: Path, *, url: str, sensor: str, force: bool = False) -> Path:
    repo = repo.resolve()
    if _git(repo, "rev-parse", "--is-bare-repository") != "true":
        raise ConfigError(
            "UD-HOOK-NOT-BARE",
            f"{repo} is not a bare Git repository",
            "install the hook in the repository developers push to (a bare one, e.g. the app's "
            "remote)",
        )
    hooks = Path(_git(repo, "rev-parse", "--git-path", "hooks") or "hooks")
    hooks = hooks if hooks.is_absolute() else repo / hooks
    hook = hooks / "post-receive"
    if hook.exists() and MARK not in hook.read_text(errors="replace") and not force:
        raise ConfigError(
            "UD-HOOK-EXISTS",
            f"{hook} exists and was not written by ud",
            "merge it by hand, or pass --force to replace it",
        )
    client = Path(__file__).resolve().parents[1] / "triggers" / "dagster_api.py"
    hooks.mkdir(parents=True, exist_ok=True)
    tmp = hook.with_suffix(".ud-tmp")
    tmp.write_text(
        HOOK.format(mark=MARK, url=url, sensor=sensor, python=sys.executable, client=client)
    )
    tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(tmp, hook)
    return hook


def cmd_install(args, out) -> int:
    repo = resolve_repository(args.repo)
    hook = install(repo, url=args.url, sensor=args.sensor, force=args.force)
    data = {
        "ok": True,
        "repository": str(repo.resolve()),
        "hook": str(hook),
        "dagster_url": args.url,
        "sensor": args.sensor,
    }
    out.result(data, f"installed {hook}: a push asks {args.url} to evaluate {args.sensor}")
    return 0


def register(add) -> None:
    sp = add("hook", None, "Git hooks that start the pipeline on push")
    sub = sp.add_subparsers(dest="action", required=True, parser_class=type(sp))
    ins = sub.add_parser(
        "install",
        help="install the post-receive hook in a bare repository",
        description=(
            "Install a post-receive hook in a bare repository (a path, or an app unit's name) that "
            "asks the running Dagster to evaluate the Git sensor now."
        ),
    )
    ins.add_argument("repo", metavar="REPO")
    ins.add_argument(
        "--url", default="http://127.0.0.1:3000", help="the Dagster webserver (`ud ui`)"
    )
    ins.add_argument("--sensor", default="ud_git_push")
    ins.add_argument(
        "--force", action="store_true", help="replace a post-receive hook not written by ud"
    )
    ins.set_defaults(fn=cmd_install)
