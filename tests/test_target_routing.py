"""Targets per kind and environment (targets/routing.py) and the roles a unit's kind and gates
need (targets/roles.py): what a platform may say, what it is refused at load, and a model whose
staging is an MLflow alias and whose production is a small model server, promoted through the
real engine (Dagster runs on a home's instance), then rolled back.

The model server (`ModelFileTarget`) is written here on purpose: a new model target is a
BaseTarget with its steps, not a subclass of MlflowAliasTarget. It is not a model registry:
the unit's candidates are registered in MLflow, the registry of the unit wherever it deploys,
and the server downloads the registered version it is asked to serve.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

import unified_delivery as ud
from tests.test_mlflow_alias import mlflow_uris_restored
from unified_delivery.errors import ConfigError, TargetError, UDError
from unified_delivery.governance import Governance, PolicyFile
from unified_delivery.home import Home
from unified_delivery.ledger import LedgerResource
from unified_delivery.service import promote, rollback, status
from unified_delivery.targets.base import Artifact, BaseTarget, Deployment, Health, Log
from unified_delivery.targets.dbt_duckdb import DbtDuckDBTarget
from unified_delivery.targets.kubernetes import KubernetesTarget
from unified_delivery.targets.local_artifact import LocalArtifactTarget
from unified_delivery.targets.local_release import LocalReleaseTarget
from unified_delivery.targets.mlflow_alias import MlflowAliasTarget
from unified_delivery.targets.roles import DeployTarget, ModelRegistry, ReleaseStore
from unified_delivery.targets.routing import Targets
from unified_delivery.targets.state_files import TMP_MARK, locked, read_json, write_json

FEATURES = ["tenure", "spend"]
POLICY = PolicyFile(
    principals={
        "human:local-operator": {"roles": {"*": ["deploy", "approve", "admin"]}},
        "service:sensors": {"roles": {"*": ["deploy"]}},  # the reconcile sensor's self-heal
    }
)


class ModelFileTarget(BaseTarget):
    """A model server's files: each version's MLflow model, downloaded from the registry, under
    `<root>/<unit>/<env>/versions/<version>`, with `current` switched atomically."""

    kinds = ("model",)
    root: str
    registry: MlflowAliasTarget  # where the versions it serves are registered

    def _dir(self, unit: ud.ModelUnit, env: str) -> Path:
        return Path(self.root) / unit.name / env

    def _lock(self, unit: ud.ModelUnit, env: str) -> AbstractContextManager[None]:
        return locked(self._dir(unit, env))

    def _deploy(
        self, unit: ud.ModelUnit, env: str, artifact: Artifact, current: Deployment | None, log: Log
    ) -> Deployment:
        import mlflow.artifacts

        versions = self._dir(unit, env) / "versions"
        if not (versions / artifact.version).is_dir():
            self.registry.activate()
            tmp = versions / f"{artifact.version}{TMP_MARK}{secrets.token_hex(4)}"
            tmp.mkdir(parents=True)
            log(f"downloading {artifact.location} to {versions / artifact.version}")
            mlflow.artifacts.download_artifacts(artifact_uri=artifact.location, dst_path=str(tmp))
            os.rename(tmp, versions / artifact.version)
        same = current is not None and current.version == artifact.version
        previous = (
            current.previous_version if same and current else current.version if current else None
        )
        return self._switch(unit, env, artifact.version, previous)

    def _rollback(
        self,
        unit: ud.ModelUnit,
        env: str,
        to_version: str | None,
        current: Deployment | None,
        log: Log,
    ) -> Deployment:
        wanted = to_version or (current.previous_version if current else None)
        if not wanted:
            raise TargetError(
                "UD-TARGET-NO-PREVIOUS", f"{unit.name}/{env} has no previous version", "give --to"
            )
        if wanted not in self.versions(unit, env):
            raise TargetError(
                "UD-TARGET-NO-RELEASE",
                f"{unit.name}/{env} never served {wanted}",
                f"known: {', '.join(self.versions(unit, env)) or 'none'}",
            )
        return self._switch(unit, env, wanted, current.version if current else None)

    def _switch(
        self, unit: ud.ModelUnit, env: str, version: str, previous: str | None
    ) -> Deployment:
        folder = self._dir(unit, env)
        link = folder / f"current{TMP_MARK}{secrets.token_hex(4)}"
        os.symlink(Path("versions") / version, link)
        os.replace(link, folder / "current")
        at = datetime.now(UTC).isoformat()
        write_json(
            folder / "state.json",
            {"version": version, "previous_version": previous, "deployed_at": at},
        )
        return self.status(unit, env) or Deployment(
            unit=unit.name, env=env, version=version, deployed_at=at
        )

    def status(self, unit: ud.ModelUnit, env: str) -> Deployment | None:
        state = read_json(self._dir(unit, env) / "state.json")
        return state and Deployment(
            unit=unit.name,
            env=env,
            **state,
            details={"path": str(self._dir(unit, env) / "current")},
        )

    def health(self, unit: ud.ModelUnit, env: str) -> Health:
        served = self._dir(unit, env) / "current" / "MLmodel"
        return Health(served.is_file(), f"{served} {'is' if served.is_file() else 'is not'} there")

    def versions(self, unit: ud.ModelUnit, env: str) -> list[str]:
        folder = self._dir(unit, env) / "versions"
        found = [p for p in folder.iterdir() if TMP_MARK not in p.name] if folder.is_dir() else []
        return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True)]


def rows(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 2)), columns=FEATURES)
    frame["churned"] = (
        frame["tenure"] - frame["spend"] + rng.normal(scale=0.5, size=n) > 0
    ).astype(int)
    return frame


def train(frame: pd.DataFrame):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(frame[FEATURES], frame["churned"])


def scorer(tmp: Path, **declaration) -> ud.ModelDefinition:
    dataset = tmp / "customers.csv"
    if not dataset.exists():
        rows().to_csv(dataset, index=False)
    return ud.model(
        **{
            "name": "scorer",
            "team": "ml",
            "dataset": str(dataset),
            "features": FEATURES,
            "label": "churned",
            **declaration,
        }
    )(train)


def registry(tmp: Path) -> MlflowAliasTarget:
    return MlflowAliasTarget(
        tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}", artifact_root=str(tmp / "artifacts")
    )


# ---- what a platform may say, and what it is refused -----------------------------------------


def test_a_kind_has_one_target_for_every_environment_by_default(tmp_path):
    platform = ud.Platform([scorer(tmp_path)], targets={"model": registry(tmp_path)})
    unit = platform.unit("scorer")
    assert (
        platform.target(unit, "staging")
        is platform.target(unit, "production")
        is platform.targets.resources()["model_target"]
    )
    assert set(platform.resources()) == {"ledger", "model_target"}  # the resource keys of before
    assert platform.role(unit, ModelRegistry) is platform.target(unit, "staging")
    defaults = ud.Platform([scorer(tmp_path)])
    assert set(defaults.resources()) == {
        "ledger",
        "app_target",
        "model_target",
        "data_target",
        "asset_target",
    }


def test_targets_per_environment_and_a_units_own_choice_are_resources_of_their_own(tmp_path):
    staging, production = (
        registry(tmp_path),
        ModelFileTarget(root=str(tmp_path / "served"), registry=registry(tmp_path)),
    )
    shadow = ModelFileTarget(root=str(tmp_path / "shadow"), registry=registry(tmp_path))
    targets = Targets({"model": {"staging": staging, "*": production}}, named={"shadow": shadow})
    units = [
        scorer(tmp_path),
        scorer(
            tmp_path,
            name="challenger",
            targets={"production": "shadow"},
            environments=("staging", "canary", "production"),
        ),
    ]
    platform = ud.Platform(units, targets=targets)
    one, other = platform.unit("scorer"), platform.unit("challenger")
    assert (platform.target(one, "staging"), platform.target(one, "production")) == (
        staging,
        production,
    )
    assert (
        platform.target(other, "canary") is production
    )  # "*": every environment the mapping does not name
    assert platform.target(other, "production") is shadow
    assert set(platform.resources()) == {"ledger", "model_target_staging", "model_target", "shadow"}
    # Each unit's stage assets and gate checks require the keys of its own targets, nothing else.
    defs = platform.definitions()
    candidate = next(a for a in defs.assets if dg.AssetKey(["challenger", "candidate"]) in a.keys)
    own = {"ledger", "model_target_staging", "model_target", "shadow"}
    assert candidate.required_resource_keys - {"io_manager"} == own
    first = next(a for a in defs.assets if dg.AssetKey(["scorer", "candidate"]) in a.keys)
    assert first.required_resource_keys - {"io_manager"} == own - {"shadow"}
    # The registry is the MLflow target wherever the unit deploys.
    assert platform.role(one, ModelRegistry) is platform.role(other, ModelRegistry) is staging


def test_a_yaml_unit_chooses_a_named_target_for_an_environment(tmp_path):
    (tmp_path / "units").mkdir()
    (tmp_path / "units" / "api.yaml").write_text(
        "type: unified_delivery.app\nattributes:\n  name: api\n  team: web\n"
        "  repository: '{home}/repos/api.git'\n"
        "  kubernetes: {image: 'registry.example.com/api:{version}'}\n"
        "  targets: {production: cluster}\n"
    )
    platform = ud.Platform.from_directory(
        tmp_path / "units",
        targets=Targets(
            {"app": LocalReleaseTarget(home=str(tmp_path))}, named={"cluster": KubernetesTarget()}
        ),
    )
    api = platform.unit("api")
    assert isinstance(platform.target(api, "staging"), LocalReleaseTarget)
    assert isinstance(platform.target(api, "production"), KubernetesTarget)
    assert [type(t).__name__ for t in platform.targets.playing(ReleaseStore)] == [
        "LocalReleaseTarget"
    ]


@pytest.mark.parametrize(
    ("why", "targets", "declaration", "code", "words"),
    [
        (
            "an environment of the unit has no target",
            lambda t: {"model": {"staging": registry(t)}},
            {},
            "UD-CONFIG-TARGET",
            ["no deploy target for kind model in environment production", "'*'"],
        ),
        (
            "the unit's field names an environment it does not have",
            lambda t: {"model": registry(t)},
            {"targets": {"prod": "model_target"}},
            "UD-CONFIG-TARGET",
            ["field targets.prod", "staging, production"],
        ),
        (
            "the unit's field names a target the platform does not have",
            lambda t: {"model": registry(t)},
            {"targets": {"production": "clster"}},
            "UD-CONFIG-TARGET",
            ["field targets.production: 'clster'", "known targets: model_target"],
        ),
        (
            "a target that does not deploy models",
            lambda t: {"model": {"staging": registry(t), "production": LocalArtifactTarget()}},
            {},
            "UD-CONFIG-TARGET",
            ["model_target_production (LocalArtifactTarget)", "deploys asset units"],
        ),
        (
            "no environment is a model registry",
            lambda t: {"model": ModelFileTarget(root=str(t), registry=registry(t))},
            {},
            "UD-CONFIG-TARGET-ROLE",
            ["its kind (model) needs a model registry", "MlflowAliasTarget"],
        ),
        (
            "two different registries",
            lambda t: {
                "model": {
                    "staging": registry(t),
                    "production": MlflowAliasTarget(tracking_uri="sqlite:///x"),
                }
            },
            {},
            "UD-CONFIG-TARGET-ROLE",
            [
                "2 different ones",
                "staging: model_target_staging",
                "production: model_target_production",
            ],
        ),
        (
            "not a deploy target at all",
            lambda t: {"model": object()},
            {},
            "UD-CONFIG-TARGET",
            ["object is not a deploy target"],
        ),
    ],
)
def test_a_platform_whose_targets_do_not_fit_its_units_is_refused_at_load(
    tmp_path, why, targets, declaration, code, words
):
    with pytest.raises(ConfigError) as refused:
        ud.Platform([scorer(tmp_path, **declaration)], targets=targets(tmp_path))
    assert refused.value.code == code, why
    assert all(w in refused.value.message + refused.value.remediation for w in words), (
        refused.value.message
    )


def test_a_gate_that_needs_a_warehouse_is_refused_where_the_data_unit_has_none(tmp_path):
    data = ud.DataUnit(
        name="customer_features",
        team="analytics",
        select="+customer_features",
        project=str(Path(__file__).resolve().parents[1] / "dbt_project"),
    )
    with pytest.raises(ConfigError) as refused:
        ud.Platform(
            [data],
            targets={
                "data": {
                    "staging": DbtDuckDBTarget(),
                    "production": DbtDuckDBTarget(warehouse=str(tmp_path / "w")),
                }
            },
        )
    assert (
        refused.value.code == "UD-CONFIG-TARGET-ROLE"
        and "needs one warehouse" in refused.value.message
    )
    with pytest.raises(ConfigError) as gate:
        ud.Platform(
            [data],
            targets={"data": ModelFileTarget(root=str(tmp_path), registry=registry(tmp_path))},
        )
    assert (
        gate.value.code == "UD-CONFIG-TARGET"
    )  # it does not deploy data units: refused before its roles


# ---- a model in MLflow in staging and on a model server in production, through the engine -------


@dataclass
class Story:
    platform: ud.Platform
    staging: MlflowAliasTarget
    production: ModelFileTarget
    outcomes: dict
    served: (
        dict  # what production served after each step: (version, predictions of the served files)
    )
    registered: dict  # the predictions of each registered version, loaded from MLflow
    defs: object = None
    home: Home | None = None


def scores(model_uri: str, probe: pd.DataFrame) -> list[float]:
    import mlflow.sklearn

    return [
        round(float(p), 9) for p in mlflow.sklearn.load_model(model_uri).predict_proba(probe)[:, 1]
    ]


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Iterator[Story]:
    tmp = tmp_path_factory.mktemp("per-env")
    home = Home(tmp / "home")
    probe = rows(20, seed=9)[FEATURES]
    with pytest.MonkeyPatch.context() as mp, mlflow_uris_restored():
        mp.setenv("UD_HOME", str(home.root))
        mp.setenv("DAGSTER_HOME", str(home.dagster_home))
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mp.delenv("UD_TOKEN", raising=False)
        staging = registry(tmp)
        production = ModelFileTarget(root=str(tmp / "served"), registry=staging)
        platform = ud.Platform(
            [scorer(tmp, gates=[ud.gate("model-metric", metric="roc_auc", min=0.7)])],
            targets={"model": {"staging": staging, "production": production}},
            ledger=LedgerResource(url=f"sqlite:///{home.root / 'ledger.db'}"),
            governance=Governance(POLICY),
        )
        defs = platform.definitions()
        unit = platform.unit("scorer")
        s = Story(platform, staging, production, {}, {}, {}, defs, home)

        def step(name: str, run) -> None:
            s.outcomes[name] = run()
            dep = production.status(unit, "production")
            s.served[name] = dep and (dep.version, scores(dep.details["path"], probe))

        try:  # production before anything is in staging: refused before a run exists
            promote(platform, defs, "scorer", "production", home=home)
        except UDError as exc:
            s.outcomes["nothing staged"] = exc
        s.outcomes["recorded before staging"] = len(platform.ledger.ledger().entries(unit="scorer"))
        step("v1 to staging", lambda: promote(platform, defs, "scorer", "staging", home=home))
        step("v1 to production", lambda: promote(platform, defs, "scorer", "production", home=home))
        rows(seed=1).to_csv(
            tmp / "customers.csv", index=False
        )  # new data: the next candidate scores differently
        step("v2 to staging", lambda: promote(platform, defs, "scorer", "staging", home=home))
        step("v2 to production", lambda: promote(platform, defs, "scorer", "production", home=home))
        step(
            "rollback",
            lambda: rollback(
                platform, defs, "scorer", "production", reason="v2 scores drift", home=home
            ),
        )
        staging.activate()
        s.registered = {v: scores(f"models:/scorer/{v}", probe) for v in ("1", "2")}
        s.outcomes["status"] = status(platform)
        yield s


def test_every_step_ran_as_a_dagster_run_and_succeeded(story):
    for name in (
        "v1 to staging",
        "v1 to production",
        "v2 to staging",
        "v2 to production",
        "rollback",
    ):
        outcome = story.outcomes[name]
        assert outcome.error is None and outcome.run_id, (name, outcome.error)


def test_production_before_staging_is_refused_as_nothing_to_promote_without_a_run(story):
    refusal = story.outcomes["nothing staged"]
    assert (refusal.code, refusal.exit_code) == ("UD-PROMOTE-NOTHING", 2)
    assert "ud promote scorer --to staging" in refusal.remediation
    assert story.outcomes["recorded before staging"] == 0  # no run, no refusal: nothing happened


def test_staging_is_the_mlflow_alias_and_production_the_model_server(story):
    from mlflow.exceptions import MlflowException

    unit = story.platform.unit("scorer")
    client = story.staging.client()
    assert str(client.get_model_version_by_alias("scorer", "staging").version) == "2"
    with pytest.raises(MlflowException):  # MLflow does not serve production: no alias there
        client.get_model_version_by_alias("scorer", "production")
    assert story.staging.status(unit, "production") is None
    served = {name: dep and dep[0] for name, dep in story.served.items()}
    assert served == {
        "v1 to staging": None,
        "v1 to production": "1",
        "v2 to staging": "1",
        "v2 to production": "2",
        "rollback": "1",
    }
    # The server serves the very model registered: its files score as MLflow's version does.
    assert story.registered["1"] != story.registered["2"]
    assert (
        story.served["v1 to production"][1] == story.served["rollback"][1] == story.registered["1"]
    )
    assert story.served["v2 to production"][1] == story.registered["2"]
    assert story.production.versions(unit, "production") == ["2", "1"]


def test_the_ledger_and_status_read_each_environment_from_its_own_target(story):
    envs = story.outcomes["status"]["units"][0]["environments"]
    assert (envs["staging"]["version"], envs["production"]["version"]) == ("2", "1")
    ledger = story.platform.ledger.ledger()
    promotions = [
        (e.env, e.version, e.payload["from_version"])
        for e in ledger.entries(unit="scorer", action="promotion")
    ]
    assert promotions == [
        ("staging", "1", None),
        ("production", "1", None),
        ("staging", "2", "1"),
        ("production", "2", "1"),
    ]
    back = ledger.latest(unit="scorer", env="production", action="rollback")
    assert (back.version, back.payload["from_version"], back.payload["reason"]) == (
        "1",
        "2",
        "v2 scores drift",
    )
    candidates = ledger.entries(unit="scorer", action="candidate")
    assert [e.version for e in candidates] == ["1", "2"]  # built once each, registered in MLflow


def test_the_resources_are_one_per_environment(story):
    defs = story.platform.definitions()
    assert {"model_target_staging", "model_target_production", "ledger"} <= set(defs.resources)
    job = defs.resolve_job_def("ud_rollback")
    assert {"model_target_staging", "model_target_production"} <= job.required_resource_keys


# ---- the base class's last line of defence -------------------------------------------------


class MemoryTarget(BaseTarget):
    """Deployments in a dict; a step can be told to fail after its switch, and the restore too."""

    name: str
    fail_after_switch: bool = False
    fail_restore: bool = False

    @property
    def _state(self) -> dict:
        return _MEMORY.setdefault(self.name, {})

    def _deploy(self, unit, env, artifact, current, log) -> Deployment:
        dep = Deployment(
            unit=unit.name,
            env=env,
            version=artifact.version,
            deployed_at=datetime.now(UTC).isoformat(),
            previous_version=current.version if current else None,
        )
        self._state[env] = dep
        if self.fail_after_switch:
            raise OSError("disk full while recording the deploy")
        return dep

    def _rollback(self, unit, env, to_version, current, log) -> Deployment:
        if self.fail_restore:
            raise RuntimeError("the place is unreachable")
        self._state[env] = Deployment(
            unit=unit.name,
            env=env,
            version=to_version or "",
            deployed_at="",
            previous_version=current.version if current else None,
        )
        return self._state[env]

    def status(self, unit, env) -> Deployment | None:
        return self._state.get(env)

    def health(self, unit, env) -> Health:
        return Health(env in self._state, "")


_MEMORY: dict[str, dict] = {}


def test_a_step_that_fails_after_its_switch_is_put_back_and_a_failed_restore_says_so(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("UD_HOME", str(tmp_path))
    unit = ud.AppUnit(name="svc", team="web", repository="/nowhere")
    first = Artifact(unit="svc", kind="app", version="v1")
    target = MemoryTarget(name=str(tmp_path))
    target.deploy(unit, "staging", first)

    flaky = MemoryTarget(name=str(tmp_path), fail_after_switch=True)
    with pytest.raises(TargetError) as put_back:
        flaky.deploy(unit, "staging", Artifact(unit="svc", kind="app", version="v2"))
    assert (
        put_back.value.code == "UD-TARGET-FAILED" and "OSError: disk full" in put_back.value.message
    )
    assert "staging still runs v1" in put_back.value.message
    assert target.status(unit, "staging").version == "v1"

    stuck = MemoryTarget(name=str(tmp_path), fail_after_switch=True, fail_restore=True)
    with pytest.raises(TargetError) as stranded:
        stuck.deploy(unit, "staging", Artifact(unit="svc", kind="app", version="v3"))
    assert stranded.value.code == "UD-TARGET-FAILED"
    assert (
        "switched staging to v3, and putting back v1 failed too: RuntimeError"
        in stranded.value.message
    )
    assert "ud rollback svc --env staging" in stranded.value.remediation
    assert isinstance(stranded.value.__cause__, OSError)

    with pytest.raises(TargetError) as nothing_before:  # a first deploy has nothing to go back to
        flaky.deploy(unit, "production", first)
    assert "cannot take a version away" in nothing_before.value.message


def test_the_model_server_is_a_deploy_target_and_no_model_registry(tmp_path):
    server = ModelFileTarget(root=str(tmp_path), registry=registry(tmp_path))
    assert not isinstance(server, MlflowAliasTarget) and not isinstance(server, ModelRegistry)
    assert isinstance(server, DeployTarget)


# ---- drift: an environment changed outside the platform ------------------------------------


@pytest.fixture(scope="module")
def drifted(story):
    """After the story (staging on 2, production on 1): staging's alias set back to 1 with the
    plain MLflow client, as someone without `ud` would. Then a promotion out of staging, the
    reconcile sensor without self-heal, and the same unit with `self_heal: true`."""
    from unified_delivery.triggers.standard import with_standard_sensors
    from unified_delivery.triggers.tick import tick

    platform, home = story.platform, story.home
    mp = pytest.MonkeyPatch()
    mp.setenv("UD_PROJECT", str(home.root))  # the reconcile sensor checkpoints into no Git repository
    story.staging.client().set_registered_model_alias("scorer", "staging", "1")
    out = {"status": status(platform)}
    out["promotions"] = [promote(platform, story.defs, "scorer", "production", home=home) for _ in range(2)]
    out["production after"] = story.production.status(platform.unit("scorer"), "production").version
    out["tick"] = tick(with_standard_sensors(platform, "service:sensors"), home, ["ud_reconcile"])
    out["drifts"] = platform.ledger.ledger().entries(unit="scorer", action="drift")
    unit = platform.unit("scorer")
    healing = ud.Platform(
        [unit.model_copy(update={"policy": unit.policy.model_copy(update={"self_heal": True})})],
        targets={"model": {"staging": story.staging, "production": story.production}},
        ledger=LedgerResource(url=f"sqlite:///{home.root / 'ledger.db'}"),
        governance=Governance(POLICY),
    )
    out["heal"] = tick(with_standard_sensors(healing, "service:sensors"), home, ["ud_reconcile"])
    out["healed status"] = status(platform)
    out["heal again"] = tick(with_standard_sensors(healing, "service:sensors"), home, ["ud_reconcile"])
    mp.undo()
    return out


def test_status_gives_the_recorded_version_beside_what_runs(drifted):
    staging = drifted["status"]["units"][0]["environments"]["staging"]
    assert (staging["version"], staging["actual_version"], staging["in_sync"]) == ("2", "1", False)
    production = drifted["status"]["units"][0]["environments"]["production"]
    assert (production["version"], production["actual_version"], production["in_sync"]) == ("1", "1", True)


def test_nothing_is_promoted_out_of_an_environment_out_of_sync(drifted):
    for outcome in drifted["promotions"]:
        assert outcome.error is not None and outcome.error.code == "UD-DRIFT", outcome.error
        assert outcome.error.exit_code == 3 and "ud rollback scorer --env staging --to 2" in outcome.error.remediation
    assert drifted["production after"] == "1"  # the version that arrived outside went nowhere


def test_drift_is_recorded_once_per_change_and_the_sensor_reports_it(drifted):
    drifts = drifted["drifts"]
    assert len(drifts) == 1, [d.payload for d in drifts]
    assert drifts[0].env == "staging" and drifts[0].version == "1"
    assert drifts[0].payload["recorded_version"] == "2" and drifts[0].payload["noticed_by"]
    (sensor,) = drifted["tick"]["sensors"]
    assert sensor["requested"] == []  # no self_heal: noticed, nothing changed


def test_self_heal_puts_the_recorded_version_back_through_a_rollback(drifted):
    (sensor,) = drifted["heal"]["sensors"]
    assert [r["outcome"] for r in sensor["requested"]] == ["success"], sensor
    staging = drifted["healed status"]["units"][0]["environments"]["staging"]
    assert (staging["version"], staging["actual_version"], staging["in_sync"]) == ("2", "2", True)
    (again,) = drifted["heal again"]["sensors"]
    assert again["requested"] == []  # in sync: nothing more to do
