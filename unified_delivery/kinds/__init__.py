"""Kinds of delivery unit: one folder per kind (app/, model/, data/, asset/), each described
by one Kind record (kind.py) and registered in registry.py. A platform repository adds a kind
of its own with `register(Kind(...))`, an installed distribution through the entry point
group `unified_delivery.kinds` (docs/extending.md)."""

from .kind import Kind
from .registry import kinds, register

__all__ = ["Kind", "kinds", "register"]
