"""The security gate and what a repository already keeps for its tools (a detect-secrets
baseline made by `detect-secrets scan`, bandit's configuration, `# nosec`), and scoped
overrides: one finding (file and rule) let through for a period, in every version, each use
in the ledger. A real Git repository, real bandit and detect-secrets, promotions as Dagster
runs in this process; apps deploy through the file-backed target of test_triggers_promotion."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.test_triggers_promotion import FileTarget, git
from unified_delivery import AppUnit, Platform
from unified_delivery.errors import GateRefused, UDError
from unified_delivery.governance.policy import Governance, PolicyFile, Principal
from unified_delivery.home import Home
from unified_delivery.ledger import LedgerResource
from unified_delivery.units import GateSpec

DETECT_SECRETS = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "detect-secrets")
OLIVIA, DANA = "human:olivia", "human:dana"

SETTINGS = 'SECRET_KEY = "dev"\nDB_PASSWORD = "hunter2-for-local-tests"\n'  # the app's dev defaults
RUNNER = "import subprocess\n\n\ndef run(cmd):\n    return subprocess.run(cmd, shell=True)  # nosec B602\n"
HELPER = "import subprocess\n\n\ndef helper(cmd):\n    return subprocess.call(cmd, shell=True)\n"


@pytest.fixture
def app(tmp_path: Path, ud_home: Path):
    """A bare remote and a clone; a platform whose app unit has the security gate."""
    remote, work = tmp_path / "shop.git", tmp_path / "shop"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    git("clone", "--quiet", str(remote), str(work))
    git("checkout", "--quiet", "-b", "main", cwd=work)
    unit = AppUnit(name="shop", team="web", repository=str(remote),
                   gates=[GateSpec(type="security", settings={"severity": "medium"})])
    governance = Governance(PolicyFile(principals={
        OLIVIA: Principal(roles={"*": ["deploy", "override"]}),
        DANA: Principal(roles={"staging": ["deploy"]}),
    }))
    platform = Platform([unit], targets={"app": FileTarget(root=str(tmp_path / "deployments"))},
                        ledger=LedgerResource(url=f"sqlite:///{ud_home / 'ledger.db'}"), governance=governance)
    return platform, platform.definitions(), work


def push(work: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("-c", "user.name=Dana", "-c", "user.email=dana@example.com", "commit", "--quiet", "-m", message, cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def promote(platform, defs, principal: str = DANA):
    from unified_delivery import service

    return service.promote(platform, defs, "shop", "staging", reason="test", principal=principal, home=Home.current())


def refused_by(outcome) -> tuple[str, str]:
    """The code of the refusal and the failed gate's own code, message included."""
    assert isinstance(outcome.error, GateRefused), outcome.error
    (check,) = outcome.failed_checks
    return check["code"], check["message"]


def security_result(platform, version: str) -> dict:
    entry = platform.ledger.ledger().latest(unit="shop", action="gate", predicate=lambda e: e.version == version)
    return entry.payload


def test_a_repository_with_its_own_baseline_nosec_and_bandit_config_passes(app):
    platform, defs, work = app
    # The team's suppressions, as they keep them: a baseline of the dev defaults written by
    # `detect-secrets scan`, a reviewed `# nosec`, and bandit told to skip a check project-wide.
    push(work, {"app/settings.py": SETTINGS}, "dev defaults")
    baseline = subprocess.run([DETECT_SECRETS, "scan"], cwd=work, capture_output=True, text=True, check=True).stdout
    version = push(work, {".secrets.baseline": baseline, "app/runner.py": RUNNER, "app/helper.py": HELPER,
                          "pyproject.toml": '[project]\nname = "shop"\n\n[tool.bandit]\nskips = ["B603"]\n'},
                   "the app with its suppressions")
    assert refused_by(promote(platform, defs))[0] == "UD-GATE-SECURITY-FINDINGS"  # helper.py: B602
    found = security_result(platform, version)["metadata"]
    # Not a secret: the baseline's entries are known (a secret would refuse first, with its code).
    assert [(f["file"], f["test"]) for f in found["findings"]] == [("app/helper.py", "B602")]

    # bandit's own configuration skips B602 as well: the repository passes as it is.
    version = push(work, {"pyproject.toml": '[project]\nname = "shop"\n\n[tool.bandit]\nskips = ["B602", "B603"]\n'},
                   "skip B602 in bandit's config")
    assert promote(platform, defs).error is None
    assert platform.target(platform.unit("shop"), "staging").status(platform.unit("shop"), "staging").version == version
    # A new secret the baseline does not know still refuses.
    push(work, {"app/keys.py": 'AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLA"\n'}, "a new key")
    assert refused_by(promote(platform, defs))[0] == "UD-GATE-SECURITY-SECRETS"
    assert subprocess.run(["git", "status", "--porcelain"], cwd=work, capture_output=True, text=True).stdout == ""


