"""One promotion, in this fresh process, through the platform or done by hand.

    python bench/overhead_child.py platform KIND ENV   # `ud promote`'s path: a run of ud_promote_<ENV>, the unit selected
    python bench/overhead_child.py bare KIND ENV       # the same work without the platform
    python bench/overhead_child.py rollback KIND ENV   # untimed: back to ENV's previous version (`ud rollback`)
    python bench/overhead_child.py stop                # stop the services both paths started

Run in a synthetic platform folder (bench/synthetic.py) with UD_HOME and DAGSTER_HOME set.
Only the promotion is timed: the definitions load (measured by bench/load.py) and the
imports both paths need (MLflow, scikit-learn, DuckDB, pandas) happen before the clock
starts. What the platform adds on top of the bare work is its overhead: the Dagster run,
the gates' bookkeeping and the policy gate, the ledger, the targets' state and history.

The bare work, per kind (what a person would do by hand for the same result):
  data  staging: `dbt build` (tests excluded) of the selection into a schema of its own, `dbt test`
        there, the table copied once into a release schema and the environment's view pointed at it
        in one transaction; production: that view swap.
  model staging: read the training table, split, fit, log and register the model in MLflow (with
        signature, input example and pinned requirements, as the platform logs it), load it back and
        score the held-out rows against the gate's bound, move the alias; production: move the alias.
  app   staging: fetch the commit into a mirror, `git archive` it, run its tests, copy the release,
        start it, wait for /health, switch the `current` symlink, stop the old process;
        production: the same from copy on.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

UNITS = {"data": "data_0000", "model": "model_0000", "app": "app_0000"}
FEATURES = ["x1", "x2", "x3"]


def home() -> Path:
    return Path(os.environ["UD_HOME"])


def bare_state() -> dict:
    path = home() / "bare" / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_bare_state(state: dict) -> None:
    path = home() / "bare" / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state))


def preload() -> None:
    """What both paths import anyway; kept out of the timing."""
    import duckdb  # noqa: F401
    import mlflow  # noqa: F401
    import mlflow.sklearn  # noqa: F401
    import pandas  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.model_selection  # noqa: F401


# -- the platform path -----------------------------------------------------------------------


def platform_promote(kind: str, env: str) -> dict:
    sys.path.insert(0, os.getcwd())
    from unified_delivery.service import promote
    from unified_delivery.service import load_platform

    platform, defs = load_platform(Path.cwd())
    preload()
    unit = UNITS[kind]
    started = time.perf_counter()
    outcome = promote(platform, defs, unit, env, reason="benchmark")
    seconds = time.perf_counter() - started
    if outcome.error:
        raise outcome.error
    dep = platform.target(platform.unit(unit), env).status(platform.unit(unit), env)
    return {"seconds": seconds, "version": dep.version if dep else None}


def platform_rollback(kind: str, env: str) -> dict:
    """So that the next promotion to `env` has something to change (set-up, not timed)."""
    sys.path.insert(0, os.getcwd())
    from unified_delivery.service import rollback
    from unified_delivery.service import load_platform

    platform, defs = load_platform(Path.cwd())
    outcome = rollback(platform, defs, UNITS[kind], env, reason="benchmark set-up")
    if outcome.error:
        raise outcome.error
    return {}


# -- the bare path ---------------------------------------------------------------------------


def bare_data(env: str) -> dict:
    import duckdb

    from unified_delivery import dbt

    unit, warehouse, state = UNITS["data"], home() / "warehouse.duckdb", bare_state()
    project = (Path.cwd() / "dbt_project").resolve()
    if env == "staging":
        tag = uuid.uuid4().hex[:8]
        schema = f"bare_{tag}"
        with tempfile.TemporaryDirectory(prefix="bare-dbt-") as tmp:
            (Path(tmp) / "profiles.yml").write_text(dbt.parse_profiles("ud_synthetic", str(warehouse), schema))
            common = ["--select", f"+{unit}", "--project-dir", str(project), "--profiles-dir", tmp, "--target", "ud"]
            for args, target in ((["build", "--exclude-resource-type", "test"], "build"), (["test"], "test")):
                proc = subprocess.run([dbt.dbt_executable(), *args, *common, "--target-path", f"{tmp}/{target}"],
                                      capture_output=True, text=True, cwd=project)
                if proc.returncode != 0:
                    raise RuntimeError(f"dbt {args[0]} failed: {proc.stdout[-2000:]}")
        release = f"{unit}__{tag}"
        con = duckdb.connect(str(warehouse))
        con.execute("CREATE SCHEMA IF NOT EXISTS bare_releases")
        con.execute(f'CREATE TABLE bare_releases."{release}" AS SELECT * FROM "{schema}"."{unit}"')
        state["data_release"] = release
    else:
        release = state["data_release"]
        con = duckdb.connect(str(warehouse))
    con.execute("BEGIN TRANSACTION")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS bare_{env}")
    con.execute(f'CREATE OR REPLACE VIEW bare_{env}."{unit}" AS SELECT * FROM bare_releases."{release}"')
    con.execute("COMMIT")
    con.close()
    save_bare_state(state)
    return {"version": release}


def bare_model(env: str) -> dict:
    from importlib.metadata import version

    import duckdb
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    name, state = f"bare_{UNITS['model']}", bare_state()
    uri = f"sqlite:///{home() / 'mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient()
    if env == "staging":
        con = duckdb.connect(str(home() / "warehouse.duckdb"), read_only=True)
        frame = con.execute(f'SELECT * FROM production."{UNITS["data"]}"').df()
        con.close()
        train, holdout = train_test_split(frame, test_size=0.25, random_state=0, stratify=frame["label"])
        fitted = LogisticRegression(max_iter=200).fit(train[FEATURES], train["label"])
        exp = mlflow.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp else mlflow.create_experiment(
            name, artifact_location=(home() / "mlflow" / "artifacts").resolve().as_uri() + f"/{name}")
        sample = train[FEATURES].head(5)
        with mlflow.start_run(experiment_id=exp_id):
            info = mlflow.sklearn.log_model(fitted, name="model", signature=infer_signature(sample, fitted.predict(sample)),
                                            input_example=sample, registered_model_name=name,
                                            pip_requirements=[f"{p}=={version(p)}" for p in ("mlflow", "scikit-learn",
                                                                                             "pandas", "numpy")])
        version = str(info.registered_model_version)
        loaded = mlflow.sklearn.load_model(f"models:/{name}/{version}")
        auc = roc_auc_score(holdout["label"], loaded.predict_proba(holdout[FEATURES])[:, 1])
        if auc < 0.6:
            raise RuntimeError(f"roc_auc {auc} below the gate's bound")
        state["model_version"] = version
    else:
        version = state["model_version"]
    client.set_registered_model_alias(name, env, version)
    save_bare_state(state)
    return {"version": version}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _await_health(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the service did not answer /health in time")


def _stop(pid: int | None) -> None:
    if pid:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def bare_app(env: str) -> dict:
    unit, state, root = UNITS["app"], bare_state(), home() / "bare" / "app"
    if env == "staging":
        remote = home() / "repos" / f"{unit}.git"
        mirror = root / "mirror.git"
        if not mirror.exists():
            subprocess.run(["git", "clone", "--quiet", "--mirror", str(remote), str(mirror)], check=True)
        else:
            subprocess.run(["git", "fetch", "--quiet", "--prune", "origin", "+refs/*:refs/*"], cwd=mirror, check=True)
        sha = subprocess.run(["git", "rev-parse", "main"], cwd=mirror, check=True, capture_output=True, text=True).stdout.strip()
        build = root / "builds" / sha
        if not build.exists():
            tar = subprocess.run(["git", "archive", "--format=tar", sha], cwd=mirror, check=True, capture_output=True)
            build.mkdir(parents=True)
            with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as t:
                t.extractall(build, filter="data")
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=build,
                               capture_output=True, text=True)
        if tests.returncode != 0:
            raise RuntimeError(f"the app's tests failed: {tests.stdout[-1000:]}")
        state["app_build"] = str(build)
    build = Path(state["app_build"])
    envdir = root / env
    release = envdir / "releases" / build.name
    if not release.exists():
        shutil.copytree(build, release)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=release, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _await_health(port, proc)
    link = envdir / "current.tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(release)
    os.replace(link, envdir / "current")
    _stop(state.get(f"app_pid_{env}"))
    state[f"app_pid_{env}"] = proc.pid
    save_bare_state(state)
    return {"version": build.name}


def bare_promote(kind: str, env: str) -> dict:
    preload()
    started = time.perf_counter()
    out = {"data": bare_data, "model": bare_model, "app": bare_app}[kind](env)
    return {"seconds": time.perf_counter() - started, **out}


def stop_all() -> dict:
    from unified_delivery.targets.local_release import LocalReleaseTarget

    stopped = LocalReleaseTarget(home=str(home())).stop_all()
    state = bare_state()
    for env in ("staging", "production"):
        _stop(state.pop(f"app_pid_{env}", None))
    save_bare_state(state)
    return {"stopped": stopped}


def main() -> int:
    mode = sys.argv[1]
    if mode == "stop":
        result = stop_all()
    else:
        kind, env = sys.argv[2], sys.argv[3]
        result = {"platform": platform_promote, "bare": bare_promote, "rollback": platform_rollback}[mode](kind, env)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
