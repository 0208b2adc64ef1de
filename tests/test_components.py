"""The YAML units as Dagster Components: what `dg` (dagster-dg-cli, run for real) makes of the
reference platform and of a broken copy, and how the unit folders load."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from unified_delivery import App, Data
from unified_delivery.errors import ConfigError
from unified_delivery.loader import load_yaml_unit, load_yaml_units
from unified_delivery.kinds.app.unit import AppUnit
from unified_delivery.kinds.data.unit import DataUnit

ROOT = Path(__file__).resolve().parents[1]
DG = ROOT / ".venv" / "bin" / "dg"
YAML_UNITS = ("customer_features", "recommendation_api")
STAGES = ("candidate", "staging", "production")


@pytest.fixture
def dg(clean_env, tmp_path):
    """`dg(*args, project=...)`: the installed `dg` in a platform repository, on a home of its own."""

    def run(*args: str, project: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
        env = clean_env(UD_HOME=str(tmp_path / "home"), **env)
        proc = subprocess.run([str(DG), *args], cwd=project, env=env, capture_output=True, text=True, timeout=180)
        assert not (tmp_path / "home").exists(), "dg loading the platform must not write to the home"
        return proc

    return run


@pytest.fixture
def dg_copy(platform_copy):
    """A platform repository `dg` can read: the reference layout with this repository's pyproject.toml."""
    shutil.copy2(ROOT / "pyproject.toml", platform_copy / "pyproject.toml")
    # this repository's dbt project, parsed already: a copy would cost a `dbt parse` per test
    data_unit = platform_copy / "assets" / "units" / "customer_features" / "defs.yaml"
    text = data_unit.read_text()
    assert "project: ../../../dbt_project" in text
    data_unit.write_text(text.replace("project: ../../../dbt_project", f"project: {ROOT / 'dbt_project'}"))
    return platform_copy


def as_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


# -- dg on the reference platform ---------------------------------------------------------------


def test_dg_list_defs_lists_every_stage_asset_and_gate_check_once(dg):
    listing = as_json(dg("list", "defs", "--json"))
    keys = [a["asset_key"] for a in listing["assets"]]
    assert len(keys) == len(set(keys)), "an asset is defined twice"
    assert {f"{u}/{s}" for u in YAML_UNITS for s in STAGES} <= set(keys)
    checks = {c["key"] for c in listing["asset_checks"]}
    assert {"recommendation_api/candidate:tests", "recommendation_api/candidate:security",
            "recommendation_api/staging:health", "customer_features/candidate:dbt_tests"} <= checks
    assert {"ud_promote_staging", "ud_promote_production", "ud_rollback"} <= {j["name"] for j in listing["jobs"]}


def test_dg_check_defs_passes_on_the_reference_platform(dg):
    proc = dg("check", "defs")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All component YAML validated successfully" in proc.stdout
    assert "All definitions loaded successfully" in proc.stdout


def test_dg_list_components_shows_the_unit_types(dg):
    listing = as_json(dg("list", "components", "--json"))
    keys = {c["key"] for c in listing["items"]}
    assert {"unified_delivery.App", "unified_delivery.Data"} <= keys


def test_the_unit_folders_build_their_units_slices_of_the_platform(dg):
    # dg imports the project's modules in its own process for --path: the root goes on the path
    listing = as_json(dg("list", "defs", "--path", "assets/units", "--json", PYTHONPATH=str(ROOT)))
    keys = [a["asset_key"] for a in listing["assets"]]
    assert len(keys) == len(set(keys))
    runnable = {a["asset_key"] for a in listing["assets"] if a.get("is_executable", True)}
    assert runnable == {f"{u}/{s}" for u in YAML_UNITS for s in STAGES}
    assert set(keys) - runnable == {"churn_model/staging", "churn_model/production"}  # what the app serves
    assert {c["asset_key"].split("/")[0] for c in listing["asset_checks"]} == set(YAML_UNITS)
    # platform-wide: only the code location has them (a promotion job serves every unit)
    assert listing["jobs"] == [] and listing["sensors"] == []


# -- dg on a broken platform ---------------------------------------------------------------------


def misspell(dg_copy: Path, *replacements: tuple[str, str]) -> None:
    declaration = dg_copy / "assets" / "units" / "recommendation_api" / "defs.yaml"
    text = declaration.read_text()
    for right, wrong in replacements:
        assert right in text
        text = text.replace(right, wrong)
    declaration.write_text(text)


