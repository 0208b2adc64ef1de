"""@@name@@: a small HTTP service.

    python app.py --port 8000

GET /health answers 200 when the service is ready. @@model_doc@@
The platform sets UD_VERSION (the commit) and UD_ENV (the environment).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def health() -> dict:
    return {"status": "ok", "version": os.environ.get("UD_VERSION"), "env": os.environ.get("UD_ENV")}


def load_model():
    """The model MODEL_URI names (an MLflow `models:/` URI), or None when it is not set."""
    uri = os.environ.get("MODEL_URI")
    if not uri:
        return None
    import mlflow.pyfunc  # only when serving a model: heavy

    return mlflow.pyfunc.load_model(uri)


class Handler(BaseHTTPRequestHandler):
    model = None

    def do_GET(self) -> None:  # noqa: N802
        if self.path.split("?")[0] == "/health":
            self._send(200, health())
        else:
            self._send(404, {"error": f"no route {self.path}; try /health"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path.split("?")[0] != "/predict":
            self._send(404, {"error": f"no route POST {self.path}"})
            return
        if self.model is None:
            self._send(503, {"error": "this instance serves no model (MODEL_URI is not set)"})
            return
        import pandas as pd

        try:
            records = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))["records"]
            frame = pd.DataFrame.from_records(records).astype(float)  # JSON 1 and 1.0 are the same feature value
        except (ValueError, KeyError, TypeError) as exc:
            self._send(400, {"error": f"expected {{\"records\": [{{feature: number}}]}}: {exc}"})
            return
        try:
            predictions = self.model.predict(frame)
        except Exception as exc:  # the model's own refusal (a missing feature): the client's to fix, say why
            self._send(422, {"error": f"{type(exc).__name__}: {exc}"})
            return
        self._send(200, {"predictions": [float(p) for p in predictions]})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="@@name@@")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    Handler.model = load_model()  # before binding: the port answers only once the model is ready
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
