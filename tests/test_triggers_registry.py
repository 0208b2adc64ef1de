"""The MLflow registry sensor on a real SQLite-backed registry: versions registered and aliases
set with the MLflow client as a user would, evaluated through Dagster, runs executed on a
real instance, no duplicate after a restart; and the webhook receiver, fed by MLflow itself."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from unified_delivery.home import Home
from unified_delivery.triggers.base import collect_notes
from unified_delivery.triggers.registry import ModelWatch, registry_sensor
from unified_delivery.triggers.tick import tick
from unified_delivery.triggers.webhook import make_server, verify

from tests.staging_job import promotion_of, staging_defs


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """One registry for the module (creating MLflow's schema takes seconds); tests use their own model names."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return uri, client


def register(client, name: str, *, tags: dict | None = None) -> str:
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    return str(client.create_model_version(name, source=f"file:///models/{name}", tags=tags).version)


def make_defs(uri: str, models: list[str], known=lambda unit, version: False) -> dg.Definitions:
    from mlflow import MlflowClient

    watches = [ModelWatch(m, m, promotion_of(m)) for m in models]
    return staging_defs(models, lambda jobs: [
        registry_sensor("registry", lambda: watches, lambda: MlflowClient(tracking_uri=uri, registry_uri=uri), jobs,
                        known=known)])


@pytest.fixture
def instance(ud_home: Path) -> dg.DagsterInstance:
    from unified_delivery.runner import instance as open_instance

    return open_instance(Home(ud_home))


def evaluate(defs: dg.Definitions, instance: dg.DagsterInstance):
    sensor = next(s for s in defs.sensors if s.name == "registry")
    with collect_notes() as notes, dg.build_sensor_context(instance=instance, definitions=defs, sensor_name="registry") as ctx:
        data = sensor.evaluate_tick(ctx)
    return [r.run_key for r in data.run_requests], notes


def test_new_versions_and_outside_aliases_request_candidates_once(registry, ud_home, instance):
    uri, client = registry
    register(client, "churn", tags={"ud.unit": "churn"})  # the platform's own training run: not requested
    defs = make_defs(uri, ["churn", "fraud"])
    v_fraud = register(client, "fraud")
    report = tick(defs, Home(ud_home))
    assert [(r["run_key"], r["outcome"]) for r in report["sensors"][0]["requested"]] == [(f"mlflow:fraud:{v_fraud}", "success")]
    run = instance.get_run_by_id(report["sensors"][0]["requested"][0]["run_id"])
    assert run.run_config["ops"]["fraud__candidate"]["config"]["ref"] == v_fraud

    # Two versions since the last tick: the newest is built, the other noted as skipped.
    skipped, newest = register(client, "churn"), register(client, "churn")
    keys, notes = evaluate(defs, instance)
    assert keys == [f"mlflow:churn:{newest}"]
    assert next(n for n in notes if n["event"] == "skipped")["skipped"] == [skipped]

    # An ML engineer moves an alias in a notebook: a candidate run for that version.
    client.set_registered_model_alias("churn", "champion", skipped)
    # The platform's own target moving `staging` (it records the move in its history tag) is not a change from outside.
    client.set_registered_model_alias("churn", "staging", newest)
    client.set_registered_model_tag("churn", "ud.staging.history", json.dumps([{"version": newest, "action": "deploy"}]))
    keys, _ = evaluate(defs, instance)
    assert keys == [f"mlflow:churn:{skipped}@champion"]

    # Restart: a fresh instance object on the same storage, a tick that executes: nothing twice.
    tick(defs, Home(ud_home))
    restarted = dg.DagsterInstance.from_config(str(ud_home / "dagster"))
    assert evaluate(defs, restarted)[0] == []
    assert tick(defs, Home(ud_home))["sensors"][0]["requested"] == []


def test_a_version_the_platform_already_built_is_not_requested(registry, instance):
    uri, client = registry
    version = register(client, "built")
    defs = make_defs(uri, ["built"], known=lambda unit, v: (unit, v) == ("built", version))
    assert evaluate(defs, instance)[0] == []


def test_unknown_model_and_registry_down_are_skipped_with_a_clear_line(registry, instance):
    uri, client = registry
    version = register(client, "spam")
    keys, notes = evaluate(make_defs(uri, ["spam", "no_such_model"]), instance)
    assert keys == [f"mlflow:spam:{version}"]
    assert any(n["event"] == "no-model" and "no_such_model" in n["message"] for n in notes)

    with socket.socket() as s:  # a port nothing listens on: the registry is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    keys, notes = evaluate(make_defs(f"http://127.0.0.1:{port}", ["spam"]), instance)
    assert keys == [] and [n["event"] for n in notes] == ["registry-down"]


def test_webhook_receiver_verifies_mlflow_signatures(registry, monkeypatch):
    from mlflow.entities.webhook import WebhookAction, WebhookEntity, WebhookEvent
    from mlflow.webhooks.delivery import test_webhook as send_test_delivery  # what an MLflow server runs to test a webhook

    uri, client = registry
    events: list[dict] = []
    done = threading.Event()
    server = make_server("127.0.0.1", 0, "s3cret", lambda e: (events.append(e), done.set()), log=lambda _: None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        monkeypatch.setenv("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")  # the receiver is on loopback, plain HTTP
        monkeypatch.setenv("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")
        event = WebhookEvent(WebhookEntity.MODEL_VERSION, WebhookAction.CREATED)
        good = client.create_webhook(name="ud", url=url, events=[event], secret="s3cret")
        result = send_test_delivery(client.get_webhook(good.webhook_id))  # MLflow signs and sends a real delivery
        assert result.success, result
        assert done.wait(10) and events[0]["entity"] == "model_version"

        forged = client.create_webhook(name="forged", url=url, events=[event], secret="not-the-secret")
        result = send_test_delivery(client.get_webhook(forged.webhook_id))
        assert not result.success and result.response_status == 401

        unsigned = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(unsigned, timeout=10)
        assert err.value.code == 401
    finally:
        server.shutdown()
        server.server_close()
    assert len(events) == 1


def test_an_old_delivery_is_refused_as_a_replay():
    from unified_delivery.triggers.webhook import signature

    headers = {"X-MLflow-Delivery-Id": "d1", "X-MLflow-Timestamp": "1000", "X-MLflow-Signature": signature("k", "d1", "1000", "{}")}
    assert verify("k", headers, "{}", now=1000) is None
    assert "replay" in verify("k", headers, "{}", now=1000 + 3600)
    assert "does not match" in verify("k", headers, '{"x":1}', now=1000)


def test_a_registered_model_no_unit_declares_is_named_once(registry, instance):
    from mlflow import MlflowClient

    from unified_delivery.triggers.registry import Undeclared

    uri, client = registry
    register(client, "stray_model")  # registered with the plain client; no unit declares it
    recorded: list[str] = []
    declared = {"churn", "fraud", "built", "spam"}
    watches = [ModelWatch("spam", "spam", promotion_of("spam"))]
    defs = staging_defs(["spam"], lambda jobs: [
        registry_sensor("registry", lambda: watches, lambda: MlflowClient(tracking_uri=uri, registry_uri=uri),
                        jobs, undeclared=Undeclared(lambda: declared, recorded.append))])
    _, notes = evaluate(defs, instance)
    named = [n["model"] for n in notes if n["event"] == "undeclared"]
    assert "stray_model" in named and not set(named) & declared
    assert recorded == named
    _, again = evaluate(defs, instance)  # the sensor's state keeps what it named: not again
    assert not [n for n in again if n["event"] == "undeclared"] and recorded == named


def test_an_undeclared_model_is_recorded_in_the_ledger_once(tmp_path, monkeypatch):
    import unified_delivery as ud
    from unified_delivery.ledger import LedgerResource
    from unified_delivery.triggers.registry import undeclared_models

    monkeypatch.setenv("UD_HOME", str(tmp_path / "home"))
    (tmp_path / "repo").mkdir()
    platform = ud.Platform([ud.AppUnit(name="api", team="web", repository=str(tmp_path / "repo"))],
                           ledger=LedgerResource(url=f"sqlite:///{tmp_path / 'ledger.db'}"))
    undeclared = undeclared_models(platform, "service:sensors")
    assert undeclared.declared() == set()
    for _ in range(2):  # a sensor whose state was lost names it again: the ledger keeps one
        undeclared.record("stray_model")
    (entry,) = platform.ledger.ledger().entries(action="model-undeclared")
    assert entry.payload["model"] == "stray_model" and entry.principal == "service:sensors"
