"""Bad input is refused where it is parsed, with its own code and one line, never a traceback:
the inputs the review found accepted or crashing, and a property test over the parsers of
tokens, the policy file, the price table and unit files."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unified_delivery.cost import CostModel
from unified_delivery.errors import ConfigError, NotPermitted, UDError
from unified_delivery.governance import Governance, tokens
from unified_delivery.loader import load_yaml_unit

KEY = b"k" * 32


def signed(claims: object) -> str:
    """A token whose signature is right and whose claims are whatever the test says."""
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    sig = base64.urlsafe_b64encode(hmac.new(KEY, f"ud1.{body}".encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    return f"ud1.{body}.{sig}"


@pytest.mark.parametrize("claims", [[1, 2], "human:x", {"exp": 9999999999}, {"sub": "human:x"},
                                    {"sub": "human:x", "exp": "tomorrow"}, {"sub": 7, "exp": 9999999999},
                                    {"sub": "human:x", "exp": True}, None])
def test_a_signed_token_with_malformed_claims_is_refused(claims):
    with pytest.raises(NotPermitted) as info:
        tokens.verify(signed(claims), key=KEY)
    assert info.value.code in ("UD-AUTH-TOKEN-MALFORMED", "UD-AUTH-TOKEN-INVALID")


@pytest.mark.parametrize("text", ["99999999999999999999d", "1000000000000s", "367d", "0h", "-1h", "8", "h", ""])
def test_a_duration_too_long_or_malformed_is_a_usage_error(text):
    with pytest.raises(UDError) as info:
        tokens.parse_duration(text)
    assert info.value.code == "UD-USAGE"


def _policy(tmp_path: Path, doc: object) -> Governance:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return Governance.from_file(path)


@pytest.mark.parametrize("doc, where", [
    ({"principals": {"agent:bot": {"quotas": {"promotions_per_day": {"staging": -1}}}},
      "defaults": {"ui_principal": "agent:bot", "local_principal": "agent:bot"}}, "promotions_per_day"),
    ({"principals": {"human:ana": {"roles": {"*": ["deploy"]}}}, "defaults": {"ui_principal": "service:ui"}},
     "defaults"),  # the UI's principal, named, is not one of them
    ({"principals": {"agent:bot": {"quotas": {"spend_per_month": -5}}},
      "defaults": {"ui_principal": "agent:bot", "local_principal": "agent:bot"}}, "spend_per_month"),
])
def test_a_policy_that_does_not_hold_together_is_refused(tmp_path, doc, where):
    with pytest.raises(ConfigError) as info:
        _policy(tmp_path, doc)
    assert info.value.code == "UD-CONFIG-POLICY" and where in info.value.message


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                       lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
                       max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(claims=JSONISH)
def test_any_signed_claims_are_a_principal_or_a_refusal(claims):
    try:
        out = tokens.verify(signed(claims), key=KEY)
    except NotPermitted:
        return
    assert isinstance(out, dict) and isinstance(out["sub"], str)


def _keys(*names: str):
    return st.dictionaries(st.sampled_from(names), JSONISH, max_size=len(names))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.one_of(JSONISH, st.fixed_dictionaries({}, optional={
    "defaults": _keys("ui_principal", "local_principal"),
    "principals": st.dictionaries(st.sampled_from(["human:a", "agent:b", "nobody", "service:c"]),
                                  _keys("roles", "email", "quotas"), max_size=3),
    "freezes": st.lists(_keys("env", "start", "end", "cron", "duration", "timezone"), max_size=2)})))
def test_any_policy_file_loads_or_is_one_config_error(tmp_path, doc):
    try:
        _policy(tmp_path, doc)
    except ConfigError as exc:
        assert exc.code.startswith("UD-CONFIG-") and "\n" not in exc.message


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.one_of(JSONISH, st.fixed_dictionaries({}, optional={
    "prices": _keys("currency", "cpu_hour", "gb_hour", "gpu_hour", "replica_hour"),
    "teams": st.dictionaries(st.text(max_size=8), _keys("per_month", "currency"), max_size=2)})))
def test_any_price_table_loads_or_is_one_config_error(tmp_path, doc):
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        CostModel.from_file(path)
    except ConfigError as exc:
        assert exc.code == "UD-CONFIG-COST"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attributes=st.one_of(JSONISH, st.fixed_dictionaries({"name": st.text(max_size=300)}, optional={
    "team": JSONISH, "repository": st.just("/nonexistent/repo"), "branch": JSONISH, "gates": JSONISH,
    "budget": _keys("per_run", "per_month", "currency", "serving"), "policy": _keys("staging", "approvals"),
    "service": _keys("command", "ports", "env", "startup_timeout_s")})))
def test_any_app_unit_file_loads_or_is_one_config_error(tmp_path, attributes):
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump({"type": "unified_delivery.App", "attributes": attributes}))
    try:
        load_yaml_unit(path)
    except ConfigError as exc:
        assert exc.code.startswith("UD-CONFIG-") and "\n" not in exc.message


APP = {"name": "svc", "team": "web", "repository": "/nonexistent/repo"}


@pytest.mark.parametrize("change, field", [
    ({"name": "a" * 300}, "name"),
    ({"name": "a" * 41}, "name"),
    ({"budget": {"per_run": 1e400}}, "budget.per_run"),
    ({"budget": {"per_month": float("nan")}}, "budget.per_month"),
    ({"budget": {"per_month": 1e13}}, "budget.per_month"),
    ({"budget": {"serving": {"size": "small", "replicas": 10**9}}}, "budget.serving.replicas"),
    ({"policy": {"approvals": {"production": -1}}}, "policy.approvals.production"),
    ({"policy": {"soak_seconds": -5}}, "policy.soak_seconds"),
    ({"service": {"ports": {"staging": 70000}}}, "service.ports.staging"),
    ({"service": {"ports": {"staging": 0}}}, "service.ports.staging"),
    ({"service": {"startup_timeout_s": 0}}, "service.startup_timeout_s"),
    ({"kubernetes": {"image": "x", "replicas": 10**7}}, "kubernetes.replicas"),
    ({"kubernetes": {"image": "x", "port": 99999}}, "kubernetes.port"),
    ({"kubernetes": {"image": "x", "hpa": {"max_replicas": 10**6}}}, "kubernetes.hpa.max_replicas"),
])
def test_out_of_range_unit_values_are_refused_where_they_are_parsed(tmp_path, change, field):
    """Huge budgets, replicas and ports, a 300-character name, negative approvals: refused when
    the file loads, naming the field, instead of a run that fails late with no cause."""
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump({"type": "unified_delivery.App", "attributes": {**APP, **change}},
                                   allow_unicode=True))
    with pytest.raises(ConfigError) as err:
        load_yaml_unit(path)
    assert err.value.code.startswith("UD-CONFIG-") and "\n" not in err.value.message
    assert field in err.value.message, err.value.message


def test_in_range_values_still_load(tmp_path):
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump({"type": "unified_delivery.App", "attributes": {
        **APP, "name": "a" * 40, "budget": {"per_run": 0, "per_month": 1e12},
        "policy": {"approvals": {"production": 0}, "soak_seconds": 86400},
        "service": {"ports": {"staging": 65535}},
        "kubernetes": {"image": "x", "replicas": 1000, "port": 1}}}))
    assert load_yaml_unit(path).name == "a" * 40
