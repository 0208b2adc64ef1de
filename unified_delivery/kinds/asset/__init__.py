"""The asset kind, the escape hatch: a plain Dagster asset joined as a unit with
`ud.wrap_asset` (wrap.py), its value the candidate (translator.py, values.py), deployed by
default as a file per environment with an atomic switch. Python only, not scaffolded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..kind import Kind
from .translator import AssetTranslator

if TYPE_CHECKING:
    from ...targets.local_artifact import LocalArtifactTarget


def default_target() -> LocalArtifactTarget:
    from ...targets.local_artifact import LocalArtifactTarget

    return LocalArtifactTarget()


KIND = Kind(translator=AssetTranslator(), default_target=default_target)
