"""Imports every built-in gate module so that each registers itself. A new gate is a new
module here and one line below."""

from . import dbt_tests, health, manifest_policy, model_metric, tests  # noqa: F401
from . import access, approval, freeze  # noqa: F401,E402  (governance gates)
from . import data_quality, fairness, schema, security  # noqa: F401,E402  (quality, fairness, schema, security gates)
from . import cost  # noqa: F401,E402
from . import asset_check  # noqa: F401,E402  (the checks of wrapped Dagster assets)

