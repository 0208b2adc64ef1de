"""Bad declarations are refused when the platform loads.

Each refusal is a ConfigError with a stable code and a message naming the unit and the
field at fault, raised before anything touches the home (so nothing is deployed). The
platforms here are real: YAML files in a temporary folder, decorated training functions,
the reference dbt project for selections, and the installed `ud` for the CLI.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

import unified_delivery as ud
from unified_delivery import Platform
from unified_delivery.errors import ConfigError
from unified_delivery.loader import load_yaml_unit, load_yaml_units
from unified_delivery.kinds.app.unit import AppUnit
from unified_delivery.kinds.data.unit import DataUnit

ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT = ROOT / "dbt_project"


def write(directory: Path, filename: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def app_yaml(repository: Path, name: str = "web_app", extra: str = "") -> str:
    """A valid app declaration; `extra` is more lines under `attributes:`, indented by two spaces."""
    return (f"type: unified_delivery.app\nattributes:\n  name: {name}\n  team: web\n"
            f"  repository: {repository}\n{textwrap.indent(textwrap.dedent(extra), '  ')}")


def data_yaml(name: str, select: str, extra: str = "") -> str:
    return (f"type: unified_delivery.data\nattributes:\n  name: {name}\n  project: {DBT_PROJECT}\n"
            f"  select: {select!r}\n{textwrap.indent(textwrap.dedent(extra), '  ')}")


def churn_model(train):
    """A training function for decorated models; never called at load time."""
    raise AssertionError("training must not run when the platform loads")


def decorated_model(**overrides):
    declaration = dict(team="ml", trains_on="customer_features", features=["tenure_days", "order_count"],
                       label="churned")
    return ud.model(**{**declaration, **overrides})(churn_model)


@pytest.fixture
def units_dir(tmp_path: Path) -> Path:
    return tmp_path / "units"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An existing local folder for `repository:` (load time only checks that it exists)."""
    path = tmp_path / "repo"
    path.mkdir()
    return path


@pytest.fixture
def refused(ud_home: Path, home_resources: dict):
    """`refused(code, units_dir=..., python_units=...)` loads a platform, expects a ConfigError
    with `code`, checks that nothing was written to the home, and returns the error."""

    def load(code: str, units_dir: Path | None = None, python_units=()) -> ConfigError:
        with pytest.raises(ConfigError) as info:
            if units_dir is not None:
                Platform.from_directory(units_dir, list(python_units), **home_resources)
            else:
                Platform(list(python_units), **home_resources)
        assert info.value.code == code, info.value
        assert info.value.remediation, "every refusal says what to do"
        assert not ud_home.exists(), "a refused platform must not write (or deploy) anything"
        return info.value

    return load


def assert_names(err: ConfigError, unit: str, field: str) -> None:
    assert f"unit {unit}" in err.message, err.message
    assert f"field {field}" in err.message, err.message


# -- the declaration files ----------------------------------------------------------------


def test_the_base_declarations_load(units_dir, repo, home_resources, ud_home):
    # The control for every case below: the same files without the fault load.
    write(units_dir, "web_app.yaml", app_yaml(repo))
    write(units_dir, "customer_features.yaml", data_yaml("customer_features", "customer_features"))
    platform = Platform.from_directory(units_dir, [decorated_model()], **home_resources)
    assert sorted(platform.units) == ["churn_model", "customer_features", "web_app"]
    assert not ud_home.exists()


@pytest.mark.parametrize("extra, field", [
    ("descripton: Churn scores.\n", "descripton"),
    ("budget: {per_rn: 0.1}\n", "budget.per_rn"),
    ("gates:\n  - type: tests\n    stge: candidate\n", "gates.0.stge"),
    ("service:\n  helth_path: /health\n", "service.helth_path"),
])
def test_a_misspelt_field_is_refused_by_its_name(units_dir, repo, refused, extra, field):
    write(units_dir, "web_app.yaml", app_yaml(repo, extra=extra))
    err = refused("UD-CONFIG-UNIT", units_dir)
    assert_names(err, "web_app", field)
    assert "not a known field" in err.message
    assert "web_app.yaml" in err.message


def test_a_misspelt_required_field_is_named_as_written(units_dir, repo, refused):
    write(units_dir, "web_app.yaml", app_yaml(repo).replace("repository:", "repositry:"))
    err = refused("UD-CONFIG-UNIT", units_dir)
    assert "unit web_app" in err.message
    assert "repositry" in err.message, err.message


