"""redaction.py: the values of known secrets and the shapes of secrets, out of what is stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unified_delivery.home import Home
from unified_delivery.redaction import REDACTED, known_secret_values, redact_text

SECRET = "hunter2-very-secret"


def test_known_values_are_secret_named_variables_and_the_signing_keys(tmp_path: Path, ud_home: Path):
    ud_home.mkdir()
    (ud_home / "signing.key").write_text("current-home-key-0123456789\n")
    other = tmp_path / "other-home"
    other.mkdir()
    (other / "signing.key").write_text("other-home-key-0123456789")
    env = {"DB_PASSWORD": SECRET, "GITHUB_TOKEN": "gho-not-a-real-token", "SHORT_SECRET": "abc", "PATH": "/usr/bin"}
    values = known_secret_values(env, home=Home(other))
    assert set(values) == {SECRET, "gho-not-a-real-token", "current-home-key-0123456789", "other-home-key-0123456789"}
    assert values == sorted(values, key=len, reverse=True)
    assert "other-home-key-0123456789" not in known_secret_values(env)  # only the homes asked about


@pytest.mark.parametrize("dump", [
    json.dumps({"DB_PASSWORD": SECRET}),  # print(json.dumps(dict(os.environ)))
    repr({"DB_PASSWORD": SECRET}),  # print(os.environ)
    f"PATH=/usr/bin\0DB_PASSWORD={SECRET}\0LANG=C",  # /proc/<pid>/environ
    f"export DB_PASSWORD='{SECRET}'",
])
def test_environment_dumps_lose_the_secret_by_name_alone(dump: str):
    assert SECRET not in redact_text(dump, [])  # no known values: the name is enough


def test_a_known_value_goes_wherever_it_is():
    assert redact_text(f"connected with {SECRET} as the key", [SECRET]) == f"connected with {REDACTED} as the key"
