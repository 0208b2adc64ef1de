"""This platform's sensors: the framework's standard set (Git push, MLflow registry,
retraining on new data, automatic promotion, health rollback). `ud ui` runs them in
Dagster's daemon; `ud sensors tick` runs them once."""

from typing import Any

import dagster as dg

from unified_delivery.triggers.standard import standard_sensors

# The principal resources/policy.yaml grants deploy in staging and production; the sensor's
# name is in each run's `ud/trigger` tag and recorded reason.
PRINCIPAL = "service:sensors"


def platform_sensors(platform: Any, base: dg.Definitions) -> list[dg.SensorDefinition]:
    return standard_sensors(platform, base, PRINCIPAL)
