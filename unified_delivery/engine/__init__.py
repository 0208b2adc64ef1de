"""The engine: what runs inside a stage asset, a gate check and the rollback op, whatever the
unit's kind, in the steps a reader can follow (one module each).

The ledger is the record of every gate result, so a promotion in one run can refuse a
version whose gates failed in another run (Dagster's blocking checks stop only the run
they are in).

Each name is imported on first use, so a reader of the record (`ud status`: desired.py,
recovery.py) pays for no Dagster. The steps named like their module (`promote`, `rollback`)
are imported from it: `from unified_delivery.engine.promote import promote`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_names

_LAZY = {
    "active_override": ".gating",
    "override_in_force": ".overrides",
    "build_candidate": ".build",
    "env_lock": ".locks",
    "evaluate_gate": ".gating",
    "failure": ".steps",
    "gate_results": ".gating",
    "passed_or_overridden": ".gating",
    "ran_in": ".rollback",
    "rollback_candidates": ".rollback",
    "run_gate": ".gating",
    "run_lock": ".locks",
    "unit_named": ".steps",
}

if TYPE_CHECKING:
    from .build import build_candidate
    from .gating import active_override, evaluate_gate, gate_results, passed_or_overridden, run_gate
    from .locks import env_lock, run_lock
    from .overrides import override_in_force
    from .rollback import ran_in, rollback_candidates
    from .steps import failure, unit_named


__getattr__, __dir__ = lazy_names(__name__, _LAZY)


__all__ = [
    "active_override",
    "build_candidate",
    "env_lock",
    "evaluate_gate",
    "failure",
    "gate_results",
    "override_in_force",
    "passed_or_overridden",
    "ran_in",
    "rollback_candidates",
    "run_gate",
    "run_lock",
    "unit_named",
]
