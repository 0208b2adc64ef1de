"""The security gate on real source trees: bandit in a child process, detect-secrets in
process; a clean tree passes, a risky call or a committed secret refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unified_delivery.gates import GateContext, build_gate
from unified_delivery.gates.security import mask
from unified_delivery.home import Home
from unified_delivery.targets.base import Artifact
from unified_delivery.targets.local_release import LocalReleaseTarget
from unified_delivery.kinds.app.unit import AppUnit
from unified_delivery.units import GateSpec

CLEAN = '''"""A small service."""
import json


def handle(body: str) -> str:
    return json.dumps({"echo": json.loads(body)})
'''
SHELL = '''import subprocess


def run(user_input):
    return subprocess.call("ls " + user_input, shell=True)
'''
AWS_KEY = "AKIA" + "Z7QW3RT5YU8IOPLK"  # split so this test file is no committed secret itself
PASSWORD = "Sup3rS3cret" + "Passw0rd!"
PRIVATE_KEY = "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n-----END RSA " + "PRIVATE KEY-----\n"


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "src"
    for name, text in {"app.py": CLEAN, **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def scan(tmp_path: Path, root: Path, **settings):
    unit = AppUnit(name="web", team="web", repository=str(tmp_path), gates=[GateSpec(type="security", settings=settings)])
    artifact = Artifact(unit="web", kind="app", version="c0ffee" * 6 + "0000", location=str(root))
    ctx = GateContext(unit=unit, stage="candidate", guards="staging", version=artifact.version, artifact=artifact,
                      target=LocalReleaseTarget(home=str(tmp_path / "home")), home=Home(tmp_path / "home"),
                      log=lambda _: None)
    return build_gate(unit.gates[0], unit).evaluate(ctx)


def test_clean_tree_passes(tmp_path: Path):
    result = scan(tmp_path, tree(tmp_path, {"tests/test_app.py": "from app import handle\n\n\ndef test_it():\n"
                                            "    assert handle('1') == '{\"echo\": 1}'\n"}))
    assert result.passed, result.message
    assert result.code == "UD-GATE-SECURITY-OK"
    assert result.metadata["files_scanned"] == 1  # tests are not bandit's business
    assert result.metadata["findings"] == [] and result.metadata["secrets"] == []


def test_shell_injection_refuses_with_file_and_line(tmp_path: Path):
    result = scan(tmp_path, tree(tmp_path, {"tools/run.py": SHELL}))
    assert not result.passed
    assert result.code == "UD-GATE-SECURITY-FINDINGS"
    finding = next(f for f in result.metadata["findings"] if f["test"] == "B602")
    assert finding["file"] == "tools/run.py" and finding["line"] == 5 and finding["severity"] == "high"
    assert "tools/run.py:5" in result.message


def test_severity_threshold_and_excludes(tmp_path: Path):
    # B404 (importing subprocess) is a low-severity finding: below the default threshold.
    root = tree(tmp_path, {"util.py": "import subprocess\n", "tests/test_x.py": SHELL})
    assert scan(tmp_path, root).passed
    low = scan(tmp_path, root, severity="low")
    assert not low.passed and {f["test"] for f in low.metadata["findings"]} == {"B404"}
    included = scan(tmp_path, root, exclude=[])
    assert not included.passed and any(f["file"] == "tests/test_x.py" for f in included.metadata["findings"])


def test_unparsable_code_is_not_a_pass(tmp_path: Path):
    result = scan(tmp_path, tree(tmp_path, {"broken.py": "def f(:\n"}))
    assert not result.passed
    assert [f["test"] for f in result.metadata["findings"]] == ["parse-error"]


@pytest.mark.parametrize("name, text, kind", [
    ("settings.py", f'AWS_ACCESS_KEY_ID = "{AWS_KEY}"\n', "AWS Access Key"),
    ("deploy/id_rsa", PRIVATE_KEY, "Private Key"),
    ("tests/conftest.py", f'password = "{PASSWORD}"\n', "Secret Keyword"),
])
def test_committed_secret_refuses_and_is_never_echoed(tmp_path: Path, name: str, text: str, kind: str):
    result = scan(tmp_path, tree(tmp_path, {name: text}))
    assert not result.passed
    assert result.code == "UD-GATE-SECURITY-SECRETS"
    secret = next(s for s in result.metadata["secrets"] if s["kind"] == kind)
    assert secret["file"] == name and secret["line"] == 1
    everything = json.dumps(result.to_dict())
    for value in (AWS_KEY, "MIIEowIBAAKCAQEAu1SU1Lf", PASSWORD):
        assert value not in everything


def test_allowlisted_line_passes(tmp_path: Path):
    root = tree(tmp_path, {"settings.py": f'EXAMPLE_KEY = "{AWS_KEY}"  # pragma: allowlist secret\n'})
    assert scan(tmp_path, root).passed


def test_mask_keeps_a_prefix_of_long_values_only():
    assert mask(AWS_KEY) == "AKIA******** (20 chars)"
    assert mask("hunter2") == "******** (7 chars)"


def _baseline(root: Path, **mark) -> None:
    """What `detect-secrets scan > .secrets.baseline` writes, made with detect-secrets itself."""
    from detect_secrets.core.secrets_collection import SecretsCollection
    from detect_secrets.settings import default_settings

    found = SecretsCollection(root=str(root))
    with default_settings():
        found.scan_file("settings.py")
    results = found.json()
    for entries in results.values():
        for entry in entries:
            entry.update(mark)
    (root / ".secrets.baseline").write_text(json.dumps({"version": "1.5.0", "plugins_used": [],
                                                        "filters_used": [], "results": results}))


def test_a_secret_the_baseline_knows_passes_and_a_new_one_refuses(tmp_path: Path):
    root = tree(tmp_path, {"settings.py": f'AWS_ACCESS_KEY_ID = "{AWS_KEY}"\n'})
    _baseline(root)
    known = scan(tmp_path, root)
    assert known.passed, known.message
    assert known.metadata["secrets_in_baseline"] == 1
    (root / "deploy.py").write_text(f'password = "{PASSWORD}"\n')  # a new one beside it
    new = scan(tmp_path, root)
    assert not new.passed and [s["file"] for s in new.metadata["secrets"]] == ["deploy.py"]


def test_a_baseline_entry_audited_as_real_still_refuses(tmp_path: Path):
    root = tree(tmp_path, {"settings.py": f'AWS_ACCESS_KEY_ID = "{AWS_KEY}"\n'})
    _baseline(root, is_secret=True)
    assert scan(tmp_path, root).code == "UD-GATE-SECURITY-SECRETS"


def test_an_unreadable_baseline_is_an_error_not_a_pass(tmp_path: Path):
    from unified_delivery.errors import UDError

    root = tree(tmp_path, {".secrets.baseline": "{not json"})
    with pytest.raises(UDError) as err:
        scan(tmp_path, root)
    assert err.value.code == "UD-GATE-SECURITY-ERROR" and ".secrets.baseline" in err.value.message


@pytest.mark.parametrize("config", [
    ("pyproject.toml", '[project]\nname = "x"\n\n[tool.bandit]\nskips = ["B602"]\n'),
    (".bandit", "[bandit]\nskips = B602\n"),
    ("bandit.yaml", "skips: ['B602']\n"),
])
def test_the_repositorys_bandit_configuration_and_nosec_are_honoured(tmp_path: Path, config):
    root = tree(tmp_path, {"tools/run.py": SHELL})
    assert not scan(tmp_path, root).passed
    (root / config[0]).write_text(config[1])
    assert scan(tmp_path, root).passed, config
    (root / config[0]).unlink()
    (root / "tools/run.py").write_text(SHELL.replace("shell=True)", "shell=True)  # nosec B602"))
    assert scan(tmp_path, root).passed