@pytest.mark.parametrize("type_line", ["type: unified_delivery.modle", "type: unified_delivery.ap", "type: 3", ""])
def test_a_wrong_unit_type_is_refused(units_dir, repo, refused, type_line):
    body = app_yaml(repo).replace("type: unified_delivery.app", type_line)
    write(units_dir, "web_app.yaml", body)
    err = refused("UD-CONFIG-YAML", units_dir)
    assert "web_app.yaml" in err.message and "field type" in err.message, err.message
    assert "unified_delivery.app" in err.remediation and "unified_delivery.data" in err.remediation
    assert "unified_delivery.model" in err.remediation  # a registered model is a YAML unit too


def test_an_app_body_under_the_model_type_is_refused_as_a_model_unit(units_dir, repo, refused):
    write(units_dir, "web_app.yaml", app_yaml(repo).replace("type: unified_delivery.app", "type: unified_delivery.model"))
    err = refused("UD-CONFIG-UNIT", units_dir)
    assert "registered_model" in err.message and "evaluation_dataset" in err.message, err.message


def test_invalid_yaml_is_refused_with_the_file_and_line(units_dir, repo, refused):
    write(units_dir, "web_app.yaml", app_yaml(repo, extra="gates: [tests\n"))
    err = refused("UD-CONFIG-YAML", units_dir)
    assert "web_app.yaml" in err.message and "not valid YAML" in err.message, err.message
    assert re.search(r"line \d+", err.message), err.message


@pytest.mark.parametrize("body, expected", [
    ("type: unified_delivery.app\n", "field attributes"),
    ("type: unified_delivery.app\nattributes: web_app\n", "field attributes"),
    ("type: unified_delivery.app\natributes:\n  name: web_app\n", "atributes"),
    ("- type: unified_delivery.app\n", "expected a mapping"),
])
def test_missing_attributes_are_refused(units_dir, refused, body, expected):
    write(units_dir, "web_app.yaml", body)
    err = refused("UD-CONFIG-YAML", units_dir)
    assert "web_app.yaml" in err.message and expected in err.message, err.message


def test_the_single_file_loader_refuses_too(units_dir, repo):
    path = write(units_dir, "web_app.yaml", app_yaml(repo, extra="descripton: x\n"))
    with pytest.raises(ConfigError) as info:
        load_yaml_unit(path)
    assert info.value.code == "UD-CONFIG-UNIT"
    assert_names(info.value, "web_app", "descripton")
    with pytest.raises(ConfigError):
        load_yaml_units(units_dir)


def test_an_invalid_unit_name_is_refused(units_dir, repo, refused):
    write(units_dir, "web_app.yaml", app_yaml(repo, name="Bad-Name"))
    err = refused("UD-CONFIG-UNIT", units_dir)
    assert_names(err, "Bad-Name", "name")
    assert "not a valid unit name" in err.message


def test_two_units_with_one_name_are_refused(units_dir, repo, refused):
    write(units_dir, "a.yaml", app_yaml(repo, name="web_app"))
    write(units_dir, "b.yaml", app_yaml(repo, name="web_app"))
    err = refused("UD-CONFIG-UNIT", units_dir)
    assert "unit web_app" in err.message and "declared twice" in err.message, err.message


def test_a_yaml_unit_and_a_python_unit_with_one_name_are_refused(units_dir, refused):
    write(units_dir, "customer_features.yaml", data_yaml("customer_features", "customer_features"))
    write(units_dir, "churn_model.yaml", data_yaml("churn_model", "customer_features"))
    err = refused("UD-CONFIG-UNIT", units_dir, [decorated_model()])
    assert "unit churn_model" in err.message and "declared twice" in err.message, err.message


def test_an_app_repository_that_does_not_exist_is_refused(units_dir, tmp_path, refused):
    missing = tmp_path / "no" / "such" / "repo.git"
    write(units_dir, "web_app.yaml", app_yaml(missing))
    err = refused("UD-CONFIG-UNIT", units_dir)
    assert_names(err, "web_app", "repository")
    assert str(missing) in err.message


# -- gates ----------------------------------------------------------------------------------


@pytest.mark.parametrize("gates, field, remediation", [
    ("- type: lint\n", "gates[].type 'lint'", "tests"),  # unknown type; the remediation lists the known ones
    ("- type: tests\n  settings: {timeout: 30}\n", "field settings.timeout", "timeout_s"),
    ("- type: model-metric\n", "'model-metric' does not apply to app units", "model"),
    ("- type: health\n  stage: production\n", "field stage 'production'", "candidate, staging"),
    ("- type: tests\n- type: tests\n", "['tests'] are used twice", "name"),
])
def test_a_bad_gate_is_refused(units_dir, repo, refused, gates, field, remediation):
    write(units_dir, "web_app.yaml", app_yaml(repo, extra="gates:\n" + textwrap.indent(gates, "  ")))
    err = refused("UD-CONFIG-GATE", units_dir)
    assert "unit web_app" in err.message and field in err.message, err.message
    assert remediation in err.remediation, err.remediation


