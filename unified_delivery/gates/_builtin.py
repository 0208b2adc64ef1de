"""Imports every built-in gate module so that each registers itself. A new gate is a new
module here and one line below."""

from . import dbt_tests, health, model_metric, tests  # noqa: F401