def test_dg_check_yaml_names_a_misspelt_field_and_where_it_is(dg, dg_copy):
    misspell(dg_copy, ("  description:", "  descripton:"), ("per_month: 50", "per_mnth: 50"))
    proc = dg("check", "yaml", project=dg_copy)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "recommendation_api/defs.yaml:7" in out and "'descripton' was unexpected" in out
    assert "attributes.budget.per_mnth" in out


def test_dg_check_defs_names_a_misspelt_field_with_the_ud_error(dg, dg_copy):
    misspell(dg_copy, ("  description:", "  descripton:"))
    proc = dg("check", "defs", "--no-check-yaml", project=dg_copy)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "UD-CONFIG-UNIT: unit recommendation_api (recommendation_api/defs.yaml): field descripton: " \
           "is not a known field (did you mean 'description'?)" in proc.stdout + proc.stderr


# What `dg list defs --path` runs; dg prints only "defs.yaml (App) (error)", so the cause is read here.
BUILD_ONE_FOLDER = """
import sys
from pathlib import Path
import dagster as dg
sys.path.insert(0, str(Path.cwd()))
try:
    dg.ComponentTree.for_project(Path.cwd()).build_defs(Path.cwd() / sys.argv[1])
except Exception as exc:
    print(type(exc.__cause__).__name__, exc.__cause__)
"""


def test_a_unit_folder_the_platform_does_not_load_is_refused(dg_copy, clean_env, tmp_path):
    # pyproject's defs_module and the folder assets/definitions.py reads disagree
    (dg_copy / "assets" / "other").mkdir()
    shutil.move(dg_copy / "assets" / "units" / "recommendation_api", dg_copy / "assets" / "other")
    pyproject = dg_copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('defs_module = "assets.units"', 'defs_module = "assets.other"'))
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", BUILD_ONE_FOLDER, "assets/other/recommendation_api"],
                          cwd=dg_copy, env=clean_env(UD_HOME=str(tmp_path / "home")), capture_output=True, text=True,
                          timeout=180)
    assert "ConfigError UD-CONFIG-COMPONENT: unit recommendation_api" in proc.stdout, proc.stdout + proc.stderr
    assert "does not load this declaration" in proc.stdout


# -- the component classes and the loader, in process -------------------------------------------


def test_the_attribute_schema_is_the_unit_declaration():
    for component, unit_class in ((App, AppUnit), (Data, DataUnit)):
        assert set(component.get_model_cls().model_fields) == set(unit_class.model_fields)
    app = App.get_model_cls().model_json_schema()
    data = Data.get_model_cls().model_json_schema()
    assert set(app["required"]) == {"team", "repository"}  # the name defaults to the folder
    assert set(data["required"]) == {"select"}  # the project defaults to the repository root; the team may come from dbt meta
    assert "git" in app["properties"]["repository"]["description"]  # its Field(description=...)


UNIT = """type: {type}
attributes:
  team: web
  repository: ../repo
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_unit_folders_and_flat_files_load_together(tmp_path):
    units = tmp_path / "units"
    write(units / "flat_api.yaml", UNIT.format(type="unified_delivery.app"))
    write(units / "web_api" / "defs.yaml", UNIT.format(type="unified_delivery.App"))
    write(units / "team_b" / "deep_api" / "defs.yml", UNIT.format(type="unified_delivery.App"))
    loaded = {u.name: u for u in load_yaml_units(units)}
    assert set(loaded) == {"flat_api", "web_api", "deep_api"}  # named after the file or the folder
    # a relative path is relative to the folder of the file that says it
    assert loaded["flat_api"].repository == str(tmp_path / "repo")
    assert loaded["web_api"].repository == str(units / "repo")
    assert loaded["deep_api"].repository == str(units / "team_b" / "repo")


def test_a_unit_folder_names_its_file_in_errors(tmp_path):
    path = write(tmp_path / "units" / "web_api" / "defs.yaml", UNIT.format(type="unified_delivery.App") + "  brnch: main\n")
    with pytest.raises(ConfigError) as info:
        load_yaml_unit(path)
    assert info.value.code == "UD-CONFIG-UNIT"
    assert "unit web_api (web_api/defs.yaml): field brnch: is not a known field (did you mean 'branch'?)" in info.value.message


def test_an_unknown_type_names_the_component_types(tmp_path):
    path = write(tmp_path / "units" / "web_api" / "defs.yaml", UNIT.format(type="unified_delivery.Ap"))
    with pytest.raises(ConfigError) as info:
        load_yaml_unit(path)
    assert info.value.remediation.startswith("use one of: unified_delivery.App, unified_delivery.Data")
