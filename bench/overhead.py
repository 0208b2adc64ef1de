"""The platform's own cost per promotion, per kind: `ud promote`'s Dagster run against the
same work done by hand (bench/overhead_child.py says exactly what each does).

    python bench/overhead.py --workdir /tmp/ud-overhead --repeat 3 --out /tmp/ud-overhead/overhead.json

A synthetic platform of one data -> model -> app chain is generated in --workdir with its
own home; the app's repository is made from its template. After an untimed warm-up of
both paths (MLflow's database, the registered models, the first releases), each kind is
promoted to staging (build, gates, deploy) `--repeat` times per path, alternating, each
promotion in a fresh process and on a new version: a changed SQL comment (data), a new
training run (model), a new commit (app). Then each kind is promoted to production (gates
on staging, deploy) `--repeat` times per path, production being rolled back (untimed)
between two platform promotions so each one deploys. The overhead is the median of the
platform's times minus the median of the bare ones.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH, PYTHON, child_env, machine, median, run_child, save, table  # noqa: E402

import synthetic  # noqa: E402

KINDS = ("data", "model", "app")
GIT_AUTHOR = ["-c", "user.name=Bench", "-c", "user.email=bench@example.com"]


class Setup:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.platform = workdir / "platform"
        self.home = workdir / "home"
        self.app_work = workdir / "app-work"
        self.env = child_env(UD_HOME=str(self.home))
        self.counter = 0

    def create(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
        synthetic.generate(3, self.platform)
        remote = self.home / "repos" / "app_0000.git"
        remote.parent.mkdir(parents=True)
        subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(remote)], check=True)
        subprocess.run(["git", "clone", "--quiet", str(remote), str(self.app_work)], check=True, capture_output=True)
        shutil.copytree(self.platform / "templates" / "app", self.app_work, dirs_exist_ok=True)
        self.commit("the app from the synthetic template")

    def commit(self, message: str) -> None:
        for args in (["checkout", "--quiet", "-B", "main"], ["add", "-A"],
                     [*GIT_AUTHOR, "commit", "--quiet", "--allow-empty", "-m", message], ["push", "--quiet", "origin", "main"]):
            subprocess.run(["git", *args], cwd=self.app_work, check=True, capture_output=True)

    def new_version(self, kind: str) -> None:
        """Give the next promotion something new to take (a model trains a new version by itself)."""
        self.counter += 1
        if kind == "data":
            sql = self.platform / "dbt_project" / "models" / "data_0000.sql"
            sql.write_text(sql.read_text() + f"-- benchmark revision {self.counter}\n")
        elif kind == "app":
            self.commit(f"benchmark revision {self.counter}")

    def child(self, mode: str, kind: str, env: str) -> dict:
        return run_child([PYTHON, str(BENCH / "overhead_child.py"), mode, kind, env], cwd=self.platform, env=self.env)

    def promote(self, path: str, kind: str, env: str) -> float:
        return self.child(path, kind, env)["seconds"]

    def stop(self) -> None:
        run_child([PYTHON, str(BENCH / "overhead_child.py"), "stop"], cwd=self.platform, env=self.env)


def warm_up(s: Setup, env: str) -> None:
    """Both paths once per kind; before production, a version there and a newer one in staging."""
    for kind in KINDS:
        if env == "staging":
            s.promote("platform", kind, "staging")
            if kind == "data":  # the model trains on data's production version
                s.promote("platform", kind, "production")
        elif kind != "data":  # data's staging runs left it so already
            s.promote("platform", kind, "production")
            s.new_version(kind)
            s.promote("platform", kind, "staging")
        s.promote("bare", kind, env)


def row(kind: str, env: str, platform: list[float], bare: list[float]) -> dict:
    print(f"{kind} to {env}: platform {median(platform):.2f} s, bare {median(bare):.2f} s", file=sys.stderr)
    return {"kind": kind, "env": env, "platform_s": platform, "bare_s": bare, "platform_median_s": median(platform),
            "bare_median_s": median(bare), "overhead_s": median(platform) - median(bare)}


def measure(s: Setup, repeat: int) -> list[dict]:
    rows = []
    warm_up(s, "staging")
    for kind in KINDS:
        platform, bare = [], []
        for _ in range(repeat):
            s.new_version(kind)
            platform.append(s.promote("platform", kind, "staging"))
            bare.append(s.promote("bare", kind, "staging"))
        rows.append(row(kind, "staging", platform, bare))
    warm_up(s, "production")  # after the staging runs: a model in production adds a champion to score
    for kind in KINDS:
        platform, bare = [], []
        for _ in range(repeat):
            platform.append(s.promote("platform", kind, "production"))
            s.child("rollback", kind, "production")
            bare.append(s.promote("bare", kind, "production"))
        rows.append(row(kind, "production", platform, bare))
    return rows


def report(rows: list[dict]) -> str:
    return table(["kind", "promotion", "platform (median) s", "bare (median) s", "overhead s", "runs"],
                 [[r["kind"], f"to {r['env']}", r["platform_median_s"], r["bare_median_s"], r["overhead_s"],
                   len(r["platform_s"])] for r in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="emptied, then holds the platform and its home")
    parser.add_argument("--repeat", type=int, default=3, help="timed promotions per kind, environment and path")
    parser.add_argument("--out", type=Path, default=None, help="write every measurement as JSON here")
    args = parser.parse_args()
    setup = Setup(args.workdir)
    setup.create()
    try:
        rows = measure(setup, args.repeat)
    finally:
        setup.stop()
    save(args.out, {"machine": machine(), "rows": rows})
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
