"""Where the home keeps things: what `ud info` prints, from the platform's catalog (catalog.py)
where it can say, else from the loaded platform."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .loading import read_catalog

if TYPE_CHECKING:
    from ..catalog import Catalog


def home_info() -> dict[str, Any]:
    """The home, Dagster's instance, the MLflow tracking URI, the warehouse, the ledger's URL and
    each app unit's repository with its working copy."""
    catalog = read_catalog()
    home = catalog.home
    registry, warehouse = catalog.data.get("registry"), catalog.data.get("warehouse")
    if catalog.platform is not None or "unknown" in (registry, warehouse):
        tracking_uri, location = _from_platform(catalog)
    else:
        from ..targets.probes import duckdb_path

        tracking_uri = registry and (registry["tracking_uri"] or home.mlflow_tracking_uri)
        location = warehouse and str(duckdb_path(warehouse["warehouse"]))
    return {
        "home": str(home.root),
        "dagster_home": str(home.dagster_home),
        "mlflow_tracking_uri": tracking_uri,
        "warehouse": location,
        "ledger_url": catalog.ledger().url,
        "repos": {
            u["name"]: {
                "remote": home.expand(u["repository"]),
                "workdir": str(home.repos / u["name"]),
            }
            for u in catalog.units
            if "repository" in u
        },
    }


def _from_platform(catalog: Catalog) -> tuple[str | None, str | None]:
    from ..targets.roles import ModelRegistry, Warehouse

    platform = catalog.loaded()
    registries = platform.targets.playing(ModelRegistry)
    warehouses = platform.targets.playing(Warehouse)
    return (
        registries[0].resolved_uri() if registries else None,
        warehouses[0].location() if warehouses else None,
    )
