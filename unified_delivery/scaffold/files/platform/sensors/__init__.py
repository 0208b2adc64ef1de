"""This platform's sensors: the framework's standard set (Git push, MLflow registry,
retraining on new data, automatic promotion, health rollback). `make ui` runs them in
Dagster's daemon; `ud sensors tick` runs them once."""

from typing import Any

import dagster as dg

from unified_delivery.triggers.standard import standard_sensors

# resources/policy.yaml grants this principal deploy in staging and production.
PRINCIPAL = "service:sensors"


def platform_sensors(platform: Any, base: dg.Definitions) -> list[dg.SensorDefinition]:
    return standard_sensors(platform, base, PRINCIPAL)