@pytest.mark.parametrize("settings, field", [
    ({"metric": "auc", "min": 0.7}, "settings.metric"),
    ({"metric": "roc_auc", "minimum": 0.7}, "settings.minimum"),
    ({"metric": "roc_auc", "min": "high"}, "settings.min"),
])
def test_bad_model_metric_settings_are_refused(units_dir, refused, settings, field):
    write(units_dir, "customer_features.yaml", data_yaml("customer_features", "customer_features"))
    model = decorated_model(gates=[ud.gate("model-metric", **settings)])
    err = refused("UD-CONFIG-GATE", units_dir, [model])
    assert "unit churn_model" in err.message and f"field {field}" in err.message, err.message
    if field == "settings.metric":
        assert "roc_auc" in err.message and "log_loss" in err.message  # the allowed metrics are listed


# -- dependencies -----------------------------------------------------------------------------


def cycle_of(err: ConfigError) -> list[str]:
    match = re.search(r"cycle: (.+)$", err.message)
    assert match, err.message
    return match.group(1).split(" -> ")


def test_two_data_units_depending_on_each_other_are_refused(units_dir, refused):
    write(units_dir, "left.yaml", data_yaml("left", "customer_features", extra="depends_on: [right]\n"))
    write(units_dir, "right.yaml", data_yaml("right", "customer_features", extra="depends_on: [left]\n"))
    err = refused("UD-CONFIG-CYCLE", units_dir)
    path = cycle_of(err)
    assert path[0] == path[-1] and sorted(path[:-1]) == ["left", "right"], err.message


def test_a_cycle_across_kinds_is_refused_with_every_unit_in_it(repo, refused):
    # data -> app (depends_on), app -> model (serves), model -> data (trains_on)
    data = DataUnit(name="customer_features", team="analytics", project=str(DBT_PROJECT), select="customer_features",
                    depends_on=["web_app"])
    app = AppUnit(name="web_app", team="web", repository=str(repo), serves="churn_model")
    err = refused("UD-CONFIG-CYCLE", python_units=[data, app, decorated_model()])
    path = cycle_of(err)
    assert path[0] == path[-1] and sorted(path[:-1]) == ["churn_model", "customer_features", "web_app"], err.message


def test_a_dependency_on_a_unit_that_does_not_exist_is_refused(units_dir, repo, refused):
    write(units_dir, "web_app.yaml", app_yaml(repo, extra="depends_on: [ghost]\n"))
    err = refused("UD-CONFIG-UNIT", units_dir)
    assert_names(err, "web_app", "depends_on")
    assert "'ghost'" in err.message


def test_an_app_serving_a_unit_that_is_not_a_model_is_refused(units_dir, repo, refused):
    write(units_dir, "customer_features.yaml", data_yaml("customer_features", "customer_features"))
    write(units_dir, "web_app.yaml", app_yaml(repo, extra="serves: customer_features\n"))
    err = refused("UD-CONFIG-UNIT", units_dir)
    assert_names(err, "web_app", "serves")
    assert "'customer_features' is not a model unit" in err.message


def test_a_model_training_on_a_unit_that_is_not_data_is_refused(units_dir, repo, refused):
    write(units_dir, "web_app.yaml", app_yaml(repo))
    err = refused("UD-CONFIG-UNIT", units_dir, [decorated_model(trains_on="web_app")])
    assert_names(err, "churn_model", "trains_on")


@pytest.mark.parametrize("field", ["serves", "trains_on"])
def test_a_missing_upstream_is_reported_on_the_field_that_names_it(units_dir, repo, refused, field):
    if field == "serves":
        write(units_dir, "web_app.yaml", app_yaml(repo, extra="serves: ghost\n"))
        err = refused("UD-CONFIG-UNIT", units_dir)
        unit = "web_app"
    else:
        err = refused("UD-CONFIG-UNIT", python_units=[decorated_model(trains_on="ghost")])
        unit = "churn_model"
    assert "'ghost'" in err.message
    assert_names(err, unit, field)


# -- dbt selections ---------------------------------------------------------------------------


def test_a_selection_that_names_no_dbt_model_is_refused(units_dir, refused):
    write(units_dir, "customer_features.yaml", data_yaml("customer_features", "customer_featurez"))
    err = refused("UD-CONFIG-UNIT", units_dir)
    assert_names(err, "customer_features", "select")
    assert "'customer_featurez' selects nothing" in err.message


