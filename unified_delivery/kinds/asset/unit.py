"""The asset unit: a plain Dagster asset joined as a unit (`ud.wrap_asset`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ...units import Unit


class AssetUnit(Unit):
    """A plain Dagster asset joined as a unit (`ud.wrap_asset`): the value it returns is the
    artifact."""

    kind: ClassVar[str] = "asset"
    asset_key: str = Field(description='the wrapped asset\'s key, as Dagster writes it ("a/b")')
    checks: list[str] = Field(
        default_factory=list, description="names of the asset's own checks wrapped with it"
    )
