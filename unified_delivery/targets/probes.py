"""What an environment of an embedded target runs, read without Dagster, MLflow or dbt.

Each embedded target describes itself as plain data (`BaseTarget.probe_spec`: the fields its
`status` reads, and the unit's name in that place); the catalog keeps the description
(catalog.py) and `ud status` answers from it with `probe`, which returns the same Deployment the
target's `status` would, or `NO_PROBE` when only the target itself can answer (a kill left a
deploy to reap, a place read through a client this module does not speak): then the platform is
loaded and the target asked. The reading halves of the release and artifact directories and of
the write-audit-publish warehouse live here, and the targets call them too, so there is one
reader per place. MLflow's registry is read from its own tables (SQLAlchemy, which the ledger
imports anyway) for a database tracking URI.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..home import Home
from .records import Deployment
from .state_files import read_json

NO_PROBE = object()  # `probe`'s answer when only the loaded target can say
RELEASES = "ud_releases"  # the write-audit-publish targets' release schema

# ---- app: release directories (local_release.py) --------------------------------------


@dataclass(frozen=True)
class ReleasePaths:
    root: Path  # <home>/releases/<unit>/<env>
    home: Path

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def current(self) -> Path:
        return self.root / "current"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def log(self) -> Path:
        return self.root / "service.log"

    @property
    def pending(self) -> Path:
        """The deploy in progress; left behind only if that deploy was killed."""
        return self.root / "pending.json"

    @property
    def images(self) -> Path:
        """Per version, the image its candidate was built as (run as a container)."""
        return self.root / "images.json"

    def release(self, version: str) -> Path:
        return self.releases / version


def release_paths(home_field: str, unit_name: str, env: str) -> ReleasePaths:
    home = Path(home_field).expanduser().resolve() if home_field else Home.current().root
    return ReleasePaths(root=home / "releases" / unit_name / env, home=home)


# Popen objects of the services this process started (local_release.py fills it), so that a
# service that dies is reaped (not left a zombie that still looks alive).
CHILDREN: dict[int, Any] = {}


def running(pid: int | None, token: str | None) -> bool:
    """Whether `pid` is alive, not a zombie, and (when `token` is known) the process we started."""
    if pid is None:
        return False
    child = CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: the pid was reused, ours is gone
    stat = proc_stat(pid)
    if stat is None:
        return True  # no /proc: trust the pid
    if stat[0] == "Z":
        return False
    return token is None or stat[19] == token


def proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from the state on; the name may hold spaces


def linked_version(current: Path, folder: Path) -> str | None:
    """The version a `current` link names: a directory of `folder` (a release store's
    `releases/`, an artifact target's `versions/`). None for no link, or one that points
    anywhere else (a link made by hand to another place serves no version of ours)."""
    try:
        link = Path(os.readlink(current))
    except OSError:
        return None
    target = (link if link.is_absolute() else current.parent / link).resolve()
    return target.name if target.parent == folder.resolve() and target.is_dir() else None


def service_url(port: int | None) -> str | None:
    return f"http://127.0.0.1:{port}" if port else None


def front_url(paths: ReleasePaths) -> str | None:
    """The environment's front door (an app with a rollout: front_door.py), if it has one."""
    front = read_json(paths.root / "front.json")
    return service_url(front.get("port")) if front else None


def release_status(paths: ReleasePaths) -> Deployment | None:
    """What the release directory runs (a killed deploy already reaped)."""
    state = read_json(paths.state)
    if state is None:
        return None
    # `current` is what starts on the next restart: switched by hand, it is the version
    # the environment now has (state.json keeps what this target deployed and runs).
    linked = linked_version(paths.current, paths.releases)
    moved = linked != state["version"]
    return Deployment(
        unit=state["unit"],
        env=state["env"],
        version=(linked or "(no current release)") if moved else state["version"],
        deployed_at=state["deployed_at"],
        previous_version=state.get("previous_version"),
        details={
            **({"running_version": state["version"]} if moved else {}),
            "port": state.get("port"),
            "pid": state.get("pid"),
            "url": front_url(paths) or service_url(state.get("port")),
            "release_url": service_url(state.get("port")),
            "running": running(state.get("pid"), state.get("pid_token")),
            "release_dir": str(paths.release(state["version"])),
            "log": str(paths.log),
            # the app's persistent folder and its own environment, when it has them
            # and whether it runs as a process or a container of its image
            **{
                k: state[k]
                for k in ("state_dir", "environment", "runtime", "image")
                if state.get(k)
            },
        },
    )


def _local_release(spec: Mapping[str, Any], env: str) -> Deployment | None | object:
    paths = release_paths(spec["home"], spec["unit"], env)
    if paths.pending.exists():
        return NO_PROBE  # a killed deploy to reap first, under the target's lock
    return release_status(paths)


# ---- asset: published files (local_artifact.py) ---------------------------------------


def artifact_root(home_field: str, unit_name: str, env: str) -> Path:
    home = Path(home_field).expanduser().resolve() if home_field else Home.current().root
    return home / "artifacts" / unit_name / env


def artifact_status(root: Path, env: str) -> Deployment | None:
    state = read_json(root / "state.json")
    if state is None:
        return None
    # `current` is what readers open: switched by hand, it is the version the environment
    # now publishes (state.json keeps what the target published).
    linked = linked_version(root / "current", root / "versions")
    if linked == state["version"]:
        version, file, digest, moved = state["version"], state["file"], state["digest"], {}
    else:
        version = linked or "(no current file)"
        found = sorted((root / "versions" / linked).iterdir()) if linked else []
        file = found[0].name if found else state["file"]
        history = reversed(state.get("history", []))
        digest = next((h["digest"] for h in history if h["version"] == linked), "")
        moved = {"published_version": state["version"]}
    return Deployment(
        unit=state["unit"],
        env=env,
        version=version,
        deployed_at=state["deployed_at"],
        previous_version=state.get("previous_version"),
        details={"path": str(root / "current" / file), "digest": digest, **moved},
    )


def _local_artifact(spec: Mapping[str, Any], env: str) -> Deployment | None:
    return artifact_status(artifact_root(spec["home"], spec["unit"], env), env)


# ---- data: write-audit-publish views (dbt_wap.py, dbt_duckdb.py) ----------------------

Execute = Callable[[str, list], Any]  # one statement with `?` placeholders -> a cursor

DUCKDB_VIEWS = (
    "SELECT table_name, view_definition FROM information_schema.views WHERE table_schema = ?"
)


def wap_history(execute: Execute, unit_name: str, env: str) -> list[tuple]:
    """What the target published in `env`, newest first (its deployments table)."""
    exists = execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? "
        "AND table_name = 'deployments'",
        [RELEASES],
    ).fetchone()[0]
    if not exists:
        return []
    return execute(
        "SELECT version, previous_version, models, deployed_at, action FROM "
        f"{RELEASES}.deployments WHERE unit = ? AND env = ? ORDER BY seq DESC",
        [unit_name, env],
    ).fetchall()