def test_a_python_data_unit_whose_selection_names_nothing_is_refused(refused):
    unit = DataUnit(name="customer_features", team="analytics", project=str(DBT_PROJECT), select="customer_featurez")
    err = refused("UD-CONFIG-UNIT", python_units=[unit])
    assert_names(err, "customer_features", "select")


def test_publishing_a_model_outside_the_selection_is_refused(units_dir, refused):
    write(units_dir, "customer_features.yaml",
          data_yaml("customer_features", "customer_features", extra="publish: [orders_summary]\n"))
    err = refused("UD-CONFIG-UNIT", units_dir)
    assert_names(err, "customer_features", "publish")


# -- the model decorator ----------------------------------------------------------------------


@pytest.mark.parametrize("overrides, field", [
    ({"epochs": 10}, "epochs"),
    ({"holdout_fraction": "a quarter"}, "holdout_fraction"),
    ({"features": "tenure_days"}, "features"),
    ({"name": "Bad-Name"}, "name"),
    ({"policy": {"production": "whenever"}}, "policy.production"),
])
def test_a_bad_decorator_argument_is_refused_at_decoration(overrides, field):
    with pytest.raises(ConfigError) as info:
        decorated_model(**overrides)
    assert info.value.code == "UD-CONFIG-UNIT"
    assert_names(info.value, overrides.get("name", "churn_model"), field)
    assert "@model(...)" in info.value.remediation and "churn_model" in info.value.remediation


def test_a_decorator_without_a_required_argument_is_refused():
    with pytest.raises(ConfigError) as info:
        ud.model(team="ml", trains_on="customer_features", features=["tenure_days"])(churn_model)
    assert_names(info.value, "churn_model", "label")


def test_an_out_of_range_holdout_fraction_is_refused_at_decoration():
    with pytest.raises(ConfigError) as info:
        decorated_model(holdout_fraction=2)
    assert_names(info.value, "churn_model", "holdout_fraction")


@pytest.mark.parametrize("overrides, field", [
    ({"features": ["tenure_days", "churned"]}, "features"),
])
def test_an_out_of_range_model_declaration_is_refused_at_load(units_dir, refused, overrides, field):
    write(units_dir, "customer_features.yaml", data_yaml("customer_features", "customer_features"))
    err = refused("UD-CONFIG-UNIT", units_dir, [decorated_model(**overrides)])
    assert_names(err, "churn_model", field)


def test_a_misspelt_gate_key_in_the_decorator_is_refused():
    with pytest.raises(ConfigError) as info:
        decorated_model(gates=[{"type": "model-metric", "setings": {"min": 0.7}}])
    assert_names(info.value, "churn_model", "gates.0.setings")


# -- the CLI ----------------------------------------------------------------------------------


def assert_no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout


def test_ud_reports_a_broken_platform_as_one_json_error(platform_copy, run_ud, tmp_path):
    declaration = platform_copy / "assets" / "units" / "recommendation_api" / "defs.yaml"
    text = declaration.read_text()
    assert "  description:" in text
    declaration.write_text(text.replace("  description:", "  descripton:"))
    home = tmp_path / "home"

    proc = run_ud("status", "--json", project=platform_copy, home=home)

    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert_no_traceback(proc)
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False
    error = doc["error"]
    assert set(error) == {"code", "message", "remediation", "exit_code"}
    assert error["code"] == "UD-CONFIG-UNIT"
    assert "unit recommendation_api" in error["message"] and "field descripton" in error["message"], error
    assert "recommendation_api/defs.yaml" in error["remediation"], error
    assert not home.exists(), "nothing may be written or deployed for a platform that does not load"


def test_ud_promote_of_an_unknown_unit_is_a_usage_error(run_ud, tmp_path):
    home = tmp_path / "home"
    proc = run_ud("promote", "no_such_unit", "--to", "staging", "--json", home=home)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert_no_traceback(proc)
    error = json.loads(proc.stdout)["error"]
    assert error["code"] == "UD-UNKNOWN-UNIT"
    assert "no_such_unit" in error["message"]
    for unit in ("customer_features", "churn_model", "recommendation_api"):
        assert unit in error["remediation"], error
    assert not home.exists(), "a refused promotion must not touch the home"


def test_ud_rollback_without_a_reason_is_a_one_line_usage_error(run_ud, tmp_path):
    home = tmp_path / "home"
    proc = run_ud("rollback", "x", "--env", "staging", home=home)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert_no_traceback(proc)
    assert proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("error UD-USAGE:") and "--reason" in errors[0], proc.stderr
    assert "usage:" not in proc.stderr  # no argparse usage dump
    assert not home.exists()
