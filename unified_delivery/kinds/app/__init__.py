"""The app kind: service code in a Git repository (unit.py), built at a commit (translator.py),
declared in YAML as `unified_delivery.App` (component.py), written by `ud new app` (scaffold.py,
template/), deployed by default as a local release with an atomic switch."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from ..kind import Kind
from ..scaffolding import Scaffold
from .component import App
from .scaffold import fill
from .translator import AppTranslator

TEMPLATE = resources.files(__name__) / "template"  # what `ud new app NAME` writes

if TYPE_CHECKING:
    from ...targets.local_release import LocalReleaseTarget


def default_target() -> LocalReleaseTarget:
    from ...targets.local_release import LocalReleaseTarget

    return LocalReleaseTarget()


KIND = Kind(
    translator=AppTranslator(),
    default_target=default_target,
    component=App,
    scaffold=Scaffold(template=TEMPLATE, team="web", fill=fill),
    dagster_kinds=frozenset({"git", "python"}),
    yaml_types=("unified_delivery.App", "unified_delivery.app", "app"),
)
