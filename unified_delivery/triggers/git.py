"""Git sensor: new commits on watched branches of watched repositories request candidate runs.

Refs of a local repository are read straight from its files (packed-refs and loose refs):
a tick over a thousand local repositories then costs file reads, not a thousand `git`
processes. Any other repository (a URL git can reach) is asked with `git ls-remote` in a
bounded thread pool with a time limit. A repository that cannot be read is noted and
skipped; the others still tick and its cursor stays as it was.

State per repository and branch: the last head seen. Run key: repository, branch, SHA and
unit, so a restart, a second tick or a concurrent daemon never builds the same change twice.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import dagster as dg

from ..events import CommitsSkipped, record
from ..promotions import Promotion, promotion
from ..run_tags import PREVIEW_TAG
from ..translator import PREVIEW_JOB, PREVIEW_TEARDOWN_JOB
from .base import (
    Requester,
    candidate_config,
    default_principal,
    durable_sensor,
    note,
    sensor_ledger,
)

if TYPE_CHECKING:
    from ..platform import Platform

HEADS = "refs/heads/"
_BAD_IN_PATTERN = re.compile(r"[\s~^:\\]|\.\.|@\{|//")
MAX_SKIPPED_LISTED = 20


@dataclass(frozen=True)
class Build:
    """A unit built from a repository: the promotion that builds and deploys its candidate, and
    the branch patterns (globs such as "main" or "release/*") whose commits it builds."""

    unit: str
    promotion: Promotion
    branches: tuple[str, ...]
    # The job that deploys a push to any other branch to its preview environment; "" for none.
    preview_job: str = ""


@dataclass(frozen=True)
class GitWatch:
    repository: str  # a local path or a URL git can reach
    builds: tuple[Build, ...]


class Unreadable(Exception):
    """The repository could not be read this tick."""


def pattern_problem(pattern: str) -> str | None:
    """Why a branch pattern can never match a branch name, or None when it is usable."""
    if not pattern or not pattern.strip():
        return "is empty"
    if _BAD_IN_PATTERN.search(pattern):
        return (
            "contains a character or sequence git forbids in branch names (space ~ ^ : \\ .. @{ //)"
        )
    if pattern.startswith(("/", "-", ".")) or pattern.endswith(("/", ".", ".lock")):
        return "starts or ends the way no branch name can"
    if pattern.count("[") != pattern.count("]"):
        return "has an unbalanced [ ]"
    return None


def is_local(repository: str) -> bool:
    if repository.startswith("file://"):
        return False  # git's own transport: ask it like any URL
    return "://" not in repository and not (":" in repository and "@" in repository.split(":")[0])


def git_dir(path: str) -> str | None:
    if os.path.isfile(os.path.join(path, "HEAD")) and os.path.isdir(os.path.join(path, "objects")):
        return path  # bare
    dotgit = os.path.join(path, ".git")
    if os.path.isdir(dotgit):
        return dotgit
    if os.path.isfile(dotgit):  # a worktree or submodule: "gitdir: <path>"
        with open(dotgit) as fh:
            text = fh.read().strip()
        if text.startswith("gitdir:"):
            return os.path.normpath(os.path.join(path, text[len("gitdir:") :].strip()))
    return None


def local_heads(path: Path | str) -> dict[str, str]:
    # Plain os.path and open: a tick reads thousands of these, and pathlib costs several times more.
    path = str(path)
    gd = git_dir(path)
    if gd is None:
        raise Unreadable(f"{path} does not exist or is not a git repository")
    common = gd
    if os.path.isfile(
        os.path.join(gd, "commondir")
    ):  # linked worktrees keep refs in the main repository
        with open(os.path.join(gd, "commondir")) as fh:
            common = os.path.normpath(os.path.join(gd, fh.read().strip()))
    if os.path.isdir(os.path.join(common, "reftable")):
        return remote_heads(path, timeout=30)  # the reftable format: let git read it
    heads: dict[str, str] = {}
    packed = os.path.join(common, "packed-refs")
    if os.path.isfile(packed):
        with open(packed) as fh:
            for line in fh:
                if line[:1] in ("#", "^", "\n"):
                    continue
                sha, _, ref = line.rstrip("\n").partition(" ")
                if ref.startswith(HEADS):
                    heads[ref[len(HEADS) :]] = sha
    root = os.path.join(common, "refs", "heads")
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".lock"):
                continue
            with open(os.path.join(folder, name)) as fh:
                value = fh.read().strip()
            if len(value) in (40, 64):  # loose refs override packed ones
                heads[os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")] = (
                    value
                )
    return heads


def remote_heads(repository: str, timeout: float) -> dict[str, str]:
    try:
        proc = subprocess.run(
            ["git", "ls-remote", "--heads", repository],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_no_prompt(),
        )
    except subprocess.TimeoutExpired:
        raise Unreadable(f"{repository} did not answer within {timeout:.0f} s") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise Unreadable(f"{repository}: {lines[-1] if lines else 'git ls-remote failed'}")
    heads = {}
    for line in proc.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith(HEADS):
            heads[ref[len(HEADS) :]] = sha
    return heads


def _no_prompt() -> dict[str, str]:
    # A sensor has no terminal: a credential prompt would hang the tick until its time limit.
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}


def read_all(
    repositories: Sequence[str], *, timeout: float = 20, workers: int = 8
) -> dict[str, dict[str, str] | Unreadable]:
    """Heads of every repository; an Unreadable in place of those that cannot be read."""
    out: dict[str, dict[str, str] | Unreadable] = {}
    remote = []
    for repo in repositories:
        if not is_local(repo):
            remote.append(repo)
            continue
        try:
            out[repo] = local_heads(repo)
        except (Unreadable, OSError) as exc:
            out[repo] = exc if isinstance(exc, Unreadable) else Unreadable(f"{repo}: {exc}")
    if remote:

        def one(repo: str) -> dict[str, str] | Unreadable:
            try:
                return remote_heads(repo, timeout)
            except Unreadable as exc:
                return exc

        with ThreadPoolExecutor(max_workers=min(workers, len(remote))) as pool:
            for repo, result in zip(remote, pool.map(one, remote)):
                out[repo] = result
    return out


def history(repository: str, old: str, new: str) -> tuple[bool | None, list[str]]:
    """(is `new` a fast-forward of `old`, commits after `old` up to `new` excluding `new`);
    (None, []) when that cannot be known without fetching (a remote, or `old` is gone)."""
    if not is_local(repository):
        return None, []
    try:
        ff = subprocess.run(
            ["git", "merge-base", "--is-ancestor", old, new],
            cwd=repository,
            capture_output=True,
            timeout=30,
        ).returncode
        if ff not in (0, 1):
            return None, []
        listed = subprocess.run(
            ["git", "rev-list", f"--max-count={MAX_SKIPPED_LISTED + 1}", new, f"^{old}"],
            cwd=repository,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (subprocess.TimeoutExpired, OSError):
        return None, []
    shas = listed.stdout.split()[1:] if listed.returncode == 0 else []
    return ff == 0, shas


def histories(
    moves: list[tuple[str, str, str]], workers: int
) -> dict[tuple[str, str, str], tuple[bool | None, list[str]]]:
    """`history` of every (repository, old, new) move, side by side: two git processes per move."""
    if not moves:
        return {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(moves, pool.map(lambda m: history(*m), moves)))


def moves(
    watch: GitWatch, heads: dict[str, str], seen: dict[str, str]
) -> list[tuple[str, str, str]]:
    return [
        (watch.repository, seen[b], sha) for b, sha in heads.items() if b in seen and seen[b] != sha
    ]


def built_already(ledger: Any, units: list[str], sha: str) -> list[str]:
    """Those of `units` whose candidate at commit `sha` the ledger records (built, or refused at
    the build): a sensor looking at a repository for the first time starts from them."""
    return [
        u
        for u in units
        if ledger.latest(
            unit=u, action=("candidate", "build-failed"), predicate=lambda e: _built_at(e, sha)
        )
        is not None
    ]


def _built_at(entry: Any, sha: str) -> bool:
    # An app's version is its commit; a data unit's is its selection's digest, its commit a detail.
    details = ((entry.payload or {}).get("artifact") or {}).get("details") or {}
    return entry.version == sha or details.get("commit") == sha


def plan(
    sensor: str,
    who: Requester,
    watch: GitWatch,
    heads: dict[str, str],
    seen: dict[str, str],
    context: Any,
    known: dict[tuple[str, str, str], tuple[bool | None, list[str]]] | None = None,
) -> tuple[list[dg.RunRequest], dict[str, str]]:
    """Requests for the branches of one repository whose head moved; the new state for it."""
    requests: list[dg.RunRequest] = []
    state: dict[str, str] = {}
    repo = watch.repository
    for branch in sorted(b for b in seen if b not in heads):
        note(
            context,
            "info",
            f"{sensor}: {repo}: branch {branch} was deleted (last head {seen[branch][:12]})",
            repository=repo,
            branch=branch,
            event="deleted",
        )
    for branch, sha in sorted(heads.items()):
        builds = [
            b for b in watch.builds if any(fnmatch.fnmatchcase(branch, p) for p in b.branches)
        ]
        previews = [b for b in watch.builds if b.preview_job and b not in builds]
        if not builds and not previews:
            continue
        state[branch] = sha
        old = seen.get(branch)
        if old == sha:
            continue
        if previews and seen:  # a first look previews nothing: it watches from here
            requests += preview_requests(sensor, who, repo, branch, old, sha, previews, context)
        if not builds:
            continue
        if old is None:
            why = (
                f"new branch {branch} at {sha[:12]}"
                if seen
                else f"{branch} at {sha[:12]} (first look)"
            )
        else:
            ff, skipped = (known or {}).get((repo, old, sha)) or history(repo, old, sha)
            why = f"{branch} moved {old[:12]} -> {sha[:12]}"
            if ff is False:
                why += " (force-push: the old head is not in the new history)"
            if skipped:
                record(
                    sensor_ledger(context),
                    CommitsSkipped(
                        repository=repo,
                        branch=branch,
                        superseded_by=sha,
                        skipped=list(skipped),
                        units=[b.unit for b in builds],
                    ),
                    principal=who.principal,
                )
                more = "+" if len(skipped) > MAX_SKIPPED_LISTED else ""
                note(
                    context,
                    "info",
                    f"{sensor}: {repo}: building the newest commit of {branch}; skipped "
                    f"{len(skipped[:MAX_SKIPPED_LISTED])}{more} older one(s): "
                    f"{', '.join(s[:12] for s in skipped[:MAX_SKIPPED_LISTED])}",
                    repository=repo,
                    branch=branch,
                    event="skipped",
                    skipped=skipped[:MAX_SKIPPED_LISTED],
                )
        note(
            context,
            "info",
            f"{sensor}: {repo}: {why}",
            repository=repo,
            branch=branch,
            sha=sha,
            event="new-head",
        )
        # The key names the push (the ref's move), not only the commit: a force-push back to a
        # commit built before is a new push, and builds and deploys it again.
        moved = f"{old[:12]}..{sha}" if old else sha
        if old is None and not seen:  # a first look: what the platform built is not built again
            built = built_already(sensor_ledger(context), [b.unit for b in builds], sha)
            if built:
                note(
                    context,
                    "info",
                    f"{sensor}: {repo}: {sha[:12]} was built already for {', '.join(built)} "
                    "(`ud promote`, the demo): watching from it",
                    repository=repo,
                    branch=branch,
                    sha=sha,
                    event="built-already",
                )
                builds = [b for b in builds if b.unit not in built]
        for b in builds:
            requests.append(
                who.promote(
                    b.promotion,
                    run_key=f"git:{repo}:{branch}:{moved}:{b.unit}",
                    reason=f"git: {why}",
                    run_config=candidate_config(b.unit, sha),
                )
            )
    return requests, state


def preview_requests(
    sensor: str,
    who: Requester,
    repo: str,
    branch: str,
    old: str | None,
    sha: str,
    builds: list[Build],
    context: Any,
) -> list[dg.RunRequest]:
    """Requests for the preview of `branch` at `sha` of each unit in `builds` (engine/preview.py),
    tagged with the branch so the run list shows them."""
    from ..previews import env_for

    at = sha[:12]
    why = f"{branch} moved {old[:12]} -> {at}" if old else f"new branch {branch} at {at}"
    note(
        context,
        "info",
        f"{sensor}: {repo}: {why}: preview of {', '.join(b.unit for b in builds)}",
        repository=repo,
        branch=branch,
        sha=sha,
        event="preview",
    )
    moved = f"{old[:12]}..{sha}" if old else sha
    return [
        who.request(
            job=b.preview_job,
            run_key=f"preview:{repo}:{branch}:{moved}:{b.unit}",
            unit=b.unit,
            env=env_for(branch),
            reason=f"git: preview of {why}",
            run_config={
                "ops": {"preview_unit": {"config": {"unit": b.unit, "branch": branch, "sha": sha}}}
            },
            tags={PREVIEW_TAG: branch},
        )
        for b in builds
    ]


def teardown_requests(
    sensor: str,
    who: Requester,
    watch: GitWatch,
    heads: dict[str, str],
    seen: dict[str, str],
    previews: list[dict],
    context: Any,
) -> list[dg.RunRequest]:
    """Requests to remove the live previews of `watch`'s repository whose branch was deleted,
    was merged into its unit's branch this tick (the preview's commit is in the new head), or
    whose time to live is over. Run key: the preview's ledger entry, so each is removed once."""
    units = {b.unit: b for b in watch.builds if b.preview_job}
    out = []
    for p in previews:
        b = units.get(p["unit"])
        if b is None or p["repository"] != watch.repository:
            continue
        branch, why = p["branch"], None
        if branch not in heads:
            why = "deleted"
        elif heads[branch] == seen.get(branch, heads[branch]):  # not pushed to this tick
            moved = [
                sha
                for br, sha in heads.items()
                if any(fnmatch.fnmatchcase(br, pat) for pat in b.branches)
                and br in seen
                and seen[br] != sha
            ]
            if p["sha"] and any(is_ancestor(watch.repository, p["sha"], m) for m in moved):
                why = "merged"
            elif p["expired"]:
                why = "expired"
        if why is None:
            continue
        note(
            context,
            "info",
            f"{sensor}: {watch.repository}: preview {p['env']} of {b.unit} is torn down: "
            f"{branch} {why}",
            repository=watch.repository,
            branch=branch,
            event=f"preview-{why}",
        )
        out.append(
            who.request(
                job=PREVIEW_TEARDOWN_JOB,
                run_key=f"preview-teardown:{b.unit}:{p['env']}:{p['seq']}",
                unit=b.unit,
                env=p["env"],
                reason=f"git: {branch} {why}",
                run_config={
                    "ops": {
                        "tear_down_preview": {
                            "config": {"unit": b.unit, "branch": branch, "why": why}
                        }
                    }
                },
                tags={PREVIEW_TAG: branch},
            )
        )
    return out


