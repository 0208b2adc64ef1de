"""The platform's Definitions entry point: its units, with the targets of `resources/`."""

from pathlib import Path

import dagster as dg
from resources import platform_resources
from sensors import platform_sensors
from unified_delivery import Platform

from .churn_model import churn_model

platform = Platform.from_directory(Path(__file__).parent / "units", [churn_model], **platform_resources())
_base = platform.definitions()
defs = dg.Definitions.merge(_base, dg.Definitions(sensors=platform_sensors(platform, _base)))
