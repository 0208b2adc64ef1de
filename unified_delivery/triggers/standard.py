"""The standard set of sensors a platform runs: Git pushes to the app repositories, new
versions in the MLflow registry, retraining on new data, automatic promotion and health
rollback, reconciling desired and actual state, and notifications, each only where the platform
has units (or routes) it applies to."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import dagster as dg

from ..promotions import job_name
from ..targets.roles import ModelRegistry
from ..translator import PREVIEW_JOB, PREVIEW_TEARDOWN_JOB
from ..units import Unit
from .cascade import cascade_sensor
from .git import app_watches, git_sensor
from .health import health_sensor
from .notify import notify_sensor
from .promotion import promotion_sensor
from .reconcile import reconcile_sensor
from .registry import ledger_knows, model_watches, registry_sensor, undeclared_models

if TYPE_CHECKING:
    from ..platform import Platform

# `ud sensors tick` evaluates them in this order: new changes first, then what follows from them.
ORDER = [
    "ud_git_push",
    "ud_mlflow_registry",
    "ud_cascade",
    "ud_reconcile",
    "ud_promotion",
    "ud_health",
    "ud_notify",  # last: it tells what the others did
]


def standard_sensors(
    platform: Platform, base: dg.Definitions, principal: str
) -> list[dg.SensorDefinition]:
    """`principal` is who the sensors' runs act as: the policy must grant it deploy where they
    promote. The sensors target the very job objects of `base` (Dagster refuses two jobs of one
    name)."""
    jobs = {j.name: j for j in base.jobs or []}

    def env_jobs(envs: Iterable[str]) -> list:
        """The promotion jobs of these environments, once each (a job serves every unit)."""
        return [jobs[name] for name in dict.fromkeys(job_name(env) for env in envs)]

    def first_env_jobs(wanted: Callable[[Unit], object]) -> list:
        return env_jobs(u.environments[0] for u in platform.units.values() if wanted(u))

    later_env_jobs = env_jobs(e for u in platform.units.values() for e in u.environments[1:])
    sensors = [
        health_sensor(platform, [jobs["ud_rollback"]], principal=principal),
        reconcile_sensor(platform, [jobs["ud_rollback"]], principal=principal),
    ]
    if later_env_jobs:
        sensors.append(promotion_sensor(platform, later_env_jobs, principal=principal))
    from_git = first_env_jobs(lambda u: u.git_source())
    if from_git and PREVIEW_JOB in jobs:
        from_git += [jobs[PREVIEW_JOB], jobs[PREVIEW_TEARDOWN_JOB]]
    if from_git:
        sensors.append(
            git_sensor("ud_git_push", lambda: app_watches(platform), from_git, principal=principal)
        )
    registered = first_env_jobs(lambda u: u.registered_model_name())
    if registered:
        # One registry client for the sensor: the registry of the first such unit (each unit has
        # one, wherever it deploys; a platform whose model units use several watches the first's).
        first_model = next(u for u in platform.units.values() if u.registered_model_name())
        registry = platform.role(first_model, ModelRegistry)
        sensors += [
            registry_sensor(
                "ud_mlflow_registry",
                lambda: model_watches(platform),
                registry.client,
                registered,
                known=ledger_knows(platform),
                undeclared=undeclared_models(platform, principal),
                principal=principal,
            ),
            cascade_sensor(platform, registered, principal=principal),
        ]
    if platform.notifications.file.routes:
        sensors.append(notify_sensor(platform))
    return sorted(sensors, key=lambda s: ORDER.index(s.name))


def with_standard_sensors(platform: Platform, principal: str) -> dg.Definitions:
    """The platform's Definitions with the standard sensors: what a platform's entry point
    exports."""
    base = platform.definitions()
    return dg.Definitions.merge(
        base, dg.Definitions(sensors=standard_sensors(platform, base, principal))
    )
