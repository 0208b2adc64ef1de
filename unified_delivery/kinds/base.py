"""A translator per kind: how a unit of that kind is declared, validates, depends and builds.

The shared stage assets and gate checks live in `translator.py`, what runs inside them in
`engine/`; a kind only says what is particular to it, one small overridable method per
concern (as dagster-dbt's DagsterDbtTranslator does for dbt nodes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError

from ..errors import ConfigError, UDError
from ..home import Home
from ..targets.base import Artifact
from ..targets.registry import ImageRegistry
from ..targets.roles import DeployTarget
from ..targets.routing import Targets
from ..units import Unit, field_error

if TYPE_CHECKING:
    from .asset.wrap import WrappedAsset
    from .model.decorator import ModelDefinition


def default_name(source: str) -> str:
    """`recommendation_api.yaml` and `recommendation_api/defs.yaml` both declare
    recommendation_api."""
    path = Path(source)
    return path.parent.name if path.stem == "defs" and path.parent.name else path.stem


@dataclass
class BuildContext:
    home: Home
    target: DeployTarget  # the unit's target in its first environment
    targets: Targets  # the platform's: the unit's roles (registry, warehouse), other units' targets
    units: dict[str, Unit]
    config: dict[str, Any] = field(default_factory=dict)
    # The unit's Python, when it has one: a @model (it trains) or a wrapped asset (it builds).
    trainer: ModelDefinition | WrappedAsset | None = None
    log: Callable[[str], None] = print
    principal: str = ""  # who the build runs for (recorded as a model version's registrant)
    run_id: str = ""  # the Dagster run that builds it (tagged on a training run in MLflow)
    registry: ImageRegistry = field(default_factory=ImageRegistry)  # where app images go


class KindTranslator:
    unit_class: type[Unit] = Unit  # the kind's unit model; its `kind` names the kind
    needs: ClassVar[tuple[type, ...]] = ()  # roles (targets/roles.py) one of its targets must play

    @property
    def kind(self) -> str:
        return self.unit_class.kind

    def refuse(self, unit: Unit, fieldname: str, problem: str, remediation: str = "") -> None:
        raise ConfigError(
            "UD-CONFIG-UNIT",
            f"unit {unit.name}: field {fieldname}: {problem}",
            remediation or f"fix `{fieldname}` in the declaration of {unit.name}",
        )

    def prepare_attributes(self, attributes: dict[str, Any], base_dir: Path) -> dict[str, Any]:
        """A declaration's attributes (YAML, dbt meta) before validation: paths relative to
        `base_dir`, the folder of the file that says them, and defaults found elsewhere."""
        return attributes

    def unit_from_attributes(self, attributes: dict[str, Any], source: str, base_dir: Path) -> Unit:
        """The unit a declaration's attributes make (named after `source` unless they name it)."""
        name = attributes.get("name", default_name(source))
        attributes = {"name": name, **attributes}
        try:
            attributes = self.prepare_attributes(attributes, base_dir)
        except UDError as exc:
            message = exc.message if name in exc.message else f"unit {name}: {exc.message}"
            raise ConfigError(exc.code, message, exc.remediation) from None
        try:
            return self.unit_class(**attributes)
        except ValidationError as exc:
            raise field_error(exc, name, source, self.unit_class) from None

    def validate(self, unit: Unit, units: dict[str, Unit]) -> None:
        """Refuse at load time what can be known wrong then."""

    def check_ref(self, unit: Unit, ref: str) -> None:
        """Refuse a candidate's `--ref` before any run exists, when it can be known wrong then."""

    def upstream_fields(self, unit: Unit) -> dict[str, str]:
        """Units this one depends on, each with the field that names it (for errors)."""
        return dict.fromkeys(unit.depends_on, "depends_on")

    def upstream_units(self, unit: Unit) -> list[str]:
        """Units this one depends on (for cycle detection and the graph)."""
        return list(self.upstream_fields(unit))

    def candidate_deps(self, unit: Unit, units: dict[str, Unit]) -> list[tuple[str, str]]:
        """(unit, stage) pairs the candidate is built from: by default the production
        version of every dependency that is not served per environment."""
        served = {u for (u, _) in self.env_deps(unit, unit.environments[0], units)}
        return [
            (d, units[d].environments[-1]) for d in self.upstream_units(unit) if d not in served
        ]

    def env_deps(self, unit: Unit, env: str, units: dict[str, Unit]) -> list[tuple[str, str]]:
        """(unit, stage) pairs an environment's deploy depends on, besides the previous stage."""
        return []

    def build_candidate(self, unit: Unit, ctx: BuildContext) -> Artifact:
        raise NotImplementedError
