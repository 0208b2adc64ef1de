"""The platform's Definitions: the YAML units of units/, the Python units of this folder
(`@ud.model` functions, wrapped Dagster assets) and the data units declared in the dbt
project's `meta`, with the targets, ledger, policy and prices of resources/ and the sensors
of sensors/. `ud new` adds units; nothing here needs editing for that."""

from pathlib import Path

import dagster as dg

from resources import platform_resources
from sensors import platform_sensors
from unified_delivery import Platform
from unified_delivery.discovery import python_units

HERE = Path(__file__).parent

platform = Platform.from_directory(HERE / "units", python_units(HERE, "assets"),
                                   dbt_projects=[HERE.parent / "dbt_project"], **platform_resources())
# One Definitions object at module scope: `dg` and `dagster` refuse a module with two.
defs = platform.definitions()
defs = dg.Definitions.merge(defs, dg.Definitions(sensors=platform_sensors(platform, defs)))
