"""Loading a platform repository the way Dagster loads its code location.

The module is the one the repository names for Dagster: `[tool.dagster] module_name` in its
pyproject.toml, else the first `python_module` of its workspace.yaml, else
`assets.definitions` (a repository written before either); it is imported with the
repository on `sys.path`, as Dagster's code server does. The module exports the Dagster
`defs` and the `platform` they were made from.

Dagster gives every code location a process of its own. A process that loads a second
platform repository (tests, a notebook that moves between repositories) first forgets the
modules the previous one loaded, found by their files under its root, never by name.

Every load writes the platform's catalog to the home (catalog.py), which the read commands
answer from without loading it again.
"""

from __future__ import annotations

import importlib
import os
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import ConfigError, UDError
from ..home import Home, project_root

if TYPE_CHECKING:
    from ..catalog import Catalog
    from ..platform import Platform

LEGACY_MODULE = "assets.definitions"


def definitions_module(root: Path) -> tuple[str, Path]:
    """The module that holds the platform's definitions, and the folder to import it from."""
    pyproject = root / "pyproject.toml"
    if pyproject.exists():
        try:
            name = (
                tomllib.loads(pyproject.read_text())
                .get("tool", {})
                .get("dagster", {})
                .get("module_name")
            )
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                "UD-NO-PLATFORM", f"{pyproject} is not valid TOML: {exc}", "fix the file"
            ) from None
        if name:
            return name, root
    workspace = root / "workspace.yaml"
    if workspace.exists():
        for entry in (yaml.safe_load(workspace.read_text()) or {}).get("load_from", []) or []:
            module = (entry or {}).get("python_module")
            if isinstance(module, dict) and module.get("module_name"):
                return module["module_name"], (
                    root / module.get("working_directory", ".")
                ).resolve()
    return LEGACY_MODULE, root


def _forget_other_platform(root: Path, top: str) -> None:
    """A package named `top` loaded from elsewhere is another platform's: forget the modules of
    that platform's own top-level packages (those whose files lie directly in its folder,
    the framework itself excepted), so this one's are imported."""
    loaded = sys.modules.get(top)
    path = str(getattr(loaded, "__file__", "") or "")
    if loaded is None or not path or path.startswith(str(root) + os.sep):
        return
    other = (
        Path(path)
        .resolve()
        .parents[len(top.split(".")) - (0 if path.endswith("__init__.py") else 1)]
    )
    framework = __name__.split(".")[0]
    for name, module in list(sys.modules.items()):
        head = name.split(".")[0]
        file = str(getattr(module, "__file__", "") or "")
        if head != framework and file.startswith(str(other / head)):
            del sys.modules[name]
    if str(other) in sys.path:
        sys.path.remove(str(other))


def load_platform(root: Path | None = None) -> tuple[Platform, Any]:
    """The platform repository's `platform` and `defs`, from the module it names for Dagster."""
    root = (root or project_root()).resolve()
    module_name, folder = definitions_module(root)
    if (
        not (folder / Path(*module_name.split("."))).with_suffix(".py").exists()
        and not (folder / Path(*module_name.split(".")) / "__init__.py").exists()
    ):
        raise ConfigError(
            "UD-NO-PLATFORM",
            f"{root} is not a platform repository (no module {module_name} in {folder})",
            "run ud from the repository root, or set UD_PROJECT",
        )
    from .. import catalog

    key = catalog.digest(root, Home.current())  # before the import: an edit during it is seen
    _forget_other_platform(folder, module_name.split(".")[0])
    if str(folder) in sys.path:
        sys.path.remove(str(folder))
    sys.path.insert(0, str(folder))
    fresh = module_name not in sys.modules  # a module imported before may predate an edit
    try:
        module = importlib.import_module(module_name)
    except UDError:
        raise
    except Exception as exc:  # the platform's own code: name the file and line, no traceback
        tb = exc.__traceback__
        while tb and tb.tb_next:
            tb = tb.tb_next
        where = f" ({tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})" if tb else ""
        raise ConfigError(
            "UD-PLATFORM-IMPORT",
            f"the platform's definitions do not load: {type(exc).__name__}: {exc}{where}",
            f"fix the platform code named; `python -c 'import {module_name}'` shows the full "
            "traceback",
        ) from None
    missing = [a for a in ("platform", "defs") if not hasattr(module, a)]
    if missing:
        raise ConfigError(
            "UD-NO-PLATFORM",
            f"{module_name} defines no {' and no '.join(missing)}",
            "export the Platform as `platform` and its Definitions as `defs`",
        )
    if fresh:
        catalog.write(module.platform, root, key)
    return module.platform, module.defs


def read_catalog(root: Path | None = None) -> Catalog:
    """The current catalog of the platform repository `ud` runs in (catalog.py), else the platform
    loaded (which writes the catalog for the next command); either loads it when asked."""
    from ..catalog import Catalog, describe, digest, path_for, write

    root = (root or project_root()).resolve()
    home = Home.current()
    found = Catalog.current(root, home)
    if found is not None:
        found.load = _platform_at
        return found
    key = digest(root, home)
    platform = _platform_at(root)
    if not path_for(root, home).exists():  # the load came before the home did
        home.ensure()  # which the read that follows (the ledger) makes anyway
        write(platform, root, key, home)
    return Catalog(describe(platform, root, key), home, platform, _platform_at)


def _platform_at(root: Path) -> Platform:
    return load_platform(root)[0]