def test_a_scoped_override_lets_one_finding_through_across_versions_until_it_expires(app, monkeypatch):
    from unified_delivery import service
    from unified_delivery.engine import overrides

    platform, defs, work = app
    first = push(work, {"app/settings.py": SETTINGS}, "dev defaults")
    code, message = refused_by(promote(platform, defs))  # the finding as a scoped override names it
    assert code == "UD-GATE-SECURITY-SECRETS" and "app/settings.py:2 (Secret Keyword)" in message

    # Not scoped where a scope is needed, or a gate with no findings to scope: refused, recorded.
    for kwargs, code in (({}, "UD-OVERRIDE-NOT-SCOPED"), ({"file": "app/settings.py"}, "UD-OVERRIDE-NOT-SCOPED")):
        with pytest.raises(UDError) as err:
            service.override(platform, OLIVIA, "shop", "security", justification="dev", expires="1h", **kwargs)
        assert err.value.code == code
    assert platform.ledger.ledger().latest(unit="shop", action="refusal").payload["code"] == "UD-OVERRIDE-NOT-SCOPED"
    with pytest.raises(UDError) as err:  # who may not override where the gate guards
        service.override(platform, DANA, "shop", "security", file="app/settings.py", rule="Secret Keyword",
                         justification="dev", expires="1h")
    assert err.value.code == "UD-AUTH-FORBIDDEN"

    # Before the next commit exists: one finding, a period, a reason.
    made = service.override(platform, OLIVIA, "shop", "security", file="app/settings.py", rule="secret keyword",
                            justification="dev-only defaults, overridden by the environment in staging",
                            expires="1h")
    assert made["for"] == ["*"] and made["version"] is None
    assert promote(platform, defs).error is None  # the first version, refused before, now passes
    second = push(work, {"app/views.py": "def index():\n    return 'hi'\n"}, "a view")
    assert promote(platform, defs).error is None  # and the next one, by the same override
    assert platform.target(platform.unit("shop"), "staging").status(platform.unit("shop"), "staging").version == second
    result = security_result(platform, second)
    # Both findings of that rule in that file (its two lines), listed as covered, each use recorded.
    assert result["passed"] and "2 covered by scoped overrides" in result["message"]
    assert [(c["file"], c["line"], c["rule"], c["override_seq"]) for c in result["metadata"]["covered"]] == [
        ("app/settings.py", line, "Secret Keyword", made["seq"]) for line in (1, 2)]
    used = platform.ledger.ledger().entries(unit="shop", action="override-used")
    assert [(u.version, u.payload["line"], u.payload["rule"], u.principal) for u in used] == [
        (v, line, "Secret Keyword", DANA) for v in (first, second) for line in (1, 2)]

    # Another finding is not covered by it.
    push(work, {"app/more.py": 'AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLA"\n'}, "another secret")
    code, message = refused_by(promote(platform, defs))
    assert code == "UD-GATE-SECURITY-SECRETS" and "app/more.py" in message
    push(work, {"app/more.py": "import os\n\nAWS_ACCESS_KEY_ID = os.environ['AWS_ACCESS_KEY_ID']\n"}, "no secret")

    # An hour later it has expired: the finding refuses again.
    later = datetime.now(timezone.utc) + timedelta(hours=1, seconds=1)
    monkeypatch.setattr(overrides, "clock", lambda: later)
    code, message = refused_by(promote(platform, defs))
    assert code == "UD-GATE-SECURITY-SECRETS" and "app/settings.py" in message
    # Uses: two versions that passed and the one refused for more.py (its settings.py was covered).
    assert len(platform.ledger.ledger().entries(unit="shop", action="override-used")) == 6


def test_a_per_version_override_still_needs_a_version_and_a_reason(app):
    from unified_delivery import service

    platform, defs, work = app
    version = push(work, {"app/settings.py": SETTINGS}, "dev defaults")
    assert refused_by(promote(platform, defs))[0] == "UD-GATE-SECURITY-SECRETS"
    with pytest.raises(UDError) as err:
        service.override(platform, OLIVIA, "shop", "security", version, justification=" ")
    assert err.value.code == "UD-OVERRIDE-NO-JUSTIFICATION"
    with pytest.raises(UDError) as err:
        service.override(platform, OLIVIA, "shop", "security", version, file="app/settings.py",
                         rule="Secret Keyword", justification="both")
    assert err.value.code == "UD-USAGE"
    with pytest.raises(UDError) as err:
        service.override(platform, OLIVIA, "shop", "security", version, justification="late", until="2020-01-01")
    assert err.value.code == "UD-USAGE" and "in the past" in err.value.message
    day = (datetime.now(timezone.utc) + timedelta(days=30)).date().isoformat()
    made = service.override(platform, OLIVIA, "shop", "security", version, justification="reviewed", for_=[DANA],
                            until=day)
    assert made["expires_at"].startswith(day)
    assert made["version"] == version and made["file"] == ""
    assert promote(platform, defs).error is None
    assert platform.ledger.ledger().entries(unit="shop", action="override-used") == []
