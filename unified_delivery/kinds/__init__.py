"""Kinds of delivery unit: one translator module per kind."""
