"""`ud init` and `ud new`: a platform repository whose own `make test` passes at once, units
that are promotable at once, and refusals that leave the repository as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def env(home: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k == "UD_CODE_SERVER_IDLE_S" or not k.startswith(("UD_", "DAGSTER_", "MLFLOW_"))}
    return {**clean, "UD_HOME": str(home), "PATH": f"{BIN}{os.pathsep}{clean.get('PATH', '')}"}


def ud(cwd: Path, home: Path, *args: str) -> tuple[int, dict]:
    proc = subprocess.run([str(BIN / "ud"), *args, "--json"], cwd=cwd, env=env(home), capture_output=True, text=True,
                          timeout=600)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {"raw": proc.stderr}


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if ".git" not in p.parts and "target" not in p.parts}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("init")
    code, out = ud(base, base / "home", "init", "p")
    assert code == 0, out
    return base / "p"


def test_init_makes_a_platform_whose_make_test_passes(platform: Path, tmp_path: Path):
    assert {"Makefile", "workspace.yaml", "assets/definitions.py", "resources/policy.yaml", "sensors/__init__.py",
            "dbt_project/dbt_project.yml", "assets/units/api/defs.yaml", "assets/scorer.py"} <= files(platform)
    log = subprocess.run(["git", "log", "--format=%s"], cwd=platform, capture_output=True, text=True).stdout
    assert log.strip() == "A new platform, made by ud init"
    proc = subprocess.run(["make", "test"], cwd=platform, env=env(tmp_path / "home"), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_init_shares_no_path_of_its_creators_machine(platform: Path):
    """The repository is for the team: the interpreter and the framework's folder that `ud init`
    ran from are in local.mk, which git ignores, never in a committed file."""
    import unified_delivery

    tracked = subprocess.run(["git", "ls-files"], cwd=platform, capture_output=True, text=True).stdout.split()
    framework = str(Path(unified_delivery.__file__).resolve().parents[1])
    for name in tracked:
        text = (platform / name).read_text(errors="replace")
        assert sys.executable not in text and f"file://{framework}" not in text, name
        assert str(platform.parent) not in text, name
    local = (platform / "local.mk").read_text()
    assert f"INIT_PYTHON := {sys.executable}" in local
    ignored = subprocess.run(["git", "check-ignore", "local.mk"], cwd=platform, capture_output=True, text=True)
    assert ignored.returncode == 0 and "local.mk" not in tracked
    assert "unified-delivery[test]" in (platform / "requirements.txt").read_text()


def test_new_model_reaches_staging_at_once_even_promoted_twice_at_once(platform: Path, tmp_path: Path):
    home = tmp_path / "home"
    code, out = ud(platform, home, "new", "model", "m")
    assert code == 0, out
    assert set(out["files"]) == {"assets/m.py", "data/m.csv", "tests/test_m.py"}
    # Two promotions at once (a second operator, a retry): the second waits for the first, and each
    # deploys the version its own run built and gated, never the other's.
    procs = [subprocess.Popen([str(BIN / "ud"), "promote", "m", "--to", "staging", "--json"], cwd=platform, env=env(home),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stdout.read(), p.stderr.read()) for p in procs]
    for code, stdout, stderr in results:
        assert code == 0, stderr[-3000:]
    assert sorted(json.loads(stdout)["version"] for _, stdout, _ in results) == ["1", "2"]
    from unified_delivery.ledger import Ledger

    ledger = Ledger(f"sqlite:///{home / 'ledger.db'}")
    built = {e.payload["run_id"]: e.version for e in ledger.entries(unit="m", action="candidate")}
    promoted = ledger.entries(unit="m", env="staging", action="promotion")
    assert [(e.version, built[e.payload["run_id"]]) for e in promoted] == [("1", "1"), ("2", "2")]
    assert not ledger.entries(unit="m", action="refusal")
    code, status = ud(platform, home, "status")
    m = next(u for u in status["units"] if u["name"] == "m")
    assert m["environments"]["staging"]["version"] == "2" and m["environments"]["production"] is None


def test_a_data_unit_declared_in_dbt_meta_alone(platform: Path):
    code, out = ud(platform, platform / ".ud-unused", "gates", "features")
    assert code == 0, out
    assert {g["family"] for g in out["gates"]} >= {"dbt-tests", "cost", "policy"}
    assert not (platform / "assets" / "units" / "features").exists()  # no YAML: the dbt model's meta declares it


@pytest.mark.parametrize("args, code_expected", [
    (["new", "app", "api"], "UD-NEW-EXISTS"),          # a YAML unit
    (["new", "data", "scorer"], "UD-NEW-EXISTS"),      # a Python unit, whatever the kind asked for
    (["new", "model", "features"], "UD-NEW-EXISTS"),   # a dbt model
    (["new", "model", "2fast"], "UD-NEW-NAME"),
    (["new", "app", "Web-App"], "UD-NEW-NAME"),
    (["new", "app", "a" * 300], "UD-NEW-NAME"),                 # longer than any Kubernetes name
    (["new", "app", "ok_name", "--team", "Web Team"], "UD-NEW-NAME"),
    (["new", "model", "churn", "--trains-on", "features"], "UD-NEW-LABEL"),
    (["new", "model", "churn", "--trains-on", "nothing", "--label", "label"], "UD-NEW-TRAINS-ON"),
])
def test_new_refuses_and_writes_nothing(platform: Path, tmp_path: Path, args: list[str], code_expected: str):
    before = files(platform)
    code, out = ud(platform, tmp_path / "home", *args)
    assert code == 2 and out["error"]["code"] == code_expected, out
    assert files(platform) == before


def test_new_model_on_a_data_unit_takes_its_documented_columns(platform: Path, tmp_path: Path):
    code, out = ud(platform, tmp_path / "home", "new", "model", "risk", "--trains-on", "features", "--label", "label")
    assert code == 0, out
    source = (platform / "assets" / "risk.py").read_text()
    assert "FEATURES = ['x1', 'x2', 'x3', 'x4']" in source and 'trains_on="features"' in source
    assert not (platform / "data" / "risk.csv").exists()


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "notes.txt").write_text("mine")
    code, out = ud(tmp_path, tmp_path / "home", "init", "p")
    assert code == 2 and out["error"]["code"] == "UD-INIT-EXISTS"
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["notes.txt"]


def test_new_outside_a_platform_is_refused(tmp_path: Path):
    code, out = ud(tmp_path, tmp_path / "home", "new", "app", "web")
    assert code == 2 and out["error"]["code"] == "UD-NO-PLATFORM"


def test_a_model_whose_dataset_is_missing_is_refused_at_load(platform: Path, tmp_path: Path):
    (platform / "assets" / "ghost.py").write_text(
        "import unified_delivery as ud\n\n\n@ud.model(team='ml', dataset='../data/ghost.csv', features=['x1'], label='label')\n"
        "def ghost(train):\n    return None\n")
    try:
        code, out = ud(platform, tmp_path / "home", "status")
    finally:
        (platform / "assets" / "ghost.py").unlink()
    assert code == 2 and out["error"]["code"] == "UD-CONFIG-UNIT"
    assert "ghost" in out["error"]["message"] and "dataset" in out["error"]["message"]


def test_python_api_raises_the_command_lines_codes(platform: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import unified_delivery as ud_api

    monkeypatch.chdir(platform / "apps")  # a notebook in a subfolder finds its platform
    monkeypatch.setenv("UD_HOME", str(tmp_path / "home"))
    with pytest.raises(ud_api.UDError) as err:
        ud_api.promote("no_such_unit", to="staging")
    assert err.value.code == "UD-UNKNOWN-UNIT"
    with pytest.raises(ud_api.UDError) as err:
        ud_api.promote("scorer", to="qa")
    assert err.value.code == "UD-UNKNOWN-ENV"


def test_a_new_app_promoted_before_its_commit_says_to_commit(platform: Path, tmp_path: Path):
    home = tmp_path / "home"
    code, out = ud(platform, home, "new", "app", "web")
    assert code == 0, out
    code, out = ud(platform, home, "promote", "web", "--to", "staging")
    assert code == 2 and out["error"]["code"] == "UD-APP-PATH-NOT-FOUND", out  # the user's to fix: exit 2
    assert "commit" in out["error"]["remediation"]


def test_a_dataset_path_is_found_beside_the_file_or_else_in_the_working_directory(tmp_path: Path, monkeypatch):
    """A notebook's cells live in the kernel's temporary files: its relative paths mean the working directory."""
    from unified_delivery.kinds.model.decorator import _beside

    kernel_cells, notebook_dir = tmp_path / "ipykernel_123", tmp_path / "work"
    kernel_cells.mkdir()
    (notebook_dir / "data").mkdir(parents=True)
    (notebook_dir / "data" / "rows.csv").write_text("x1,label\n1,0\n")
    cell = kernel_cells / "cell.py"
    cell.write_text("def train(rows):\n    return rows\n")
    namespace: dict = {}
    exec(compile(cell.read_text(), str(cell), "exec"), namespace)
    monkeypatch.chdir(notebook_dir)
    assert _beside(namespace["train"], "data/rows.csv") == notebook_dir / "data" / "rows.csv"
    (kernel_cells / "data").mkdir()
    (kernel_cells / "data" / "rows.csv").write_text("x1,label\n")
    assert _beside(namespace["train"], "data/rows.csv") == kernel_cells / "data" / "rows.csv"  # beside the file wins


def test_the_home_is_the_platforms_from_any_of_its_folders(platform: Path, monkeypatch: pytest.MonkeyPatch):
    """A notebook in notebooks/ and `ud` at the root must see the same deployments."""
    from unified_delivery.home import Home

    monkeypatch.delenv("UD_HOME", raising=False)
    monkeypatch.delenv("UD_PROJECT", raising=False)
    monkeypatch.chdir(platform / "apps")
    assert Home.current().root == platform / ".ud"


def test_an_app_whose_model_is_not_in_the_environment_is_refused_before_deploying(platform: Path, tmp_path: Path):
    code, out = ud(platform, tmp_path / "home", "promote", "api", "--to", "staging")
    assert code == 2 and out["error"]["code"] == "UD-PROMOTE-DEPENDENCY", out
    assert "scorer" in out["error"]["message"] and "ud promote scorer --to staging" in out["error"]["remediation"]
    code, status = ud(platform, tmp_path / "home", "status")
    assert next(u for u in status["units"] if u["name"] == "api")["environments"]["staging"] is None
