"""The audit ledger: append-only, hash-chained, every entry signed, checkpointed outside its
database (chain.py, keys.py, checkpoints.py)."""

from . import checkpoints
from .chain import (
    FINDINGS,
    GENESIS,
    REDACTED,
    Ledger,
    LedgerEntry,
    LedgerResource,
    VerifyReport,
    canonical_json,
    entry_hash,
    ledger_for,
    ledger_table,
    utc_iso,
)
from .checkpoints import Checkpoint
from .keys import LedgerKey

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
