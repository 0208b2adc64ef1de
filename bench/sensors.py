"""Sensor benchmarks (issue 4), on this machine's real Git, MLflow and Dagster.

  .venv/bin/python bench/sensors.py git        one Git sensor tick over 1,000 watched repositories (goal <= 1 s)
  .venv/bin/python bench/sensors.py registry   one registry sensor tick over 500 registered models (goal <= 2 s)
  .venv/bin/python bench/sensors.py latency --home HOME
      push-to-staging for the demo app with the hook installed and `ud ui` running (goal <= 15 s);
      HOME is a home `ud demo` populated (it is used, not copied).

Ticks are evaluated through Dagster (build_sensor_context + evaluate_tick) on a real
instance in a temporary folder; the runs they request are counted, not executed.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


class Ref(dg.Config):
    ref: str


def bench_job(unit: str):
    """The unit's candidate and a staging promotion job over it, as the platform makes them."""
    from unified_delivery.promotions import job_name

    @dg.asset(key=dg.AssetKey([unit, "candidate"]))
    def build(config: Ref) -> str:
        return config.ref

    return build, dg.define_asset_job(job_name("staging"), selection=[build.key])


def bench_promotion(unit: str):
    from unified_delivery.promotions import Promotion

    return Promotion(unit, "staging", (dg.AssetKey([unit, "candidate"]),), ())


def timed_tick(sensor: dg.SensorDefinition, defs: dg.Definitions, instance: dg.DagsterInstance) -> tuple[float, int]:
    t0 = time.perf_counter()
    with dg.build_sensor_context(instance=instance, definitions=defs, sensor_name=sensor.name) as ctx:
        data = sensor.evaluate_tick(ctx)
    return time.perf_counter() - t0, len(data.run_requests)


def quiet_logs() -> None:
    import logging

    logging.getLogger("dagster").setLevel(logging.WARNING)


