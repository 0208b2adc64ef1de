"""The engine: what runs inside a stage asset, a gate check and the rollback op, whatever the
unit's kind, in the steps a reader can follow (one module each).

The ledger is the record of every gate result, so a promotion in one run can refuse a
version whose gates failed in another run (Dagster's blocking checks stop only the run
they are in).
"""

from .build import build_candidate
from .gating import active_override, evaluate_gate, gate_results, passed_or_overridden, run_gate
from .locks import env_lock, run_lock
from .promote import promote
from .rollback import ran_in, rollback, rollback_candidates
from .steps import failure

__all__ = [
    "active_override",
    "build_candidate",
    "env_lock",
    "evaluate_gate",
    "failure",
    "gate_results",
    "passed_or_overridden",
    "promote",
    "ran_in",
    "rollback",
    "rollback_candidates",
    "run_gate",
    "run_lock",
]
