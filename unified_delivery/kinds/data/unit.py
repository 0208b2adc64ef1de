"""The data unit: a dbt selection in a dbt project, and the dbt vars a candidate may set."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from ...units import GitSource, Strict, Unit

VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# A string var that declares no pattern: a word, never quotes, spaces or SQL punctuation.
DEFAULT_STRING_PATTERN = r"[A-Za-z0-9_.-]{1,64}"


class VarSpec(Strict):
    """One dbt var a data unit accepts from `ud promote --ref`, and what a value must be.

    Values are checked before dbt runs and reach dbt typed: a date as ISO text that is a real
    date, an integer as an integer, a string only when it matches its pattern in full."""

    type: Literal["date", "string", "integer", "number", "boolean", "enum"] = Field(
        description="date (YYYY-MM-DD), string (matching `pattern`), integer, number, boolean, "
        "or enum (one of `values`)"
    )
    pattern: str | None = Field(
        default=None,
        description="string: a regular expression the whole value must match "
        f"(default {DEFAULT_STRING_PATTERN!r}: letters, digits, `_`, `.`, `-`)",
    )
    min: float | None = Field(
        default=None, description="integer, number: the smallest value accepted"
    )
    max: float | None = Field(
        default=None, description="integer, number: the largest value accepted"
    )
    values: list[str | int] | None = Field(default=None, description="enum: the values accepted")
    description: str = Field(default="", description="what the var means, for people")

    @model_validator(mode="after")
    def _consistent(self) -> VarSpec:
        if self.pattern is not None:
            if self.type != "string":
                raise ValueError(f"pattern applies to string vars, not {self.type}")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(
                    f"pattern {self.pattern!r} is not a regular expression: {exc}"
                ) from None
        bounded = self.min is not None or self.max is not None
        if bounded and self.type not in ("integer", "number"):
            raise ValueError(f"min and max apply to integer and number vars, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if (self.type == "enum") != bool(self.values):
            raise ValueError("an enum var lists its `values`; only an enum var has them")
        return self


class DataUnit(Unit):
    kind: ClassVar[str] = "data"
    project: str = Field(
        default=".",
        description="the dbt project's folder: a path (relative to the declaring file's "
        "folder) or, with `repository`, a folder inside the repository",
    )
    repository: str | None = Field(
        default=None,
        description="a Git repository (a local path or any URL git can clone; may use {home}) "
        "holding the dbt project: candidates are built from a checkout of a commit, and the Git "
        "sensor builds each commit pushed to `ref`",
    )
    ref: str = Field(
        default="main", description="with `repository`: the branch whose commits are built"
    )
    select: str = Field(description="a dbt selection")
    publish: list[str] = Field(
        default_factory=list, description="models published; default: models in the selection"
    )
    vars: dict[str, VarSpec] = Field(
        default_factory=dict,
        description="the dbt vars `ud promote --ref` may set, by name, with "
        "their type; a unit that declares none accepts none",
    )

    @field_validator("vars")
    @classmethod
    def _var_names(cls, v: dict[str, VarSpec]) -> dict[str, VarSpec]:
        bad = [name for name in v if not VAR_NAME_RE.match(name)]
        if bad:
            raise ValueError(
                f"{bad[0]!r} is not a dbt var name (letters, digits and _, starting "
                "with a letter or _)"
            )
        return v

    def git_source(self) -> GitSource | None:
        return GitSource(repository=self.repository, branch=self.ref) if self.repository else None
