"""Governance: identities (tokens and run grants), policy (roles, quotas, freezes) and the
checks a promotion makes with them."""

from .policy import Governance, PolicyFile
from .tokens import issue, parse_duration, verify

__all__ = ["Governance", "PolicyFile", "issue", "parse_duration", "verify"]
