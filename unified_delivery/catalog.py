"""A platform's catalog of itself: what the read commands need to answer without loading it.

Loading a platform repository imports Dagster and builds every definition: seconds, and a
minute at 1,000 units. `ud status` needs none of that to answer: the units in dependency order
(kind, team, environments), for each environment a plain description of its target that
targets/probes.py can read without the target's client, and where the ledger is. Whenever the
platform is loaded (`service.load_platform`), that much is written to the home as
`catalog-<root>.json`, keyed by a digest of what the definitions are made from: the files under
the platform root that definitions read (.py, .yaml, .yml, .sql, .toml, .csv; dot folders,
caches and dbt's target/ and logs/ left out), the framework's own files and the `UD_`
variables (but the token, the home and the project). An edit makes the catalog stale, and a
stale or missing one is never read: the reader loads the platform, which writes it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import soak
from .home import Home

if TYPE_CHECKING:
    from .ledger import Ledger
    from .platform import Platform

FORMAT = 3  # bumped when what the catalog holds changes
SUFFIXES = frozenset({".py", ".yaml", ".yml", ".sql", ".toml", ".csv"})
SKIPPED = frozenset({"__pycache__", "node_modules", "target", "logs", "dbt_packages"})
FRAMEWORK = Path(__file__).resolve().parent
# Who acts changes no definition, and where the platform and its home are is the catalog's
# key and place already (a process that spells them otherwise must not make it stale).
UNRELATED = frozenset({"UD_TOKEN", "UD_HOME", "UD_PROJECT"})


def _walk(folder: Path, skip: Path, out: list[str]) -> None:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".") or entry.name in SKIPPED:
            continue
        if entry.is_dir(follow_symlinks=False):
            if Path(entry.path) != skip:
                _walk(Path(entry.path), skip, out)
        elif os.path.splitext(entry.name)[1] in SUFFIXES:
            try:
                st = entry.stat()
            except OSError:
                continue
            out.append(f"{entry.path}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}")


def digest(root: Path, home: Home) -> str:
    """What the platform's definitions are made from, as one hash: cheap (a stat per file)."""
    files: list[str] = []
    _walk(root, home.root, files)
    if not FRAMEWORK.is_relative_to(root):
        _walk(FRAMEWORK, home.root, files)
    variables = sorted(
        f"{k}={v}" for k, v in os.environ.items() if k.startswith("UD_") and k not in UNRELATED
    )
    h = hashlib.sha256(f"{FORMAT}\0{root}\0".encode())
    for line in [*variables, *sorted(files)]:
        h.update(line.encode(errors="surrogateescape") + b"\n")
    return h.hexdigest()


def path_for(root: Path, home: Home) -> Path:
    """One catalog per platform root in a home (tests and notebooks share homes)."""
    return home.root / f"catalog-{hashlib.sha256(str(root).encode()).hexdigest()[:16]}.json"


def _registry(platform: Platform) -> dict[str, Any] | str | None:
    """The first model registry, as `ud info` names it: its tracking URI field, or "unknown"
    for a registry whose URI only it can resolve."""
    from .targets.mlflow_alias import MlflowAliasTarget
    from .targets.roles import ModelRegistry

    found = platform.targets.playing(ModelRegistry)
    if not found:
        return None
    first = found[0]
    return {"tracking_uri": first.tracking_uri} if type(first) is MlflowAliasTarget else "unknown"


def _warehouse(platform: Platform) -> dict[str, Any] | str | None:
    from .targets.dbt_duckdb import DbtDuckDBTarget
    from .targets.roles import Warehouse

    found = platform.targets.playing(Warehouse)
    if not found:
        return None
    first = found[0]
    return {"warehouse": first.warehouse} if type(first) is DbtDuckDBTarget else "unknown"


def describe(platform: Platform, root: Path, key: str) -> dict[str, Any]:
    """The catalog of a loaded platform."""
    units = []
    for name in platform.order():
        unit = platform.units[name]
        probes = {}
        for env in unit.environments:
            spec = getattr(platform.target(unit, env), "probe_spec", None)
            probes[env] = spec(unit) if callable(spec) else None
        source = unit.git_source()
        units.append(
            {
                "name": name,
                "kind": unit.kind,
                "team": unit.team,
                "environments": list(unit.environments),
                "probes": probes,
                "gates": [
                    {
                        "name": g.name,
                        "family": g.family,
                        "stage": g.spec.stage,
                        "overridable": g.overridable,
                        "reported_live": g.reported_live,
                    }
                    for g in platform.gates[name]
                ],
                **({"repository": source.repository} if source else {}),
                **(
                    {"monitor": {"env": soak.monitored_env(unit), "soak_s": unit.monitor.soak_s}}
                    if unit.monitor
                    else {}
                ),
            }
        )
    url = platform.ledger.url
    return {
        "format": FORMAT,
        "digest": key,
        "root": str(root),
        "ledger_url": url if isinstance(url, str) else None,
        "registry": _registry(platform),
        "warehouse": _warehouse(platform),
        "units": units,
        "declared": list(platform.units),  # as declared: the order error messages list them in
    }


def write(platform: Platform, root: Path, key: str, home: Home | None = None) -> Path | None:
    """Write the catalog into the home, atomically; nothing when the home does not exist yet
    (loading a platform creates no home)."""
    home = home or Home.current()
    if not home.root.is_dir():
        return None
    target = path_for(root, home)
    text = json.dumps(describe(platform, root, key), separators=(",", ":"))
    fd, tmp = tempfile.mkstemp(dir=home.root, prefix=".catalog-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


@dataclass
class Catalog:
    """A platform as the read commands see it: from its catalog file, or from the platform
    itself once loaded (`platform`), with the same shape either way (`service.read_catalog`)."""

    data: dict[str, Any]
    home: Home
    platform: Platform | None = None
    load: Callable[[Path], Platform] | None = None  # service.loading's, given by its reader

    @classmethod
    def current(cls, root: Path, home: Home | None = None) -> Catalog | None:
        """The catalog of the platform at `root`, if one was written for its files as they are."""
        home = home or Home.current()
        try:
            data = json.loads(path_for(root, home).read_text())
        except (OSError, ValueError):
            return None
        if data.get("format") != FORMAT or data.get("digest") != digest(root, home):
            return None
        return cls(data, home)

    @property
    def units(self) -> list[dict[str, Any]]:
        """Each unit in dependency order: name, kind, team, environments, probes, gates, (an
        app's) repository and (a monitored unit's) monitor: its environment and soak."""
        return self.data["units"]

    def loaded(self) -> Platform:
        """The platform itself, loaded on first use: for what only it can answer."""
        if self.platform is None:
            if self.load is None:
                raise RuntimeError("this catalog was read without a way to load its platform")
            self.platform = self.load(Path(self.data["root"]))
        return self.platform

    def ledger(self) -> Ledger:
        if self.platform is not None or self.data.get("ledger_url") is None:
            return self.loaded().ledger.ledger()
        from .ledger import LedgerKey, ledger_for

        return ledger_for(
            self.data["ledger_url"] or self.home.ledger_url, LedgerKey.for_home(self.home)
        )
