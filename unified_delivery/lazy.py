"""Names a package imports on first use (PEP 562), so importing the package costs nothing
until a name is used: `ud --help` loads no Dagster, `ud status` no engine. One mechanism for
the package itself, the service layer and the engine.

    _LAZY = {"promote": ".launch"}           # name -> the module (relative) that defines it
    __getattr__, __dir__ = lazy_names(__name__, _LAZY)

A submodule must never share a lazy name: once imported it would shadow the name
(tests/test_cli_fast.py checks)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_names(
    package: str, names: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level `__getattr__` and `__dir__` of `package` for `names`."""

    def getattr_(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(names[name], package), name)
        setattr(sys.modules[package], name, value)  # once loaded, an ordinary attribute
        return value

    def dir_() -> list[str]:
        return sorted({*vars(sys.modules[package]), *names})

    return getattr_, dir_