def is_ancestor(repository: str, old: str, new: str) -> bool:
    """Whether commit `old` is in the history of `new` (False when that cannot be known
    without fetching: a remote repository)."""
    if not is_local(repository):
        return False
    try:
        return (
            subprocess.run(
                ["git", "merge-base", "--is-ancestor", old, new],
                cwd=repository,
                capture_output=True,
                timeout=30,
            ).returncode
            == 0
        )
    except (subprocess.TimeoutExpired, OSError):
        return False


def git_tick(
    sensor: str,
    principal: str,
    watches: Callable[[], Sequence[GitWatch]],
    *,
    timeout: float = 20,
    workers: int = 8,
    job_names: frozenset[str] | None = None,
):
    def tick(context: dg.SensorEvaluationContext, state: dict) -> list[dg.RunRequest]:
        started = time.monotonic()
        who = Requester.for_tick(sensor, principal)
        usable = []
        for w in watches():
            if job_names is not None:  # previews only where the sensor was given their job
                w = GitWatch(
                    w.repository,
                    tuple(
                        b if b.preview_job in job_names else replace(b, preview_job="")
                        for b in w.builds
                    ),
                )
            bad = [(p, why) for b in w.builds for p in b.branches if (why := pattern_problem(p))]
            if bad:
                note(
                    context,
                    "error",
                    f"{sensor}: {w.repository}: branch pattern {bad[0][0]!r} {bad[0][1]}; "
                    "this repository is skipped until the pattern is fixed",
                    repository=w.repository,
                    event="bad-pattern",
                )
                continue
            usable.append(w)
        heads = read_all(sorted({w.repository for w in usable}), timeout=timeout, workers=workers)
        read = {r: h for r, h in heads.items() if not isinstance(h, Unreadable)}
        readable = [w for w in usable if w.repository in read]
        for w in usable:
            if isinstance(heads[w.repository], Unreadable):
                note(
                    context,
                    "error",
                    f"{sensor}: cannot read {w.repository}: {heads[w.repository]}; skipped this "
                    "tick",
                    repository=w.repository,
                    event="unreachable",
                )
        known = histories(
            [
                m
                for w in readable
                for m in moves(w, read[w.repository], state.get(w.repository, {}))
                if is_local(m[0])
            ],
            workers,
        )
        requests: list[dg.RunRequest] = []
        previews = None  # the live previews, read once a tick where any unit has them
        if (job_names is None or PREVIEW_TEARDOWN_JOB in job_names) and any(
            b.preview_job for w in readable for b in w.builds
        ):
            from ..previews import live

            previews = live(sensor_ledger(context))
        for w in readable:
            seen = state.get(w.repository, {})
            reqs, state[w.repository] = plan(
                sensor, who, w, read[w.repository], seen, context, known
            )
            requests += reqs
            if previews:
                requests += teardown_requests(
                    sensor, who, w, read[w.repository], seen, previews, context
                )
        context.log.info(
            f"{sensor}: {len(usable)} repositories read in {time.monotonic() - started:.3f} s"
        )
        return requests

    return tick


