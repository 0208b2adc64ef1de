"""HTTP service that serves churn predictions of an MLflow model.

    python app.py --port 8000

Environment:
    PORT                  port when --port is not given (default 8000)
    HOST                  interface when --host is not given (default 127.0.0.1)
    MODEL_URI             e.g. models:/churn_model@staging; unset: run without a model
    MLFLOW_TRACKING_URI   the registry MODEL_URI refers to
    UD_VERSION            the commit being served (reported by /health)
    UD_ENV                the environment (reported by /health)
    UD_PREDICTION_LOG     a file to append one JSON line per answered /predict to (its
                          records and predictions, for the platform's drift monitor); unset: none
    SHADOW_MODEL_URI      a challenger scored in shadow (e.g. models:/churn_model@staging): on
                          a sample of requests, after the answer is sent (answers unaffected),
                          both predictions logged for the platform's shadow gate; unset: none
    SHADOW_SAMPLE         the share of requests scored in shadow (default 0.1)
    MODEL_REFRESH_S       every so many seconds, a URI naming an alias (@staging) is resolved
                          again and a version it moved to is loaded (default 30; 0: never), so
                          a promotion or a rollback of the model (a drift monitor's too) reaches
                          a running app without a restart

Endpoints:
    GET  /health    200 {"status": "ok", ...}; 503 when the model failed to load
    POST /predict   {"records": [{feature: number, ...}]} ->
                    {"predictions": [p, ...], "actions": [...], "model_version": ...}

MLflow and pandas are imported only when a model is loaded, so this module (and the
test suite) needs the standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import service

MAX_BODY_BYTES = 5 * 1024 * 1024
SHADOW_QUEUE = 1000  # sampled requests waiting for the shadow worker, at most


@dataclass
class State:
    """What the service serves; shared by all request threads (read-only after start)."""

    version: str | None = None
    env: str | None = None
    model_uri: str | None = None
    model_version: str | None = None
    predict: Callable[[list[dict[str, float]]], list[float]] | None = None
    load_error: str | None = None
    prediction_log: str | None = None
    shadow_uri: str | None = None
    shadow_sample: float = 0.1
    shadow_predict: Callable[[list[dict[str, float]]], list[float]] | None = None
    shadow_version: str | None = None
    shadow_error: str | None = None
    refresh_s: float = 0.0
    shadow_dropped: int = 0  # sampled requests the shadow worker had no room for
    extra: dict[str, Any] = field(default_factory=dict)
    log_lock: threading.Lock = field(default_factory=threading.Lock)
    swap_lock: threading.Lock = field(default_factory=threading.Lock)
    shadow_queue: "queue.Queue[tuple] | None" = None

    def submit_shadow(self, records: list[dict[str, float]], scores: list[float], version: str | None,
                      shadow_predict: Callable[[list[dict[str, float]]], list[float]],
                      shadow_version: str | None) -> None:
        """Score `records` with the shadow on the shadow worker, after the answer: neither this
        request nor the next one on its connection waits for it. A full queue drops the sample."""
        with self.swap_lock:
            if self.shadow_queue is None:
                self.shadow_queue = queue.Queue(maxsize=SHADOW_QUEUE)
                threading.Thread(target=self._shadow_worker, daemon=True).start()
        try:
            self.shadow_queue.put_nowait((records, scores, version, shadow_predict, shadow_version))
        except queue.Full:
            self.shadow_dropped += 1

    def _shadow_worker(self) -> None:
        assert self.shadow_queue is not None
        while True:
            records, scores, version, shadow_predict, shadow_version = self.shadow_queue.get()
            shadow: dict[str, Any] = {"model": _model_name(self.shadow_uri), "model_version": shadow_version}
            started = time.perf_counter()
            try:
                shadow["predictions"] = shadow_predict(records)
            except Exception as exc:  # the challenger's failure is evidence, never the client's
                shadow["error"] = f"{type(exc).__name__}: {exc}"
            shadow["ms"] = round((time.perf_counter() - started) * 1000, 3)
            self.log_predictions(records, scores, version, shadow)

    @property
    def model_name(self) -> str | None:
        """The registered model MODEL_URI names (models:/NAME@alias or models:/NAME/3)."""
        return _model_name(self.model_uri)

    def models(self) -> tuple[Any, str | None, Any, str | None]:
        """The model and the shadow as one consistent snapshot (a refresh may swap them)."""
        with self.swap_lock:
            return self.predict, self.model_version, self.shadow_predict, self.shadow_version

    def log_predictions(self, records: list[dict[str, float]], scores: list[float], version: str | None,
                        shadow: dict[str, Any] | None = None) -> None:
        """One JSON line per answered request, for the platform's monitor and shadow gate (best
        effort: a log that cannot be written never fails the request)."""
        if not self.prediction_log:
            return
        entry = {
            "ts": time.time(),
            "model": self.model_name,
            "model_version": version,
            "records": records,
            "predictions": scores,
        }
        if shadow:
            entry["shadow"] = shadow
        line = json.dumps(entry) + "\n"
        try:
            with self.log_lock, open(self.prediction_log, "a", encoding="utf-8") as out:
                out.write(line)
        except OSError as exc:
            print(f"could not log predictions to {self.prediction_log}: {exc}", file=sys.stderr, flush=True)

    @property
    def model_status(self) -> str:
        if self.load_error:
            return "error"
        return "loaded" if self.predict else "none"

    def health(self) -> tuple[int, dict[str, Any]]:
        body = {
            "status": "error" if self.load_error else "ok",
            "version": self.version,
            "env": self.env,
            "model": self.model_status,
            "model_uri": self.model_uri,
            "model_version": self.model_version,
        }
        if self.shadow_uri:
            body.update(shadow_model_uri=self.shadow_uri, shadow_model_version=self.shadow_version,
                        shadow_sample=self.shadow_sample, shadow_dropped=self.shadow_dropped)
            if self.shadow_error:
                body["shadow_error"] = self.shadow_error  # the shadow is never the answer: still 200
        if self.load_error:
            body["error"] = self.load_error
            return 503, body
        return 200, body


def _model_name(uri: str | None) -> str | None:
    if not uri or not uri.startswith("models:/"):
        return None
    ref = uri[len("models:/"):]
    return ref.rsplit("@", 1)[0] if "@" in ref else ref.rpartition("/")[0] or ref


def _alias_version(uri: str) -> str | None:
    """The version an alias URI (models:/NAME@alias) names now; None for any other URI."""
    ref = uri[len("models:/"):] if uri.startswith("models:/") else ""
    if "@" not in ref:
        return None
    from mlflow import MlflowClient

    name, alias = ref.rsplit("@", 1)
    return str(MlflowClient().get_model_version_by_alias(name, alias).version)


def refresh(state: State) -> None:
    """Load the version an alias moved to (MODEL_REFRESH_S), for the model and the shadow."""
    for kind, uri in (("model", state.model_uri), ("shadow", state.shadow_uri)):
        if not uri:
            continue
        try:
            now = _alias_version(uri)
            loaded = state.model_version if kind == "model" else state.shadow_version
            if now is None or now == loaded:
                continue
            predict, version = load_model(uri)
        except Exception as exc:  # the registry away for a moment: keep serving what is loaded
            print(f"could not refresh {uri}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            continue
        with state.swap_lock:
            if kind == "model":
                state.predict, state.model_version, state.load_error = predict, version, None
            else:
                state.shadow_predict, state.shadow_version, state.shadow_error = predict, version, None
        print(f"{kind} {uri} now version {version}", file=sys.stderr, flush=True)


def refresh_forever(state: State) -> None:
    while True:
        time.sleep(state.refresh_s)
        refresh(state)


DEFAULT_REFRESH_S = 30.0  # one registry read per alias per half minute


def load_state(environ: dict[str, str] | None = None) -> State:
    """Build the state from the environment, loading MODEL_URI if it is set."""
    environ = dict(os.environ if environ is None else environ)
    state = State(
        version=environ.get("UD_VERSION") or None,
        env=environ.get("UD_ENV") or None,
        model_uri=environ.get("MODEL_URI") or None,
        prediction_log=environ.get("UD_PREDICTION_LOG") or None,
        shadow_uri=environ.get("SHADOW_MODEL_URI") or None,
        shadow_sample=min(1.0, max(0.0, float(environ.get("SHADOW_SAMPLE") or 0.1))),
        refresh_s=max(0.0, float(environ.get("MODEL_REFRESH_S") or DEFAULT_REFRESH_S)),
    )
    if state.model_uri:
        try:
            state.predict, state.model_version = load_model(state.model_uri)
        except Exception as exc:  # reported by /health as 503, the process keeps running
            state.load_error = f"could not load {state.model_uri}: {type(exc).__name__}: {exc}"
            print(state.load_error, file=sys.stderr, flush=True)
    if state.shadow_uri:
        try:
            state.shadow_predict, state.shadow_version = load_model(state.shadow_uri)
        except Exception as exc:  # no shadow: the answers are the model's anyway
            state.shadow_error = f"could not load {state.shadow_uri}: {type(exc).__name__}: {exc}"
            print(state.shadow_error, file=sys.stderr, flush=True)
    return state


def load_model(model_uri: str) -> tuple[Callable[[list[dict[str, float]]], list[float]], str | None]:
    """Load an MLflow model; return a records -> churn probabilities function and its version."""
    import mlflow.pyfunc  # lazy: heavy, and not needed without a model
    import pandas as pd

    model = mlflow.pyfunc.load_model(model_uri)
    version = _model_version(model, model_uri)

    # Prefer probabilities: a pyfunc over a classifier predicts labels by default.
    raw = None
    try:
        raw = model.get_raw_model()
    except Exception:
        raw = None
    columns = list(service.FEATURES)

    if raw is not None and hasattr(raw, "predict_proba"):
        def predict(records: list[dict[str, float]]) -> list[float]:
            frame = pd.DataFrame.from_records(records, columns=columns)
            return service.churn_scores(raw.predict_proba(frame))
    else:
        dtypes = _schema_dtypes(model)

        def predict(records: list[dict[str, float]]) -> list[float]:
            frame = pd.DataFrame.from_records(records, columns=columns)
            for name, dtype in dtypes.items():
                if name in frame:
                    frame[name] = frame[name].astype(dtype)
            return service.churn_scores(model.predict(frame))

    return predict, version


def _model_version(model: Any, model_uri: str) -> str | None:
    """The registry version behind the model: from its metadata, else from the registry."""
    metadata = getattr(model, "metadata", None)
    for attr in ("registered_model_version", "model_version"):
        value = getattr(metadata, attr, None)
        if value is not None:
            return str(value)
    if not model_uri.startswith("models:/"):
        return None
    ref = model_uri[len("models:/"):]
    try:
        if "@" in ref:
            from mlflow import MlflowClient

            name, alias = ref.rsplit("@", 1)
            return str(MlflowClient().get_model_version_by_alias(name, alias).version)
        name, _, version = ref.rpartition("/")
        if name and version.isdigit():
            return version
    except Exception:
        return None
    return None


def _schema_dtypes(model: Any) -> dict[str, str]:
    """Column dtypes from the model's input signature, so schema enforcement accepts floats."""
    mapping = {"long": "int64", "integer": "int32", "double": "float64", "float": "float32"}
    try:
        schema = model.metadata.get_input_schema()
        types = schema.input_types_dict() if schema is not None else {}
    except Exception:
        return {}
    dtypes = {}
    for name, dtype in types.items():
        key = getattr(dtype, "name", str(dtype))
        if key in mapping:
            dtypes[name] = mapping[key]
    return dtypes


