"""A translator per kind: how a unit of that kind validates, depends and builds.

The shared stage assets, gates and promotion live in `translator.py`; a kind only says
what is particular to it, one small overridable method per concern (as dagster-dbt's
DagsterDbtTranslator does for dbt nodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from ..errors import ConfigError
from ..home import Home
from ..targets.base import Artifact
from ..targets.roles import DeployTarget
from ..targets.routing import Targets
from ..units import Unit


@dataclass
class BuildContext:
    home: Home
    target: DeployTarget  # the unit's target in its first environment
    targets: Targets  # the platform's: the unit's roles (registry, warehouse), other units' targets
    units: dict[str, Unit]
    config: dict[str, Any] = field(default_factory=dict)
    trainer: Callable[[Any], Any] | None = None  # model units: the decorated training function
    log: Callable[[str], None] = print
    principal: str = ""  # who the build runs for (recorded as a model version's registrant)


class KindTranslator:
    kind: str = ""
    unit_class: type[Unit] = Unit
    needs: ClassVar[tuple[type, ...]] = ()  # roles (targets/roles.py) one of its targets must play

    def refuse(self, unit: Unit, fieldname: str, problem: str, remediation: str = "") -> None:
        raise ConfigError("UD-CONFIG-UNIT", f"unit {unit.name}: field {fieldname}: {problem}",
                          remediation or f"fix `{fieldname}` in the declaration of {unit.name}")

    def validate(self, unit: Unit, units: dict[str, Unit]) -> None:
        """Refuse at load time what can be known wrong then."""

    def upstream_units(self, unit: Unit) -> list[str]:
        """Units this one depends on (for cycle detection and the graph)."""
        extra = [getattr(unit, a) for a in ("serves", "trains_on") if getattr(unit, a, None)]
        return list(dict.fromkeys([*unit.depends_on, *extra]))

    def candidate_deps(self, unit: Unit, units: dict[str, Unit]) -> list[tuple[str, str]]:
        """(unit, stage) pairs the candidate is built from: by default the production
        version of every dependency that is not served per environment."""
        served = {u for (u, _) in self.env_deps(unit, unit.environments[0], units)}
        return [(d, units[d].environments[-1]) for d in self.upstream_units(unit) if d not in served]

    def env_deps(self, unit: Unit, env: str, units: dict[str, Unit]) -> list[tuple[str, str]]:
        """(unit, stage) pairs an environment's deploy depends on, besides the previous stage."""
        return []

    def build_candidate(self, unit: Unit, ctx: BuildContext) -> Artifact:
        raise NotImplementedError
