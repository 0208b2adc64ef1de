"""A platform: its units, targets and ledger, validated as a whole, and its Definitions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg

from . import dbt, soak
from .cost import CostModel
from .errors import ConfigError
from .gates import Gate, build_gate
from .governance import Governance
from .kinds.asset.wrap import WrappedAsset
from .kinds.base import KindTranslator
from .kinds.data.meta_units import units_from_dbt_meta
from .kinds.kind import Kind
from .kinds.model.decorator import ModelDefinition
from .kinds.registry import kinds
from .ledger import LedgerResource
from .loader import load_yaml_units
from .notifications.config import Notifications
from .targets.registry import ImageRegistry
from .targets.roles import DeployTarget
from .targets.routing import KindTargets, Targets
from .units import GateSpec, Unit

R = TypeVar("R")


def default_targets() -> dict[str, DeployTarget]:
    """Each known kind's default target (kinds/<kind>/__init__.py), by kind."""
    return {name: kind.default_target() for name, kind in kinds().items()}


def declared_unit(item: Unit | ModelDefinition | WrappedAsset) -> Unit:
    """The Unit of a declaration: a Unit itself, or the one a @model or wrap_asset carries."""
    return item.unit if isinstance(item, (ModelDefinition, WrappedAsset)) else item


class Platform:
    def __init__(
        self,
        units: Iterable[Unit | ModelDefinition | WrappedAsset],
        *,
        targets: Targets | Mapping[str, KindTargets] | None = None,
        ledger: LedgerResource | None = None,
        governance: Governance | None = None,
        costs: CostModel | None = None,
        notifications: Notifications | None = None,
        registry: ImageRegistry | None = None,
    ):
        # The Python a unit's build runs: a @model (callable: it trains) or a wrapped asset (its
        # build and its check gates run the asset as written). A bare Unit has none.
        self.trainers: dict[str, ModelDefinition | WrappedAsset] = {}
        self.units: dict[str, Unit] = {}
        self.declarations = list(
            units
        )  # as given, so a variant of this platform can be built (api.promote)
        self.kinds: dict[str, Kind] = kinds()  # as registered when the platform is made
        for item in self.declarations:
            unit = declared_unit(item)
            if isinstance(item, (ModelDefinition, WrappedAsset)):
                self.trainers[unit.name] = item
            if unit.name in self.units:
                raise ConfigError(
                    "UD-CONFIG-UNIT",
                    f"unit {unit.name}: declared twice",
                    "give each unit a unique name",
                )
            if unit.kind not in self.kinds:
                raise ConfigError(
                    "UD-CONFIG-KIND",
                    f"unit {unit.name}: kind {unit.kind!r} is not registered",
                    f"known kinds: {', '.join(self.kinds)}; register the kind "
                    "(unified_delivery.kinds.register) before the platform is made",
                )
            self.units[unit.name] = unit
        # Per kind, one target for every environment or one per environment (targets/routing.py).
        self.targets = Targets.of(targets or default_targets())
        self.ledger = ledger or LedgerResource()
        self.governance = governance or Governance.default()
        self.costs = costs
        self.notifications = notifications or Notifications()
        # Where app images are pushed (targets/registry.py); by default the home's own.
        self.registry = registry or ImageRegistry()
        with dbt.one_check_per_load():
            self._validate()
            self.gates: dict[str, list[Gate]] = {
                n: [
                    build_gate(s, u, costs_missing=self.costs is None)
                    for s in [*u.gates, *self._governance_gates(u)]
                ]
                for n, u in self.units.items()
            }
        for name, gates in self.gates.items():
            unit = self.units[name]
            needs = [(role, f"its kind ({unit.kind})") for role in self.translator(unit).needs]
            needs += [(role, f"gate {g.name}") for g in gates for role in g.needs]
            self.targets.require(unit, needs)
            names = [(g.spec.stage, g.name) for g in gates]
            dupes = {n for _, n in names if names.count((_, n)) > 1}
            if dupes:
                raise ConfigError(
                    "UD-CONFIG-GATE",
                    f"unit {name}: gate names {sorted(dupes)} are used twice",
                    "give each gate a distinct `name`",
                )

    def _governance_gates(self, unit: Unit) -> list[GateSpec]:
        """Policy on every promotion; freeze and approval where the policy file or the unit asks."""
        specs = []
        declared = {(g.stage, g.type) for g in unit.gates}
        frozen = {f.env for f in self.governance.policy.freezes}
        for env in unit.environments:
            stage = unit.previous_stage(env)
            wanted = ["policy"]
            if env in frozen or "*" in frozen:
                wanted.append("freeze")
            if unit.policy.approvals.get(env, 0) > 0:
                wanted.append("approval")
            specs += [GateSpec(type=t, stage=stage) for t in wanted if (stage, t) not in declared]
        return specs

    @classmethod
    def from_directory(
        cls,
        directory: Path,
        python_units: Iterable[Unit | ModelDefinition | WrappedAsset] = (),
        dbt_projects: Iterable[Path] = (),
        **kwargs: Any,
    ) -> "Platform":
        """YAML units of `directory`, the Python units given, and a data unit for every model of
        `dbt_projects` that declares itself in its dbt `meta` (see kinds/data/meta.py)."""
        with dbt.one_check_per_load():
            units = [*load_yaml_units(directory), *python_units]
            declared = {declared_unit(u).name for u in units}
            for project in dbt_projects:
                found = units_from_dbt_meta(project, declared)
                declared |= {u.name for u in found}
                units += found
            return cls(units, **kwargs)

    def kind(self, unit: Unit) -> Kind:
        return self.kinds[unit.kind]

    def translator(self, unit: Unit) -> KindTranslator:
        return self.kinds[unit.kind].translator

    def target(self, unit: Unit, env: str) -> DeployTarget:
        """The target `unit` deploys through in `env`: the unit's own choice for it (its `targets:`
        field), else the platform's for the unit's kind in `env`."""
        return self.targets.target(unit, env)

    def role(self, unit: Unit, role: type[R]) -> R:
        """The unit's target in `role` (targets/roles.py), wherever it deploys: its model registry,
        its warehouse. Checked when the platform loads."""
        return self.targets.role(unit, role)

    def unit(self, name: str) -> Unit:
        from .errors import UDError

        if name not in self.units:
            raise UDError(
                "UD-UNKNOWN-UNIT",
                f"no unit named {name!r}",
                f"known units: {', '.join(self.units)}",
            )
        return self.units[name]

    def environments(self) -> list[str]:
        """Every environment some unit deploys to, in first-seen order."""
        return list(dict.fromkeys(env for u in self.units.values() for env in u.environments))

    def _validate_environment_names(self) -> None:
        """An environment named in a policy that no unit has is a typo that would switch a control
        off without a word (`approvals: {prod: 1}`, a freeze on `prodution`): refused."""
        envs = set(self.environments())

        def refuse(where: str, name: str, source: str) -> None:
            raise ConfigError(
                "UD-CONFIG-UNKNOWN-ENV",
                f"{source}: {where} names environment {name!r}, which no unit has",
                f"use one of: {', '.join(self.environments())}"
                + ("" if "quotas" in where else ", or * for every environment"),
            )

        for unit in self.units.values():
            for env in unit.policy.approvals:
                if env not in unit.environments:
                    raise ConfigError(
                        "UD-CONFIG-UNKNOWN-ENV",
                        f"unit {unit.name}: field policy.approvals names environment "
                        f"{env!r}, which the unit does not have",
                        f"use one of: {', '.join(unit.environments)}",
                    )
        if not self.units or self.governance.source == Governance.default().source:
            return  # the built-in policy is written for any platform
        policy, source = self.governance.policy, self.governance.source
        for name, p in policy.principals.items():
            for env in p.roles:
                if env != "*" and env not in envs:
                    refuse(f"principals.{name}.roles", env, source)
            for env in p.quotas.promotions_per_day:
                if env not in envs:
                    refuse(f"principals.{name}.quotas.promotions_per_day", env, source)
        for i, freeze in enumerate(policy.freezes):
            if freeze.env != "*" and freeze.env not in envs:
                refuse(f"freezes.{i}.env", freeze.env, source)

    def _validate(self) -> None:
        self._validate_environment_names()
        for unit in self.units.values():
            for dep, where in self.translator(unit).upstream_fields(unit).items():
                if dep not in self.units:
                    raise ConfigError(
                        "UD-CONFIG-UNIT",
                        f"unit {unit.name}: field {where}: {dep!r} is not a unit of this platform",
                        f"known units: {', '.join(self.units)}",
                    )
            soak.check(unit)  # before the translator's checks, which may read files
            self.translator(unit).validate(unit, self.units)
            self.targets.require(unit)  # a target per environment; roles once the gates are built
        if self.costs is not None:
            self._validate_costs(self.costs)
        cycle = self._cycle()
        if cycle:
            raise ConfigError(
                "UD-CONFIG-CYCLE",
                f"units depend on each other in a cycle: {' -> '.join(cycle)}",
                "remove one of these dependencies",
            )

    def _validate_costs(self, costs: CostModel) -> None:
        prices = costs.prices
        for unit in self.units.values():
            b = unit.budget
            if b.currency != prices.currency:
                raise ConfigError(
                    "UD-CONFIG-COST",
                    f"unit {unit.name}: field budget.currency: {b.currency} is not the price "
                    f"table's currency {prices.currency}",
                    f"state the budget in {prices.currency}",
                )
            if b.serving and b.serving.size not in prices.replica_hour:
                raise ConfigError(
                    "UD-CONFIG-COST",
                    f"unit {unit.name}: field budget.serving.size: {b.serving.size!r} has no "
                    "price in the price table",
                    f"use one of: {', '.join(prices.replica_hour) or 'none'}"
                    f", or add it to {costs.source}",
                )
        for team, budget in costs.file.teams.items():
            if budget.currency != prices.currency:
                raise ConfigError(
                    "UD-CONFIG-COST",
                    f"team {team}: budget currency {budget.currency} is not {prices.currency}",
                    f"state team budgets in {prices.currency}",
                )

    def _cycle(self) -> list[str] | None:
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(n: str) -> list[str] | None:
            state[n] = 1
            stack.append(n)
            for d in self.translator(self.units[n]).upstream_units(self.units[n]):
                if state.get(d) == 1:
                    return stack[stack.index(d) :] + [d]
                if d not in state and (found := visit(d)):
                    return found
            stack.pop()
            state[n] = 2
            return None

        for name in self.units:
            if name not in state and (found := visit(name)):
                return found
        return None

    def order(self) -> list[str]:
        """Units in dependency order (upstream first)."""
        done: list[str] = []

        def visit(n: str) -> None:
            if n in done:
                return
            for d in self.translator(self.units[n]).upstream_units(self.units[n]):
                visit(d)
            done.append(n)

        for name in self.units:
            visit(name)
        return done

    def consumers(self, name: str) -> list[str]:
        return [u.name for u in self.units.values() if name in self.translator(u).upstream_units(u)]

    def resources(self) -> dict[str, Any]:
        return {"ledger": self.ledger, **self.targets.resources()}

    def definitions(self, extra: dg.Definitions | None = None) -> dg.Definitions:
        from .translator import platform_defs

        defs = platform_defs(self)
        return dg.Definitions.merge(defs, extra) if extra else defs