def bench_git(n: int, changed: int, remote_n: int) -> dict:
    from unified_delivery.triggers.git import Build, GitWatch, git_sensor

    tmp = Path(tempfile.mkdtemp(prefix="ud-bench-git-"))
    os.environ["DAGSTER_HOME"] = str(tmp / "dagster")
    os.environ["UD_HOME"] = str(tmp / "home")
    (tmp / "dagster").mkdir()
    (tmp / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    template, work = tmp / "template.git", tmp / "work"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(template))
    git("clone", "--quiet", str(template), str(work))
    git("checkout", "--quiet", "-b", "main", cwd=work)
    shas = []
    for i in range(2):
        (work / "f.txt").write_text(str(i))
        git("add", "-A", cwd=work)
        git("-c", "user.name=b", "-c", "user.email=b@b", "commit", "--quiet", "-m", f"c{i}", cwd=work)
        shas.append(git("rev-parse", "HEAD", cwd=work))
    git("push", "--quiet", "origin", "main", cwd=work)
    git("update-ref", "refs/heads/main", shas[0], cwd=template)  # repos start at the first commit
    repos = []
    for i in range(n):
        dest = tmp / "repos" / f"r{i:04d}.git"
        shutil.copytree(template, dest)
        repos.append(dest)
    asset, job = bench_job("bench_app")
    build = (Build("bench_app", bench_promotion("bench_app"), ("main",)),)
    watches = [GitWatch(str(r), build) for r in repos]
    sensor = git_sensor("bench_git", lambda: watches, [job])
    defs = dg.Definitions(assets=[asset], jobs=[job], sensors=[sensor])
    instance = dg.DagsterInstance.get()
    quiet_logs()
    out = {"repositories": n}
    out["first_tick_s"], out["first_tick_requests"] = timed_tick(sensor, defs, instance)
    out["steady_tick_s"], out["steady_tick_requests"] = timed_tick(sensor, defs, instance)
    for r in repos[:changed]:  # a push moves the branch: the new loose ref git writes
        (r / "refs" / "heads" / "main").write_text(shas[1] + "\n")
    out["changed_repositories"] = changed
    out["changed_tick_s"], out["changed_tick_requests"] = timed_tick(sensor, defs, instance)
    # Repositories named by URL go through `git ls-remote`, in a bounded thread pool.
    url_watches = [GitWatch(f"file://{r}", build) for r in repos[:remote_n]]
    url_sensor = git_sensor("bench_git_urls", lambda: url_watches, [job], workers=8)
    url_defs = dg.Definitions(assets=[asset], jobs=[job], sensors=[url_sensor])
    out["url_repositories"] = remote_n
    out["url_tick_s"], _ = timed_tick(url_sensor, url_defs, instance)
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def bench_registry(n: int, new_versions: int) -> dict:
    from unified_delivery.triggers.registry import ModelWatch, registry_sensor

    tmp = Path(tempfile.mkdtemp(prefix="ud-bench-registry-"))
    os.environ["DAGSTER_HOME"] = str(tmp / "dagster")
    os.environ["UD_HOME"] = str(tmp / "home")
    (tmp / "dagster").mkdir()
    (tmp / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    t0 = time.perf_counter()
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_registered_models(max_results=1)  # creates the schema
    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    names = [f"model_{i:03d}" for i in range(n)]
    for name in names:
        client.create_registered_model(name)
        for _ in range(2):
            client.create_model_version(name, source=f"file:///models/{name}")
    setup_s = time.perf_counter() - t0
    asset, job = bench_job("bench_model")
    watches = [ModelWatch(name, "bench_model", bench_promotion("bench_model")) for name in names]
    sensor = registry_sensor("bench_registry", lambda: watches, lambda: MlflowClient(tracking_uri=uri, registry_uri=uri), [job])
    defs = dg.Definitions(assets=[asset], jobs=[job], sensors=[sensor])
    instance = dg.DagsterInstance.get()
    quiet_logs()
    out = {"models": n, "versions": 2 * n, "mlflow_import_and_schema_s": round(import_s, 2), "setup_s": round(setup_s, 1)}
    out["first_tick_s"], out["first_tick_requests"] = timed_tick(sensor, defs, instance)
    out["steady_tick_s"], out["steady_tick_requests"] = timed_tick(sensor, defs, instance)
    for name in names[:new_versions]:
        client.create_model_version(name, source=f"file:///models/{name}")
    client.set_registered_model_alias(names[-1], "champion", "1")
    out["new_versions"] = new_versions
    out["changed_tick_s"], out["changed_tick_requests"] = timed_tick(sensor, defs, instance)
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def _graphql_up(url: str) -> bool:
    body = json.dumps({"query": "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"}).encode()
    try:
        req = urllib.request.Request(url + "/graphql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            entries = json.loads(resp.read())["data"]["workspaceOrError"]["locationEntries"]
        return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)
    except Exception:
        return False


def wait_for_runs(home: Path, since: datetime, deadline: float) -> None:
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    busy = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING,
            dg.DagsterRunStatus.STARTED]
    while instance.get_runs(filters=dg.RunsFilter(statuses=busy, created_after=since)) and time.monotonic() < deadline:
        time.sleep(1)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_latency(home: Path, port: int, pushes: int) -> dict:
    from unified_delivery.targets.local_release import LocalReleaseTarget

    port = port or free_port()  # other people's webservers may hold any fixed port
    started = datetime.now(timezone.utc)

    env = {**os.environ, "UD_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    ud = str(ROOT / ".venv" / "bin" / "ud")
    info = json.loads(subprocess.run([ud, "info", "--json"], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout)
    remote, work = info["repos"]["recommendation_api"]["remote"], Path(info["repos"]["recommendation_api"]["workdir"])
    url = f"http://127.0.0.1:{port}"
    subprocess.run([ud, "hook", "install", remote, "--url", url], cwd=ROOT, env=env, check=True, capture_output=True)
    log = open(home / "bench-ui.log", "w")
    ui = subprocess.Popen([ud, "ui", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                          start_new_session=True)
    results = []
    try:
        t0 = time.monotonic()
        while not _graphql_up(url):
            if ui.poll() is not None or time.monotonic() - t0 > 300:
                raise SystemExit(f"`ud ui` did not come up; see {home / 'bench-ui.log'}")
            time.sleep(1)
        ui_s = time.monotonic() - t0
        os.environ["UD_HOME"] = str(home)
        target = LocalReleaseTarget()
        unit = "recommendation_api"
        for i in range(pushes):
            readme = work / "README.md"
            readme.write_text(readme.read_text() + f"\nbench push {time.time()}\n")
            git("add", "-A", cwd=work)
            git("-c", "user.name=Bench", "-c", "user.email=bench@example.com", "commit", "--quiet", "-m", f"bench push {i}", cwd=work)
            sha = git("rev-parse", "HEAD", cwd=work)
            t0 = time.monotonic()
            push = subprocess.run(["git", "push", "origin", "main"], cwd=work, capture_output=True, text=True)
            push_s = time.monotonic() - t0
            while True:
                dep = target.status(unit, "staging")
                if dep is not None and dep.version == sha:
                    break
                if time.monotonic() - t0 > 300:
                    raise SystemExit(f"{sha} did not reach staging in 300 s; hook said: {push.stderr.strip()}")
                time.sleep(0.25)
            results.append({"sha": sha[:12], "push_with_hook_s": round(push_s, 2),
                            "push_to_staging_s": round(time.monotonic() - t0, 2),
                            "hook_said": [line for line in push.stderr.splitlines() if "ud:" in line]})
        wait_for_runs(home, started, deadline=time.monotonic() + 300)  # stopping `ud ui` would interrupt them
    finally:
        os.killpg(ui.pid, signal.SIGTERM)  # the `ud ui` process group this benchmark started
        try:
            ui.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
        log.close()
    return {"ui_ready_s": round(ui_s, 1), "pushes": results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    g = sub.add_parser("git")
    g.add_argument("--repos", type=int, default=1000)
    g.add_argument("--changed", type=int, default=100)
    g.add_argument("--url-repos", type=int, default=50)
    r = sub.add_parser("registry")
    r.add_argument("--models", type=int, default=500)
    r.add_argument("--new-versions", type=int, default=10)
    lat = sub.add_parser("latency")
    lat.add_argument("--home", type=Path, required=True)
    lat.add_argument("--port", type=int, default=0, help="default: a free port")
    lat.add_argument("--pushes", type=int, default=3)
    args = p.parse_args()
    if args.what == "git":
        out = bench_git(args.repos, args.changed, args.url_repos)
    elif args.what == "registry":
        out = bench_registry(args.models, args.new_versions)
    else:
        out = bench_latency(args.home.resolve(), args.port, args.pushes)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}, indent=2))


if __name__ == "__main__":
    main()
