"""The Git sensor on real repositories: commits pushed with git to bare repositories, force
pushes, new and deleted branches, a repository that vanishes; evaluated through Dagster and
its runs executed on a real instance, whose state survives a restart."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from unified_delivery.home import Home
from unified_delivery.ledger import Ledger
from unified_delivery.triggers import base
from unified_delivery.run_tags import RUN_KEY_TAG, SENSOR_NAME_TAG
from unified_delivery.triggers.base import collect_notes
from unified_delivery.triggers.git import Build, GitWatch, git_sensor, local_heads, pattern_problem, remote_heads
from unified_delivery.triggers.tick import tick

from tests.staging_job import promotion_of, staging_defs

AUTHOR = ["-c", "user.name=Dana Developer", "-c", "user.email=dana@example.com"]


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


class Repo:
    """A bare remote and a developer's clone that pushes to it."""

    def __init__(self, root: Path, name: str):
        self.remote = root / f"{name}.git"
        self.work = root / name
        git("init", "--quiet", "--bare", "--initial-branch=main", str(self.remote))
        git("clone", "--quiet", str(self.remote), str(self.work))
        git("checkout", "--quiet", "-b", "main", cwd=self.work)

    def commit(self, message: str, branch: str = "main") -> str:
        git("checkout", "--quiet", "-B", branch, cwd=self.work)
        (self.work / "log.txt").open("a").write(message + "\n")
        git("add", "-A", cwd=self.work)
        git(*AUTHOR, "commit", "--quiet", "-m", message, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def push(self, branch: str = "main", force: bool = False) -> None:
        git("push", "--quiet", *(["--force"] if force else []), "origin", branch, cwd=self.work)


@pytest.fixture
def instance(ud_home: Path) -> dg.DagsterInstance:
    from unified_delivery.runner import instance as open_instance

    return open_instance(Home(ud_home))


def make_defs(watches, *units: str) -> dg.Definitions:
    return staging_defs(units, lambda jobs: [git_sensor("git", lambda: watches, jobs)])


def evaluate(defs: dg.Definitions, instance: dg.DagsterInstance):
    sensor = next(s for s in defs.sensors if s.name == "git")
    with collect_notes() as notes, dg.build_sensor_context(instance=instance, definitions=defs, sensor_name="git") as ctx:
        data = sensor.evaluate_tick(ctx)
    return data.run_requests, notes


def refs(requests) -> list[tuple[str, str]]:
    return [(r.run_config["ops"][f"{r.tags['ud/unit']}__candidate"]["config"]["ref"], r.tags["ud/unit"]) for r in requests]


def test_new_commits_build_the_newest_and_a_restart_requests_nothing_twice(tmp_path, ud_home, instance):
    repo = Repo(tmp_path, "app")
    first = repo.commit("first")
    repo.push()
    defs = make_defs([GitWatch(str(repo.remote), (Build("app", promotion_of("app"), ("main",)),))], "app")

    report = tick(defs, Home(ud_home))
    (ran,) = report["sensors"][0]["requested"]
    assert ran["outcome"] == "success" and ran["run_key"] == f"git:{repo.remote}:main:{first}:app"
    run = instance.get_run_by_id(ran["run_id"])
    assert run.tags[RUN_KEY_TAG] == ran["run_key"] and run.tags[SENSOR_NAME_TAG] == "git"
    assert run.tags["ud/principal"] == "service:sensor/git" and "ud/grant" not in run.tags  # the grant is not a tag
    from unified_delivery.governance import grants, tokens

    engine = Ledger(f"sqlite:///{ud_home / 'ledger.db'}").engine  # the grant went where the run will look
    assert grants.principal_for(engine, tokens.signing_key(Home(ud_home)), run_id=run.run_id, run_key=ran["run_key"],
                                job=run.job_name, run_config=run.run_config) == "service:sensor/git"
    assert run.run_config["ops"]["app__candidate"]["config"]["ref"] == first

    older = [repo.commit(f"change {i}") for i in range(3)]
    newest = repo.commit("newest")
    repo.push()
    requests, notes = evaluate(defs, instance)
    assert refs(requests) == [(newest, "app")]
    skipped = next(n for n in notes if n["event"] == "skipped")
    assert set(skipped["skipped"]) == set(older)
    (recorded,) = Ledger(f"sqlite:///{ud_home / 'ledger.db'}").entries(action="commits-skipped")  # not only a note
    assert set(recorded.payload["skipped"]) == set(older) and recorded.payload["superseded_by"] == newest
    assert recorded.payload["branch"] == "main" and recorded.payload["units"] == ["app"]

    # Restart: a new instance object on the same storage. The dry evaluation above requested
    # `newest` but launched nothing; within the grace period it is not requested again ...
    restarted = dg.DagsterInstance.from_config(str(ud_home / "dagster"))
    assert evaluate(defs, restarted)[0] == []
    # ... and once the grace period has passed it is, exactly once more, then run.
    base.PENDING_GRACE_S, grace = 0.0, base.PENDING_GRACE_S
    try:
        again = tick(defs, Home(ud_home))["sensors"][0]["requested"]
    finally:
        base.PENDING_GRACE_S = grace
    pushed = f"git:{repo.remote}:main:{first[:12]}..{newest}:app"  # the key names the push, not only the commit
    assert [(r["run_key"], r["outcome"]) for r in again] == [(pushed, "success")]
    assert tick(defs, Home(ud_home))["sensors"][0]["requested"] == []
    assert len(restarted.get_runs(filters=dg.RunsFilter(tags={SENSOR_NAME_TAG: "git"}))) == 2

    # A force-push back to a commit built before is a new push: built (and deployed) again.
    git("reset", "--quiet", "--hard", first, cwd=repo.work)
    repo.push(force=True)
    back = tick(defs, Home(ud_home))["sensors"][0]["requested"]
    assert [(r["run_key"], r["outcome"]) for r in back] == [(f"git:{repo.remote}:main:{newest[:12]}..{first}:app",
                                                             "success")]
    assert instance.get_run_by_id(back[0]["run_id"]).run_config["ops"]["app__candidate"]["config"]["ref"] == first


def test_a_first_look_does_not_build_again_what_the_platform_built(tmp_path, ud_home, instance):
    """After `ud promote` or the demo built the head, starting the sensor (opening `ud ui`)
    requests nothing for it; the next push is built."""
    from unified_delivery.events import Candidate, record

    repo = Repo(tmp_path, "app")
    repo.commit("an older commit")
    repo.push()
    other = repo.commit("on another unit's watch")  # same repository, a unit that never built it
    repo.push()
    ledger = Ledger(f"sqlite:///{ud_home / 'ledger.db'}")
    record(ledger, Candidate(artifact={}, run_id="r1"), principal="human:dana", unit="app", env="candidate",
           version=other)
    watch = GitWatch(str(repo.remote), (Build("app", promotion_of("app"), ("main",)),
                                       Build("api", promotion_of("api"), ("main",))))
    defs = make_defs([watch], "app", "api")
    requests, notes = evaluate(defs, instance)
    assert refs(requests) == [(other, "api")]  # app built it already; api never did
    assert [n["event"] for n in notes if n.get("event") == "built-already"] == ["built-already"]
    newest = repo.commit("pushed after")
    repo.push()
    tick(defs, Home(ud_home))  # the first look, launched: the sensor's cursor is now the head
    newer = repo.commit("and again")
    repo.push()
    assert sorted(refs(evaluate(defs, instance)[0])) == [(newer, "api"), (newer, "app")]


def test_force_push_new_and_deleted_branches(tmp_path, instance):
    repo = Repo(tmp_path, "app")
    base_sha = repo.commit("base")
    repo.push()
    repo.commit("feature work", branch="release/1")
    repo.push("release/1")
    watch = GitWatch(str(repo.remote), (Build("app", promotion_of("app"), ("main", "release/*")),))
    defs = make_defs([watch], "app")
    assert sorted(refs(evaluate(defs, instance)[0])) == sorted([(base_sha, "app"), (git("rev-parse", "release/1", cwd=repo.work), "app")])

    # Rewrite main's history and force-push it: the new head is built, the force-push noted.
    git("checkout", "--quiet", "main", cwd=repo.work)
    git("reset", "--quiet", "--hard", "HEAD", cwd=repo.work)
    git(*AUTHOR, "commit", "--quiet", "--amend", "-m", "base, rewritten", cwd=repo.work)
    rewritten = git("rev-parse", "HEAD", cwd=repo.work)
    repo.push(force=True)
    # A new branch that matches, one that does not, and a deleted one.
    release2 = repo.commit("second release", branch="release/2")
    repo.push("release/2")
    repo.commit("experiment", branch="spike")
    repo.push("spike")
    git("push", "--quiet", "origin", "--delete", "release/1", cwd=repo.work)

    requests, notes = evaluate(defs, instance)
    assert sorted(refs(requests)) == sorted([(rewritten, "app"), (release2, "app")])
    events = {(n["event"], n.get("branch")) for n in notes}
    assert ("deleted", "release/1") in events and ("new-head", "release/2") in events
    assert any("force-push" in n["message"] for n in notes if n.get("branch") == "main")
    assert not any(n.get("branch") == "spike" for n in notes)


def test_a_bad_source_is_skipped_and_the_others_still_tick(tmp_path, instance):
    good, gone, url_repo = Repo(tmp_path, "good"), Repo(tmp_path, "gone"), Repo(tmp_path, "byurl")
    shas = {}
    for r in (good, gone, url_repo):
        shas[r.remote.name] = r.commit("one")
        r.push()
    watches = [GitWatch(str(good.remote), (Build("app", promotion_of("app"), ("main",)),)),
               GitWatch(str(gone.remote), (Build("app", promotion_of("app"), ("main",)),)),
               GitWatch(f"file://{url_repo.remote}", (Build("app", promotion_of("app"), ("main",)),)),
               GitWatch(str(good.remote) + "-other", (Build("app", promotion_of("app"), ("bad..pattern",)),))]
    defs = make_defs(watches, "app")
    assert len(evaluate(defs, instance)[0]) == 3

    subprocess.run(["rm", "-rf", str(gone.remote)], check=True)
    good_new = good.commit("two")
    good.push()
    url_new = url_repo.commit("two")
    url_repo.push()
    requests, notes = evaluate(defs, instance)
    assert sorted(refs(requests)) == sorted([(good_new, "app"), (url_new, "app")])
    problems = {n["event"]: n["message"] for n in notes if n["level"] == "error"}
    assert str(gone.remote) in problems["unreachable"] and "bad..pattern" in problems["bad-pattern"]

    # The vanished repository comes back unchanged: its cursor was kept, so nothing is rebuilt.
    git("clone", "--quiet", "--bare", str(good.remote), str(gone.remote))
    git("push", "--quiet", "--force", str(gone.remote), f"{shas['gone.git']}:refs/heads/main", cwd=gone.work)
    assert evaluate(defs, instance)[0] == []


def test_local_refs_are_read_from_files_as_git_sees_them(tmp_path):
    repo = Repo(tmp_path, "app")
    repo.commit("a")
    repo.push()
    repo.commit("b", branch="topic/x")
    repo.push("topic/x")
    git("pack-refs", "--all", cwd=repo.remote)  # packed-refs, then a loose ref that overrides it
    repo.commit("c")
    repo.push()
    assert local_heads(repo.remote) == remote_heads(str(repo.remote), timeout=30)
    assert local_heads(repo.work) == {"main": git("rev-parse", "main", cwd=repo.work),
                                      "topic/x": git("rev-parse", "topic/x", cwd=repo.work)}


@pytest.mark.parametrize("pattern,ok", [("main", True), ("release/*", True), ("feat-[0-9]*", True), ("", False),
                                        ("has space", False), ("a..b", False), ("x:y", False), ("[oops", False),
                                        ("ends/", False)])
def test_branch_patterns_git_could_never_match_are_refused(pattern, ok):
    assert (pattern_problem(pattern) is None) is ok


def test_hook_install_runs_on_push_and_the_push_succeeds_without_dagster(tmp_path, capsys):
    from unified_delivery.cli import main

    def ud(*args: str) -> tuple[int, dict]:
        code = main([*args, "--json"])
        return code, json.loads(capsys.readouterr().out)

    repo = Repo(tmp_path, "app")
    code, out = ud("hook", "install", str(repo.remote), "--url", "http://127.0.0.1:9")
    assert code == 0, out
    hook = Path(out["hook"])
    assert hook.exists() and hook.stat().st_mode & 0o111
    repo.commit("one")
    push = subprocess.run(["git", "push", "origin", "main"], cwd=repo.work, capture_output=True, text=True, timeout=60)
    assert push.returncode == 0
    assert "no Dagster answers at http://127.0.0.1:9" in push.stderr  # the hook ran, said so, and let the push through

    # A hook that is not ud's is not overwritten silently; a clone that is not bare is refused.
    hook.write_text("#!/bin/sh\necho mine\n")
    code, out = ud("hook", "install", str(repo.remote))
    assert code == 2 and out["error"]["code"] == "UD-HOOK-EXISTS"
    code, out = ud("hook", "install", str(repo.work))
    assert code == 2 and out["error"]["code"] == "UD-HOOK-NOT-BARE"
