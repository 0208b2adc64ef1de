"""The service layer: what every front door calls, the `ud` command, the Python API, the
demo, the benchmarks, and any later one (an MCP server, a web page).

Each function takes the loaded platform (see `loading.load_platform`) and the principal it
acts for, does one thing, and returns plain data or raises a `UDError` with its code. A
front door parses, calls one of these, and renders; nothing here imports a front door.
Each name is imported on first use, so a front door that only parses its arguments (`ud
--help`) pays for none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_names

_LAZY = {
    "approve": ".approvals",
    "request_approval": ".approvals",
    "audit_entries": ".reports",
    "report": ".reports",
    "report_window": ".reports",
    "units": ".catalog",
    "policy_summary": ".catalog",
    "override": ".approvals",
    "pending_approvals": ".approvals",
    "gate_report": ".gate_reports",
    "gate_report_from_record": ".gate_reports",
    "home_info": ".info",
    "identity": ".principals",
    "promote": ".launch",
    "rollback": ".launch",
    "load_platform": ".loading",
    "policy_approve": ".policy_changes",
    "policy_propose": ".policy_changes",
    "policy_show": ".policy_changes",
    "read_catalog": ".loading",
    "promote_plan": ".plans",
    "release_board": ".board_rows",
    "rollback_plan": ".plans",
    "status": ".unit_status",
    "status_from_record": ".unit_status",
    "issue_token": ".tokens",
}

if TYPE_CHECKING:
    from .approvals import approve, override, pending_approvals, request_approval
    from .board_rows import release_board
    from .catalog import policy_summary, units
    from .gate_reports import gate_report, gate_report_from_record
    from .info import home_info
    from .launch import promote, rollback
    from .loading import load_platform, read_catalog
    from .plans import promote_plan, rollback_plan
    from .policy_changes import policy_approve, policy_propose, policy_show
    from .principals import identity
    from .reports import audit_entries, report, report_window
    from .tokens import issue_token
    from .unit_status import status, status_from_record


__getattr__, __dir__ = lazy_names(__name__, _LAZY)


__all__ = [
    "approve",
    "audit_entries",
    "gate_report",
    "gate_report_from_record",
    "home_info",
    "identity",
    "issue_token",
    "load_platform",
    "override",
    "pending_approvals",
    "policy_approve",
    "policy_propose",
    "policy_show",
    "policy_summary",
    "promote",
    "promote_plan",
    "release_board",
    "report",
    "report_window",
    "request_approval",
    "rollback",
    "rollback_plan",
    "status",
    "units",
    "read_catalog",
    "rollback",
    "rollback_plan",
    "status",
    "status_from_record",
]
