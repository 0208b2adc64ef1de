"""Which target a unit deploys through in each environment, and which plays a role for it.

A platform names its targets per kind, one for every environment or one per environment
(`"*"`: every environment not named):

    Platform(units, targets={
        "app": LocalReleaseTarget(),
        "model": {"staging": MlflowAliasTarget(), "production": ModelServerTarget()},
        "data": DbtDuckDBTarget(),
    })

`Targets(by_kind, named={"k8s": KubernetesTarget()})` adds targets no kind uses by default,
which a unit may choose for an environment with its `targets:` field (`{production: k8s}`).
Every target is a Dagster resource under its key: `<kind>_target` for a kind's target in every
environment (or its `"*"`), `<kind>_target_<env>` for one environment's, the name of a named
one. A unit's field may name any of these keys.

A unit's model registry (or warehouse, or release store) is the one target among those of its
environments that plays the role (roles.py), wherever the version is deployed: with MLflow in
staging and a model server in production, the candidate is registered in MLflow, and the model
server deploys that registered version. Two different targets in one role for one unit are
refused at load: a version registered in one registry, or written in one warehouse, does not
exist in the other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, TypeVar

from ..errors import ConfigError
from .roles import DeployTarget, ModelRegistry, ReleaseStore, Warehouse, role_name

if TYPE_CHECKING:
    from ..units import Unit

ANY_ENV = "*"
_KEY = re.compile(r"^[A-Za-z0-9_]+$")  # a Dagster resource key
_EXAMPLES = {
    ModelRegistry: "MlflowAliasTarget",
    Warehouse: "DbtDuckDBTarget or DbtPostgresTarget",
    ReleaseStore: "LocalReleaseTarget",
}

R = TypeVar("R")
KindTargets = (
    DeployTarget | Mapping[str, DeployTarget]
)  # one for every environment, or by environment


class Targets:
    """The platform's deploy targets, by kind and environment, and by name."""

    def __init__(
        self, by_kind: Mapping[str, KindTargets], named: Mapping[str, DeployTarget] | None = None
    ):
        self._by_kind: dict[str, dict[str, DeployTarget]] = {}
        self._keys: dict[str, DeployTarget] = {}
        for kind, given in by_kind.items():
            per_env = dict(given) if isinstance(given, Mapping) else {ANY_ENV: given}
            if not per_env:
                raise ConfigError(
                    "UD-CONFIG-TARGET",
                    f"targets[{kind!r}] names no target",
                    "give a target, or a mapping of environments to targets",
                )
            for env, target in per_env.items():
                self._add(_kind_key(kind, env), target, f"targets[{kind!r}][{env!r}]")
            self._by_kind[kind] = per_env
        for name, target in (named or {}).items():
            self._add(name, target, f"named target {name!r}")

    @classmethod
    def of(cls, value: Targets | Mapping[str, KindTargets]) -> Targets:
        return value if isinstance(value, Targets) else cls(value)

    def _add(self, key: str, target: DeployTarget, where: str) -> None:
        if not _KEY.match(key):
            raise ConfigError(
                "UD-CONFIG-TARGET",
                f"{where}: {key!r} cannot be a Dagster resource key",
                "name environments and targets with letters, digits and _",
            )
        if key in self._keys:
            raise ConfigError(
                "UD-CONFIG-TARGET",
                f"{where}: the resource key {key!r} is taken",
                "rename the target",
            )
        if not isinstance(target, DeployTarget):
            raise ConfigError(
                "UD-CONFIG-TARGET",
                f"{where}: {type(target).__name__} is not a deploy target "
                "(deploy, rollback, status, health, versions)",
                "give an instance of a subclass of unified_delivery.targets.base.BaseTarget",
            )
        self._keys[key] = target

    # ---- lookups ---------------------------------------------------------------------

    def resources(self) -> dict[str, DeployTarget]:
        """Every target under its Dagster resource key."""
        return dict(self._keys)

    def kinds(self) -> list[str]:
        return list(self._by_kind)

    def key(self, unit: Unit, env: str) -> str:
        """The resource key of the target `unit` deploys through in `env`."""
        chosen = unit.targets.get(env)
        if chosen is not None:
            if chosen not in self._keys:
                raise ConfigError(
                    "UD-CONFIG-TARGET",
                    f"unit {unit.name}: field targets.{env}: {chosen!r} is not a "
                    "target of this platform",
                    f"known targets: {', '.join(sorted(self._keys))}",
                )
            return chosen
        per_env = self._by_kind.get(unit.kind)
        if per_env is None:
            raise ConfigError(
                "UD-CONFIG-TARGET",
                f"unit {unit.name}: no deploy target for kind {unit.kind}",
                "add one to the platform's resources",
            )
        if env in per_env and env != ANY_ENV:
            return _kind_key(unit.kind, env)
        if ANY_ENV in per_env:
            return _kind_key(unit.kind, ANY_ENV)
        raise ConfigError(
            "UD-CONFIG-TARGET",
            f"unit {unit.name}: no deploy target for kind {unit.kind} in "
            f"environment {env} (the platform names one for {', '.join(per_env)})",
            f"add {env!r} (or '*') to the platform's targets for {unit.kind}, or name one in the "
            f"unit's field targets.{env}",
        )

    def target(self, unit: Unit, env: str) -> DeployTarget:
        """The target `unit` deploys through in `env`."""
        return self._keys[self.key(unit, env)]

    def keys_for(self, unit: Unit) -> set[str]:
        """The resource keys of the targets of every environment of `unit`."""
        return {self.key(unit, env) for env in unit.environments}

    def playing(self, role: type[R]) -> list[R]:
        """Every target of the platform in `role`, each once."""
        return _distinct(t for t in self._keys.values() if isinstance(t, role))

    def find(self, unit: Unit, role: type[R]) -> list[R]:
        """The targets of `unit`'s environments in `role`, each once, in environment order."""
        return _distinct(
            t for env in unit.environments if isinstance(t := self.target(unit, env), role)
        )

    def role(self, unit: Unit, role: type[R]) -> R:
        """The unit's one target in `role` (checked at load by `require`)."""
        found = self.find(unit, role)
        if not found:
            raise self._missing(unit, role, f"kind {unit.kind}")
        return found[0]

    # ---- load-time checks ------------------------------------------------------------

    def require(self, unit: Unit, needs: Iterable[tuple[type, str]] = ()) -> None:
        """Refuse at load what would fail later: a `targets:` field naming an environment the unit
        does not have or a target the platform does not, an environment without a target, a target
        that does not deploy the unit's kind, and a role some part of the unit needs (`needs`:
        the role and who needs it) that none, or two different ones, of its targets play."""
        for env in unit.targets:
            if env not in unit.environments:
                raise ConfigError(
                    "UD-CONFIG-TARGET",
                    f"unit {unit.name}: field targets.{env}: {env!r} is not one of "
                    "its environments",
                    f"use one of: {', '.join(unit.environments)}",
                )
        for env in unit.environments:
            target = self.target(unit, env)
            kinds = getattr(target, "kinds", None)
            if kinds is not None and unit.kind not in kinds:
                raise ConfigError(
                    "UD-CONFIG-TARGET",
                    f"unit {unit.name}: its target in {env}, {self.key(unit, env)} "
                    f"({type(target).__name__}), deploys {' and '.join(kinds)} units, "
                    f"not {unit.kind}",
                    f"give {unit.kind} units a target of their own in {env}",
                )
        for role, who in needs:
            found = self.find(unit, role)
            if not found:
                raise self._missing(unit, role, who)
            if len(found) > 1:
                where = ", ".join(
                    f"{env}: {self.key(unit, env)}"
                    for env in unit.environments
                    if isinstance(self.target(unit, env), role)
                )
                raise ConfigError(
                    "UD-CONFIG-TARGET-ROLE",
                    f"unit {unit.name}: {who} needs one {role_name(role)}, and its environments "
                    f"use {len(found)} different ones ({where}): a version in one is unknown "
                    "to the other",
                    f"give {unit.name}'s environments the same {role_name(role)}",
                )

    def _missing(self, unit: Unit, role: type, who: str) -> ConfigError:
        used = ", ".join(
            f"{env}: {self.key(unit, env)} ({type(self.target(unit, env)).__name__})"
            for env in unit.environments
        )
        return ConfigError(
            "UD-CONFIG-TARGET-ROLE",
            f"unit {unit.name}: {who} needs a {role_name(role)}, and none of "
            f"its targets is one ({used})",
            f"deploy one of its environments through a {role_name(role)} "
            f"({_EXAMPLES.get(role, role.__name__)}), in the platform's targets or the unit's "
            "field targets",
        )


def _kind_key(kind: str, env: str) -> str:
    return f"{kind}_target" if env == ANY_ENV else f"{kind}_target_{env}"


def _distinct(targets: Iterable[R]) -> list[R]:
    """Each target once; two equal configurations are one target (one registry, one warehouse)."""
    out: list[R] = []
    for t in targets:
        if not any(t is o or t == o for o in out):
            out.append(t)
    return out