def git_sensor(
    name: str,
    watches: Callable[[], Sequence[GitWatch]],
    jobs: Sequence[Any],
    *,
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
    timeout: float = 20,
    workers: int = 8,
    principal: str | None = None,
) -> dg.SensorDefinition:
    """A Git sensor over `watches()` (read at every tick, so paths may depend on the home)."""
    tick = git_tick(
        name,
        principal or default_principal(name),
        watches,
        timeout=timeout,
        workers=workers,
        job_names=frozenset(j.name for j in jobs),
    )
    return durable_sensor(
        name,
        tick,
        jobs,
        description="New commits on watched branches request candidate runs (run key: "
        "repository, branch, SHA).",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
    )


def app_watches(
    platform: Platform, home: Any = None, branches: dict[str, tuple[str, ...]] | None = None
) -> list[GitWatch]:
    """One watch per repository of the platform's units built from Git (app units); each unit
    on its own branch unless `branches` gives it patterns. Units whose first environment's
    policy is manual are left to `ud promote`; any unit's other branches get previews unless it
    turns them off (`previews: {enabled: false}`)."""
    from ..home import Home

    home = home or Home.current()
    grouped: dict[str, list[Build]] = {}
    for unit in platform.units.values():
        source = unit.git_source()
        if source is None:
            continue
        automatic = getattr(unit.policy, unit.environments[0], "automatic") == "automatic"
        patterns = (branches or {}).get(unit.name, (source.branch,))
        preview = PREVIEW_JOB if unit.previews.enabled else ""
        if automatic or preview:
            grouped.setdefault(home.expand(source.repository), []).append(
                Build(
                    unit.name,
                    promotion(platform, unit, unit.environments[0]),
                    patterns if automatic else (),
                    preview,
                )
            )
    return [GitWatch(repo, tuple(builds)) for repo, builds in grouped.items()]