class Handler(BaseHTTPRequestHandler):
    server_version = "recommendation-api/1"
    protocol_version = "HTTP/1.1"
    state: State  # set on the subclass made by make_server

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path == "/health":
            status, body = self.state.health()
            self._send(status, body)
        elif path == "/predict":
            self._send(405, {"error": "use POST /predict", "code": "method_not_allowed"}, allow="POST")
        else:
            self._send(404, {"error": f"no route {path}; try GET /health or POST /predict", "code": "not_found"})

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path != "/predict":
            self._drain()
            self._send(404, {"error": f"no route POST {path}", "code": "not_found"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._send(400, {"error": "invalid Content-Length", "code": "invalid_request"}, close=True)
            return
        if length > MAX_BODY_BYTES:
            self._send(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes", "code": "too_large"}, close=True)
            return
        body = self.rfile.read(length)
        try:
            records = service.parse_records(service.decode_json(body))
        except service.ValidationError as exc:
            self._send(400, exc.to_dict())
            return
        state = self.state
        predict, version, shadow_predict, shadow_version = state.models()
        if predict is None:
            why = state.load_error or "this instance runs without a model (MODEL_URI is not set)"
            self._send(503, {"error": why, "code": "no_model"})
            return
        try:
            scores = predict(records)
        except Exception as exc:
            self.log_error("prediction failed: %s: %s", type(exc).__name__, exc)
            self._send(500, {"error": f"prediction failed: {type(exc).__name__}: {exc}", "code": "prediction_failed"})
            return
        shadowed = shadow_predict is not None and random.random() < state.shadow_sample
        if not shadowed:
            state.log_predictions(records, scores, version)
        self._send(200, {
            "predictions": scores,
            "actions": [service.recommend_action(min(1.0, max(0.0, p))) for p in scores],
            "model_version": version,
        })
        if shadowed:  # after the answer: the client waits for the model only
            assert shadow_predict is not None
            state.submit_shadow(records, scores, version, shadow_predict, shadow_version)

    def _drain(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return
        if 0 < length <= MAX_BODY_BYTES:
            self.rfile.read(length)

    def _send(self, status: int, body: dict[str, Any], close: bool = False, allow: str | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if allow:
            self.send_header("Allow", allow)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def make_server(state: State, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server bound to host:port (0: any free port) serving `state`."""
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Churn recommendation API")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    args = parser.parse_args(argv)

    state = load_state()  # before binding: the port answers only once the model is ready
    server = make_server(state, args.host, args.port)
    if state.refresh_s:
        threading.Thread(target=refresh_forever, args=(state,), daemon=True).start()

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    print(
        f"serving on http://{host}:{port} version={state.version} env={state.env} "
        f"model={state.model_status} model_uri={state.model_uri} model_version={state.model_version}",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