def wap_served(views: list[tuple[str, str | None]], models: list[str]) -> dict[str, str | None]:
    """The release version each model's view selects from (None: no such view, or one that no
    longer reads a release); `views` are (name, SQL) of the environment's schema."""
    if not models:
        return {}
    definitions = {name: sql or "" for name, sql in views}
    served: dict[str, str | None] = {}
    for m in models:
        match = re.search(rf'{RELEASES}\.("?){re.escape(m)}__([^"\s;]+)\1', definitions.get(m, ""))
        served[m] = match.group(2) if match else None
    return served


def wap_status(
    unit_name: str,
    env: str,
    rows: list[tuple],
    served: dict[str, str | None],
    location: str,
) -> Deployment | None:
    """What the environment's views serve. The deployments table says what the target
    published; the views are read too, so one re-pointed by hand (or dropped) shows as the
    version it now serves, with `published_version` the table's."""
    if not rows:
        return None
    version, previous, models, at, action = rows[0]
    names = models.split(",") if models else []
    found = set(served.values())
    actual = version
    if found and found != {version}:
        one = next(iter(found))
        views = ",".join(f"{m}={v or 'none'}" for m, v in sorted(served.items()))
        actual = one if len(found) == 1 and one is not None else f"mixed({views})"
    return Deployment(
        unit=unit_name,
        env=env,
        version=actual,
        deployed_at=at,
        previous_version=previous,
        details={
            "schema": env,
            "models": names,
            "last_action": action,
            "warehouse": location,
            **({"published_version": version, "views": served} if actual != version else {}),
        },
    )


def duckdb_path(warehouse_field: str) -> Path:
    return Path(warehouse_field) if warehouse_field else Home.current().warehouse


def connect_duckdb(path: Path, read_only: bool = False):
    """A connection to the DuckDB file, waiting out another writer (dbt, a reader) a while."""
    import duckdb

    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(60):  # another process (dbt, a reader) may hold the file for a moment
        try:
            return duckdb.connect(str(path), read_only=read_only and path.exists())
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or attempt == 59:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def _dbt_duckdb(spec: Mapping[str, Any], env: str, session: Probing) -> Deployment | None:
    path = duckdb_path(spec["warehouse"])
    if not path.exists():
        return None
    con = session.duckdb(path)

    def execute(sql: str, params: list) -> Any:
        return con.execute(sql, params)

    rows = wap_history(execute, spec["unit"], env)
    models = rows[0][2] if rows else ""
    served = wap_served(
        execute(DUCKDB_VIEWS, [env]).fetchall(), models.split(",") if models else []
    )
    return wap_status(spec["unit"], env, rows, served, str(path))


