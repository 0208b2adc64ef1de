"""A kind of delivery unit as the platform knows it: one record naming everything a kind is
(its unit model, translator, YAML component, scaffold, default target and Dagster kind tags),
registered once (registry.py). Every per-kind table of the framework is read from these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .base import KindTranslator

if TYPE_CHECKING:
    from ..components import UnitComponent
    from ..targets.base import BaseTarget
    from ..units import Unit
    from .scaffolding import Scaffold


@dataclass(frozen=True)
class Kind:
    translator: KindTranslator
    # The target a platform gets for the kind when it names none. A function, so that the
    # target's module (which imports heavy clients) is imported only when it is called.
    default_target: Callable[[], BaseTarget]
    component: type[UnitComponent] | None = None  # the Dagster component of its YAML front door
    scaffold: Scaffold | None = None  # what `ud new <kind> NAME` writes
    dagster_kinds: frozenset[str] = frozenset()  # the tags the Dagster UI shows on its assets
    yaml_types: tuple[str, ...] = ()  # the `type:` values a YAML unit file of this kind may give

    @property
    def name(self) -> str:
        return self.translator.kind

    @property
    def unit_class(self) -> type[Unit]:
        return self.translator.unit_class
