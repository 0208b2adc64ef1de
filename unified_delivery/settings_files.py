"""Reading one of the platform's YAML settings files (the policy, the price table, the
notification routes) into its pydantic model, with the one-line errors every such file gets:
not YAML, not a mapping, or the first field that does not validate, each naming the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError, one_line

M = TypeVar("M", bound=BaseModel)


def read_settings(
    path: Path,
    model: type[M],
    *,
    code: str,
    keys: str,
    remedy: str,
    field_remedy: str | None = None,
    code_for: Callable[[tuple], str] | None = None,
) -> M:
    """`model` from the YAML at `path`, else a ConfigError with `code` (or `code_for(loc)` for
    a field, by its location). `keys` names the top-level keys, for the not-a-mapping error."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(code, f"{path}: not valid YAML: {one_line(exc)}", remedy) from None
    if not isinstance(raw, dict):
        raise ConfigError(
            code, f"{path}: expected a mapping ({keys}), not {type(raw).__name__}", remedy
        )
    try:
        return model(**raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            code_for(tuple(err["loc"])) if code_for else code,
            f"{path}: field {one_line(where)}: {one_line(err['msg'])}",
            field_remedy or remedy,
        ) from None
