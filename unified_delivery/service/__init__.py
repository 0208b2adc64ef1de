"""The service layer: what every front door calls, the `ud` command, the Python API, the
demo, the benchmarks, and any later one (an MCP server, a web page).

Each function takes the loaded platform (see `loading.load_platform`) and the principal it
acts for, does one thing, and returns plain data or raises a `UDError` with its code. A
front door parses, calls one of these, and renders; nothing here imports a front door.
"""

from .approvals import approve, override
from .gate_report import gate_report
from .identity import identity
from .launch import promote, rollback
from .loading import load_platform
from .plans import promote_plan, rollback_plan
from .status import status
from .tokens import issue_token

__all__ = [
    "approve",
    "gate_report",
    "identity",
    "issue_token",
    "load_platform",
    "override",
    "promote",
    "promote_plan",
    "rollback",
    "rollback_plan",
    "status",
]
