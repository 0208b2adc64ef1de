"""@@name@@'s own tests: the `tests` gate runs them on every candidate."""

import json
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

import pytest

import app


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), app.Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_health_reports_the_version(server, monkeypatch):
    monkeypatch.setenv("UD_VERSION", "abc123")
    with urllib.request.urlopen(f"{server}/health") as resp:
        assert resp.status == 200
        assert json.load(resp) == {"status": "ok", "version": "abc123", "env": None}


def test_unknown_route_is_404(server):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{server}/nope")
    assert err.value.code == 404


def test_predict_without_a_model_is_503(server):
    req = urllib.request.Request(f"{server}/predict", data=b'{"records": []}', method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 503
