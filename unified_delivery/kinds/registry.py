"""Every kind of unit the platform knows, by name: the built-in ones below, those a platform
repository registers (`register(MY_KIND)` in one of its own modules), and those of installed
distributions (entry point group `unified_delivery.kinds`, each naming a Kind). A new kind is
one folder or file and one registration; the framework's per-kind tables (unit models,
translators, YAML types, component types, scaffolds, default targets, Dagster kind tags) are
all read from here.

The built-in kinds are imported here, explicitly; they never import this module."""

from __future__ import annotations

from importlib.metadata import entry_points

from ..errors import ConfigError
from ..units import NAME_RE, Unit
from .app import KIND as APP
from .asset import KIND as ASSET
from .data import KIND as DATA
from .kind import Kind
from .model import KIND as MODEL

ENTRY_POINTS = "unified_delivery.kinds"
BUILT_IN: tuple[Kind, ...] = (APP, MODEL, DATA, ASSET)
_REGISTERED: dict[str, Kind] = {}
_INSTALLED: dict[str, Kind] | None = None


def _checked(kind: object, where: str) -> Kind:
    model = getattr(getattr(kind, "translator", None), "unit_class", None)
    if not (isinstance(kind, Kind) and isinstance(model, type) and issubclass(model, Unit)):
        raise ConfigError(
            "UD-CONFIG-KIND",
            f"{where}: {kind!r} is not a Kind whose translator names its unit",
            "register unified_delivery.kinds.Kind(translator=..., default_target=...), its "
            "translator's `unit_class` a subclass of unified_delivery.units.Unit",
        )
    if not NAME_RE.match(kind.name):
        raise ConfigError(
            "UD-CONFIG-KIND",
            f"{where}: {kind.unit_class.__name__}.kind {kind.name!r} cannot name a kind",
            "set the unit model's `kind` to lower case letters, digits and _, starting "
            "with a letter",
        )
    return kind


def register(kind: Kind) -> Kind:
    """Make a kind known to every platform in this process; a later registration of the same
    name replaces the earlier one. A YAML type name another kind already has is refused."""
    _checked(kind, "register")
    taken = {
        t: other.name
        for other in kinds().values()
        if other.name != kind.name
        for t in other.yaml_types
    }
    clash = sorted(t for t in kind.yaml_types if t in taken)
    if clash:
        raise ConfigError(
            "UD-CONFIG-KIND",
            f"register: kind {kind.name}: YAML type {clash[0]!r} is the {taken[clash[0]]} kind's",
            "give the kind YAML type names of its own",
        )
    _REGISTERED[kind.name] = kind
    return kind


def _installed() -> dict[str, Kind]:
    global _INSTALLED
    if _INSTALLED is None:
        found = {}
        for ep in entry_points(group=ENTRY_POINTS):
            kind = _checked(ep.load(), f"entry point {ep.name} ({ep.value})")
            found[kind.name] = kind
        _INSTALLED = found
    return _INSTALLED


def kinds() -> dict[str, Kind]:
    """Every kind known now, by name (a registration replaces an installed or built-in kind)."""
    return {**{k.name: k for k in BUILT_IN}, **_installed(), **_REGISTERED}


def yaml_types() -> dict[str, str]:
    """A YAML unit file's `type:` -> the name of its kind."""
    return {t: k.name for k in kinds().values() for t in k.yaml_types}