# ---- model: MLflow registry aliases (mlflow_alias.py) ---------------------------------

DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def _mlflow_alias(
    spec: Mapping[str, Any], env: str, session: Probing
) -> Deployment | None | object:
    """The alias named after `env`, read from the tables of MLflow's database store, as
    `MlflowClient.get_model_version_by_alias` and the registered model's tags give it. A
    tracking server (http), MLflow's workspaces or an alias MLflow gives a meaning of its own
    (`latest`) are the client's to answer."""
    uri = spec["tracking_uri"] or Home.current().mlflow_tracking_uri
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    if (
        scheme not in DB_SCHEMES
        or env.lower() == "latest"
        or os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").lower() in ("1", "true")
        or os.environ.get("MLFLOW_WORKSPACE")
    ):
        return NO_PROBE
    if scheme == "sqlite" and not Path(uri[len("sqlite:///") :]).exists():
        return None  # no registry yet: no version has the alias
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError

    name = spec["model_name"]
    try:
        engine, tables = session.database(uri)
        if not {"registered_model_aliases", "model_versions"} <= tables:
            return None
        with engine.connect() as con:
            version = con.execute(
                sa.text(
                    "SELECT version FROM registered_model_aliases WHERE name = :n AND alias = :a"
                ),
                {"n": name, "a": env},
            ).scalar()
            if version is None:
                return None
            row = con.execute(
                sa.text(
                    "SELECT run_id FROM model_versions WHERE name = :n AND version = :v "
                    "AND current_stage != 'Deleted_Internal'"
                ),
                {"n": name, "v": version},
            ).first()
            if row is None:
                return None
            data_version = con.execute(
                sa.text(
                    "SELECT value FROM model_version_tags WHERE name = :n AND version = :v "
                    "AND key = 'ud.data_version'"
                ),
                {"n": name, "v": version},
            ).scalar()
            tags = dict(
                con.execute(
                    sa.text("SELECT key, value FROM registered_model_tags WHERE name = :n"),
                    {"n": name},
                ).all()
            )
    except SQLAlchemyError:
        return NO_PROBE  # a schema this reader does not know: MLflow's client will
    return Deployment(
        unit=spec["unit"],
        env=env,
        version=str(version),
        deployed_at=tags.get(f"ud.{env}.deployed_at", ""),
        previous_version=tags.get(f"ud.{env}.previous") or None,
        details={
            "model_uri": f"models:/{name}@{env}",
            "run_id": row[0],
            "data_version": data_version or "",
        },
    )


# ---- the entry point --------------------------------------------------------------------


class Probing:
    """Connections shared by the probes of one answer (a platform of 1,000 units reads one
    registry and one warehouse 700 times each), closed when it ends."""

    def __init__(self) -> None:
        self._engines: dict[str, tuple[Any, set[str]]] = {}
        self._duckdb: dict[Path, Any] = {}

    def database(self, uri: str) -> tuple[Any, set[str]]:
        """A SQLAlchemy engine on `uri` and the tables it had when first asked."""
        if uri not in self._engines:
            import sqlalchemy as sa

            engine = sa.create_engine(uri)
            with engine.connect() as con:
                self._engines[uri] = engine, set(sa.inspect(con).get_table_names())
        return self._engines[uri]

    def duckdb(self, path: Path) -> Any:
        if path not in self._duckdb:
            self._duckdb[path] = connect_duckdb(path, read_only=True)
        return self._duckdb[path]

    def __enter__(self) -> Probing:
        return self

    def __exit__(self, *_: object) -> None:
        for engine, _tables in self._engines.values():
            engine.dispose()
        for con in self._duckdb.values():
            con.close()
        self._engines.clear()
        self._duckdb.clear()


PROBES: dict[str, Callable[[Mapping[str, Any], str, Probing], Any]] = {
    "local_release": lambda spec, env, _: _local_release(spec, env),
    "local_artifact": lambda spec, env, _: _local_artifact(spec, env),
    "dbt_duckdb": _dbt_duckdb,
    "mlflow_alias": _mlflow_alias,
}


def probe(
    spec: Mapping[str, Any] | None, env: str, session: Probing | None = None
) -> Deployment | None | object:
    """What `env` runs by the target's description `spec`: a Deployment, None (nothing was ever
    deployed there), or NO_PROBE (ask the target). Probes of one answer share a `session`."""
    reader = PROBES.get((spec or {}).get("probe", ""))
    if reader is None or spec is None:
        return NO_PROBE
    if session is not None:
        return reader(spec, env, session)
    with Probing() as own:
        return reader(spec, env, own)
