"""The model kind's Python front door: `@ud.model(...)` on a training function declares a
model unit, and the function is what its candidate build runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ...units import field_error
from .unit import ModelUnit


@dataclass(frozen=True)
class ModelDefinition:
    unit: ModelUnit
    train: Callable[[Any], Any]

    def __call__(self, *args, **kwargs):  # still callable as the plain function
        return self.train(*args, **kwargs)


def model(**declaration: Any) -> Callable[[Callable], ModelDefinition]:
    """Declare a model unit on a training function:
    `@ud.model(team=..., trains_on=..., features=..., label=...)`."""

    def wrap(fn: Callable) -> ModelDefinition:
        name = declaration.get("name", fn.__name__)
        decl = {**declaration, "name": name}
        # A dataset is relative to the file that declares it (the working directory in a notebook).
        if decl.get("dataset"):
            decl["dataset"] = str(_beside(fn, decl["dataset"]))
        try:
            unit = ModelUnit(**decl)
        except ValidationError as exc:
            source = f"the @model(...) arguments of {fn.__module__}.{fn.__name__}"
            raise field_error(exc, name, source, ModelUnit) from None
        return ModelDefinition(unit=unit, train=fn)

    return wrap


def _beside(fn: Callable, path: str) -> Path:
    """`path` next to the file that declares `fn`; in a notebook (whose cells live in the
    kernel's temporary files, or nowhere) the working directory is where it is."""
    import inspect

    source = inspect.getsourcefile(fn) or ""
    bases = ([Path(source).parent] if source and Path(source).exists() else []) + [Path.cwd()]
    found = next((b / path for b in bases if (b / path).exists()), bases[0] / path)
    return found.resolve()
