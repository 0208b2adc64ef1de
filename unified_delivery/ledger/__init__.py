"""The audit ledger: append-only, hash-chained, every entry signed, checkpointed outside its
database (chain.py, keys.py, checkpoints.py). `LedgerResource`, the Dagster resource
(resource.py), is imported on first use: a reader of the ledger pays for no Dagster."""

from typing import TYPE_CHECKING, Any

from . import checkpoints
from .chain import (
    FINDINGS,
    GENESIS,
    REDACTED,
    Ledger,
    LedgerEntry,
    VerifyReport,
    canonical_json,
    entry_hash,
    ledger_for,
    ledger_table,
    utc_iso,
)
from .checkpoints import Checkpoint
from .keys import LedgerKey

if TYPE_CHECKING:
    from .resource import LedgerResource


def __getattr__(name: str) -> Any:
    if name != "LedgerResource":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .resource import LedgerResource

    globals()[name] = LedgerResource
    return LedgerResource


__all__ = [
    "FINDINGS",
    "checkpoints",
    "GENESIS",
    "REDACTED",
    "Checkpoint",
    "Ledger",
    "LedgerEntry",
    "LedgerKey",
    "LedgerResource",
    "VerifyReport",
    "canonical_json",
    "entry_hash",
    "ledger_for",
    "ledger_table",
    "utc_iso",
]
