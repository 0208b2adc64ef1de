"""This platform's sensors, built with the framework's factories: Git pushes to the app
repositories, new versions in the MLflow registry, automatic promotion, health rollback and
retraining on new data. `ud ui` runs them in Dagster's daemon; `ud sensors tick` runs them once."""

from typing import Any

import dagster as dg

from unified_delivery.triggers.cascade import cascade_sensor
from unified_delivery.triggers.git import app_watches, git_sensor
from unified_delivery.triggers.health import health_sensor
from unified_delivery.triggers.promotion import promotion_sensor
from unified_delivery.triggers.registry import ledger_knows, model_watches, registry_sensor


# The principal resources/policy.yaml grants deploy in staging and production; the sensor's
# name is in each run's `ud/trigger` tag and recorded reason.
PRINCIPAL = "service:sensors"


def platform_sensors(platform: Any, base: dg.Definitions) -> list[dg.SensorDefinition]:
    """The sensors must target the very job objects of `base` (Dagster refuses two jobs of one name)."""
    jobs = {j.name: j for j in base.jobs or []}

    def first_env_jobs(kind: str) -> list:
        return [jobs[f"{u.name}__to_{u.environments[0]}"] for u in platform.units.values() if u.kind == kind]

    later_env_jobs = [jobs[f"{u.name}__to_{env}"] for u in platform.units.values() for env in u.environments[1:]]
    sensors = [health_sensor(platform, [jobs["ud_rollback"]], principal=PRINCIPAL)]
    if later_env_jobs:
        sensors.append(promotion_sensor(platform, later_env_jobs, principal=PRINCIPAL))
    if first_env_jobs("app"):
        sensors.append(git_sensor("ud_git_push", lambda: app_watches(platform), first_env_jobs("app"), principal=PRINCIPAL))
    if first_env_jobs("model"):
        sensors += [
            registry_sensor("ud_mlflow_registry", lambda: model_watches(platform), lambda: platform.targets["model"].client(),
                            first_env_jobs("model"), known=ledger_knows(platform), principal=PRINCIPAL),
            cascade_sensor(platform, first_env_jobs("model"), principal=PRINCIPAL),
        ]
    # `ud sensors tick` evaluates them in this order: new changes first, then what follows from them.
    order = ["ud_git_push", "ud_mlflow_registry", "ud_cascade", "ud_promotion", "ud_health"]
    return sorted(sensors, key=lambda s: order.index(s.name))
