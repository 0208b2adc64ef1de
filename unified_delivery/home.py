"""The embedded home: where every piece of local state lives by default.

`$UD_HOME`, or `.ud/` in the platform repository (found from the working directory, so a
notebook in a subfolder uses the same home as `ud` at the root). Read when asked, never at
import time, so tests and the CLI can point one process at several homes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_UMASK = 0o077  # files the platform writes are its owner's alone (0600, folders 0700)


def is_platform_root(folder: Path) -> bool:
    """A folder Dagster would load a code location from (a workspace.yaml, or a pyproject.toml
    with a [tool.dagster] section), or an older platform repository (assets/definitions.py)."""
    if (folder / "workspace.yaml").exists() or (folder / "assets" / "definitions.py").exists():
        return True
    pyproject = folder / "pyproject.toml"
    return pyproject.exists() and "[tool.dagster]" in pyproject.read_text(errors="replace")


def project_root() -> Path:
    """$UD_PROJECT, else the nearest platform repository at or above the working directory (so
    `ud` and a notebook work from a subfolder), else the working directory."""
    if os.environ.get("UD_PROJECT"):
        return Path(os.environ["UD_PROJECT"]).resolve()
    return _root_above(os.getcwd())


@lru_cache(maxsize=64)
def _root_above(cwd: str) -> Path:
    # A platform repository does not appear or vanish above a running process: once per folder.
    here = Path(cwd).resolve()
    return next((d for d in (here, *here.parents) if is_platform_root(d)), here)


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def current(cls) -> "Home":
        return cls(Path(os.environ.get("UD_HOME") or project_root() / ".ud").resolve())

    def ensure(self) -> Path:
        """The home folder, made if missing and private to its owner (0700): it holds the signing
        key, the ledger, the run storage (tags, configs) and every build."""
        self.root.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        st = self.root.stat()
        if st.st_mode & 0o077 and st.st_uid == os.getuid():
            self.root.chmod(PRIVATE_DIR)
        return self.root

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def mlflow_dir(self) -> Path:
        return self.root / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        return (
            os.environ.get("UD_MLFLOW_TRACKING_URI") or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"
        )

    @property
    def mlflow_artifacts(self) -> Path:
        return self.mlflow_dir / "artifacts"

    @property
    def warehouse(self) -> Path:
        return Path(os.environ.get("UD_WAREHOUSE") or self.root / "warehouse.duckdb")

    @property
    def ledger_url(self) -> str:
        return os.environ.get("UD_LEDGER_URL") or f"sqlite:///{self.root / 'ledger.db'}"

    @property
    def repos(self) -> Path:
        return self.root / "repos"

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def builds(self) -> Path:
        return self.root / "builds"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    def expand(self, value: str) -> str:
        """Resolve the `{home}` placeholder that unit declarations may use."""
        return value.replace("{home}", str(self.root))
