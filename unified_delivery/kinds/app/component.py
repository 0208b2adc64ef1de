"""The app kind's YAML front door: the Dagster component type `unified_delivery.App`."""

from __future__ import annotations

from ...components import UnitComponent
from .translator import AppTranslator


class App(UnitComponent):
    """An app unit: service code in a Git repository, promoted through its gates.

    Built at a commit, deployed by the platform's app target; stages candidate, then its
    environments (staging, production by default)."""

    translator = AppTranslator()
