"""Reports over the ledger: DORA metrics, cost showback and audit activity, as plain data,
and their renderings (text tables, one self-contained HTML file, Dagster markdown).

Every report function is pure over a list of ledger entries and a window, so it is tested
on synthetic ledgers and runs the same in `ud report`, in a stage asset and in the scorecard.
"""

from .period import Window, window

__all__ = ["Window", "window"]
