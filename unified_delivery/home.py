"""The embedded home: where every piece of local state lives by default.

`$UD_HOME`, or `.ud/` in the current directory. Read when asked, never at import time,
so tests and the CLI can point one process at several homes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def current(cls) -> "Home":
        return cls(Path(os.environ.get("UD_HOME") or ".ud").resolve())

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def mlflow_dir(self) -> Path:
        return self.root / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        return os.environ.get("UD_MLFLOW_TRACKING_URI") or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

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
