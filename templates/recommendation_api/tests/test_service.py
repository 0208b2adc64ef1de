"""Tests of the recommendation API: pure logic, and the HTTP server without a model.

Standard library and pytest only: nothing here imports MLflow or pandas.
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.request

import pytest

import app
import service

GOOD = {
    "tenure_days": 400,
    "order_count": 5,
    "total_spend": 250.5,
    "avg_order_value": 50.1,
    "days_since_last_order": 30,
}


# --- parse_records -------------------------------------------------------------------

def test_parse_records_returns_the_features_as_floats_and_ignores_extras():
    records = service.parse_records({"records": [{**GOOD, "customer_id": 7}]})
    assert records == [{name: float(GOOD[name]) for name in service.FEATURES}]
    assert list(records[0]) == list(service.FEATURES)


def test_decode_json_rejects_what_is_not_json():
    with pytest.raises(service.ValidationError) as err:
        service.decode_json(b"{not json")
    assert err.value.code == "invalid_json"
    assert service.decode_json(b'{"records": []}') == {"records": []}


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ([GOOD], "invalid_payload"),
        ("records", "invalid_payload"),
        ({}, "missing_records"),
        ({"records": GOOD}, "invalid_records"),
        ({"records": []}, "empty_records"),
        ({"records": [1]}, "invalid_record"),
        ({"records": [{k: v for k, v in GOOD.items() if k != "order_count"}]}, "missing_feature"),
        ({"records": [{**GOOD, "total_spend": "250"}]}, "non_numeric"),
        ({"records": [{**GOOD, "total_spend": None}]}, "non_numeric"),
        ({"records": [{**GOOD, "order_count": True}]}, "non_numeric"),
        ({"records": [{**GOOD, "tenure_days": float("nan")}]}, "non_numeric"),
        ({"records": [GOOD] * (service.MAX_RECORDS + 1)}, "too_many_records"),
    ],
)
def test_parse_records_rejects_bad_input_with_a_stable_code(payload, code):
    with pytest.raises(service.ValidationError) as err:
        service.parse_records(payload)
    assert err.value.code == code
    assert err.value.to_dict() == {"error": err.value.message, "code": code}


def test_missing_feature_message_names_the_record_and_the_feature():
    with pytest.raises(service.ValidationError, match=r"records\[1\] lacks days_since_last_order"):
        service.parse_records({"records": [GOOD, {k: v for k, v in GOOD.items() if k != "days_since_last_order"}]})


# --- recommend_action ----------------------------------------------------------------

@pytest.mark.parametrize(
    ("probability", "action"),
    [
        (0.0, "none"),
        (0.2999, "none"),
        (0.3, "nurture"),
        (0.5999, "nurture"),
        (0.6, "retention-offer"),
        (1.0, "retention-offer"),
        (1, "retention-offer"),
    ],
)
def test_recommend_action_thresholds(probability, action):
    assert service.recommend_action(probability) == action


@pytest.mark.parametrize("probability", [-0.01, 1.01, float("nan"), "0.5", None, True])
def test_recommend_action_rejects_what_is_not_a_probability(probability):
    with pytest.raises(ValueError):
        service.recommend_action(probability)


def test_churn_scores_takes_the_positive_class_of_probability_rows():
    assert service.churn_scores([[0.9, 0.1], [0.2, 0.8]]) == [0.1, 0.8]
    assert service.churn_scores([0.25, 1]) == [0.25, 1.0]


# --- the HTTP server, without a model ------------------------------------------------

@pytest.fixture()
def server():
    state = app.load_state({"UD_VERSION": "abc123", "UD_ENV": "test"})  # no MODEL_URI
    srv = app.make_server(state, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def request(url: str, body: bytes | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_without_a_model_is_ok_and_reports_model_none(server):
    status, body = request(server + "/health")
    assert status == 200
    assert body == {
        "status": "ok",
        "version": "abc123",
        "env": "test",
        "model": "none",
        "model_uri": None,
        "model_version": None,
    }
    assert "mlflow" not in sys.modules


def test_predict_validates_input_and_needs_a_model(server):
    status, body = request(server + "/predict", b"not json")
    assert (status, body["code"]) == (400, "invalid_json")
    status, body = request(server + "/predict", json.dumps({"records": [{"tenure_days": 1}]}).encode())
    assert (status, body["code"]) == (400, "missing_feature")
    status, body = request(server + "/predict", json.dumps({"records": [GOOD]}).encode())
    assert (status, body["code"]) == (503, "no_model")
    status, body = request(server + "/nowhere")
    assert status == 404


def test_health_is_503_when_the_model_failed_to_load():
    state = app.State(version="abc123", env="test", model_uri="models:/churn_model@staging",
                      load_error="could not load models:/churn_model@staging: boom")
    status, body = state.health()
    assert status == 503
    assert body["status"] == "error" and body["model"] == "error" and "boom" in body["error"]
