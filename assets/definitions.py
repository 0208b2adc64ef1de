"""The platform's Definitions entry point: its units, with the targets of `resources/`."""

from pathlib import Path

import dagster as dg
from resources import platform_resources
from sensors import platform_sensors
from unified_delivery import Platform

from .churn_model import churn_model

platform = Platform.from_directory(Path(__file__).parent / "units", [churn_model], **platform_resources())
# One Definitions object at module scope: tools that load the module by name alone (`dg`,
# `[tool.dagster]`) refuse a module with two.
defs = platform.definitions()
defs = dg.Definitions.merge(defs, dg.Definitions(sensors=platform_sensors(platform, defs)))
