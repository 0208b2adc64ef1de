"""Generate a synthetic platform of N delivery units, laid out like the reference one.

    python bench/synthetic.py --units 1000 --out /tmp/synth
    dagster definitions validate -w /tmp/synth/workspace.yaml

Units come in chains of three, as on a real platform: a data product (one dbt model with
its tests, owner and budget in dbt `meta`), a model that trains on it (a decorated Python
function) and an app that serves the model (a YAML unit with a tests and a health gate).
Every fourth data product starts a new lineage; the others read the previous one's
production schema through a dbt source, as a downstream product reads a published one.

Nothing is run: the dbt manifest is made by the platform on first load (`dbt parse` in a
child process), and the app repositories live under the home (`{home}/repos/...`); the
app template in `templates/app/` is what a benchmark pushes there when it needs one.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

KINDS = ("data", "model", "app")
CHAIN = 4  # data products per lineage
SEED_ROWS = 400
FEATURES = ("x1", "x2", "x3")


def unit_names(units: int) -> list[tuple[str, str]]:
    """(kind, name) for each unit: data_0000, model_0000, app_0000, data_0001, ..."""
    width = max(4, len(str(units // 3)))
    return [(KINDS[i % 3], f"{KINDS[i % 3]}_{i // 3:0{width}d}") for i in range(units)]


def upstream_data(name: str, names: set[str]) -> str | None:
    digits = name.rsplit("_", 1)[1]
    group = int(digits)
    if group % CHAIN == 0:
        return None
    up = f"data_{group - 1:0{len(digits)}d}"
    return up if up in names else None


def team(name: str) -> str:
    return f"team_{int(name.rsplit('_', 1)[1]) % 25:02d}"


# -- dbt project ---------------------------------------------------------------------------

DBT_PROJECT = """name: ud_synthetic
version: "1.0.0"
config-version: 2
profile: ud_synthetic
model-paths: ["models"]
seed-paths: ["seeds"]
target-path: target
clean-targets: [target, dbt_packages]
models:
  ud_synthetic:
    +materialized: table
seeds:
  ud_synthetic:
    +quote_columns: false
"""

PROFILES = """ud_synthetic:
  target: dev
  outputs:
    dev:
      type: duckdb
      path: "{{ env_var('UD_WAREHOUSE', 'warehouse.duckdb') }}"
      threads: 1
"""


def seed_csv(rows: int = SEED_ROWS) -> str:
    """Two informative features and a noisy label, so a model gate has something to measure."""
    rng = random.Random(0)
    lines = ["id,x1,x2,label"]
    for i in range(rows):
        x1, x2 = rng.gauss(0, 1), rng.gauss(0, 1)
        label = int(x1 + 0.5 * x2 + rng.gauss(0, 0.8) > 0)
        lines.append(f"{i},{x1:.4f},{x2:.4f},{label}")
    return "\n".join(lines) + "\n"


def model_sql(name: str, upstream: str | None) -> str:
    if upstream is None:
        return (f"-- {name}: features from the raw events.\n"
                "select id, x1, x2, x1 * 0.5 + x2 as x3, label\nfrom {{ ref('raw_events') }}\n")
    return (f"-- {name}: refines {upstream}, read from its published production schema.\n"
            "select e.id, e.x1, e.x2, u.x3 * 0.9 + e.x1 * 0.1 as x3, e.label\n"
            "from {{ ref('raw_events') }} as e\n"
            f"join {{{{ source('published', '{upstream}') }}}} as u on u.id = e.id\n")


def model_yml(name: str) -> str:
    return f"""version: 2
models:
  - name: {name}
    description: Synthetic data product {name}.
    meta:
      ud:
        team: {team(name)}
        budget: {{per_run: 0.05, per_month: 40, currency: USD}}
        policy: {{production: automatic}}
    columns:
      - name: id
        data_tests: [unique, not_null]
      - name: x1
        data_tests: [not_null]
      - name: label
        data_tests:
          - accepted_values:
              arguments:
                values: [0, 1]
"""


def sources_yml(published: list[str]) -> str:
    tables = "".join(f"      - name: {n}\n" for n in published) or "      []\n"
    return ("version: 2\nsources:\n  - name: published\n    description: Data products as published to production.\n"
            f"    schema: production\n    tables:\n{tables}")


# -- units ---------------------------------------------------------------------------------


def data_yaml(name: str, upstream: str | None) -> str:
    depends = f"  depends_on: [{upstream}]\n" if upstream else ""
    return (f"# Synthetic data product; team, budget and policy come from its dbt meta.\n"
            f"type: unified_delivery.data\nattributes:\n  name: {name}\n  project: ../../dbt_project\n"
            f"  select: \"+{name}\"\n{depends}")


def app_yaml(name: str, model: str | None) -> str:
    serves = f"  serves: {model}\n" if model else ""
    service = f"  service:\n    env:\n      MODEL_URI: \"models:/{model}@{{env}}\"\n" if model else ""
    return f"""type: unified_delivery.app
attributes:
  name: {name}
  team: {team(name)}
  description: Synthetic service {name}.
  repository: "{{home}}/repos/{name}.git"
  branch: main
{serves}  gates:
    - type: tests
    - type: health
      stage: staging
  budget: {{per_run: 0.10, per_month: 50, currency: USD}}
  policy: {{staging: automatic, production: manual}}
{service}"""


MODELS_HEAD = '''"""Synthetic model units, one decorated training function each, as data scientists write them."""

import unified_delivery as ud

FEATURES = {features!r}


def fit(train):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=200).fit(train[FEATURES], train["label"])
'''

MODEL_DEF = '''

@ud.model(
    team="{team}",
    trains_on="{data}",
    features=FEATURES,
    label="label",
    gates=[ud.gate("model-metric", metric="roc_auc", min=0.6, max_regression=0.05)],
    budget=ud.Budget(per_run=0.20, per_month=100),
)
def {name}(train):
    return fit(train)
'''

DEFINITIONS = '''"""The synthetic platform's Definitions entry point."""

from pathlib import Path

from resources import platform_resources
from unified_delivery import Platform

from .models import MODELS

platform = Platform.from_directory(Path(__file__).parent / "units", MODELS, **platform_resources())
defs = platform.definitions()
'''

RESOURCES = '''"""Embedded defaults, resolved against $UD_HOME at run time."""

from unified_delivery.ledger import LedgerResource
from unified_delivery.targets.dbt_duckdb import DbtDuckDBTarget
from unified_delivery.targets.local_release import LocalReleaseTarget
from unified_delivery.targets.mlflow_alias import MlflowAliasTarget


def platform_resources() -> dict:
    return {
        "targets": {"app": LocalReleaseTarget(), "model": MlflowAliasTarget(), "data": DbtDuckDBTarget()},
        "ledger": LedgerResource(),
    }
'''

# Absolute: Dagster resolves a relative working_directory against the current folder, and
# `dagster definitions validate -w DIR/workspace.yaml` should work from anywhere.
WORKSPACE = """load_from:
  - python_module:
      module_name: assets.definitions
      attribute: defs
      working_directory: {root}
      location_name: synthetic_platform
"""

# -- the app template (pushed to a unit's repository by the overhead benchmark) -----------

APP_PY = '''"""A minimal service: /health answers 200 with the version it runs."""

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def health() -> dict:
    return {"status": "ok", "version": os.environ.get("UD_VERSION", ""), "env": os.environ.get("UD_ENV", "")}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(health()).encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    ThreadingHTTPServer(("127.0.0.1", parser.parse_args().port), Handler).serve_forever()
'''

APP_TEST = '''import app


def test_health_reports_ok():
    assert app.health()["status"] == "ok"
'''


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def generate(units: int, out: Path) -> dict[str, int]:
    if units < 1:
        raise ValueError("--units must be at least 1")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; give a new or empty folder")
    names = unit_names(units)
    all_names = {n for _, n in names}
    data = [n for k, n in names if k == "data"]
    models = [n for k, n in names if k == "model"]
    apps = [n for k, n in names if k == "app"]

    dbt = out / "dbt_project"
    write(dbt / "dbt_project.yml", DBT_PROJECT)
    write(dbt / "profiles.yml", PROFILES)
    write(dbt / "seeds" / "raw_events.csv", seed_csv())
    published = []
    for name in data:
        up = upstream_data(name, all_names)
        write(dbt / "models" / f"{name}.sql", model_sql(name, up))
        write(dbt / "models" / f"{name}.yml", model_yml(name))
        write(out / "assets" / "units" / f"{name}.yaml", data_yaml(name, up))
        if up:
            published.append(up)
    write(dbt / "models" / "sources.yml", sources_yml(published))

    body = MODELS_HEAD.format(features=list(FEATURES))
    for name in models:
        body += MODEL_DEF.format(name=name, team=team(name), data=name.replace("model_", "data_"))
    body += f"\n\nMODELS = [{', '.join(models)}]\n"
    write(out / "assets" / "models.py", body)
    for name in apps:
        model = name.replace("app_", "model_")
        write(out / "assets" / "units" / f"{name}.yaml", app_yaml(name, model if model in all_names else None))

    write(out / "assets" / "__init__.py", "")
    write(out / "assets" / "definitions.py", DEFINITIONS)
    write(out / "resources" / "__init__.py", RESOURCES)
    write(out / "workspace.yaml", WORKSPACE.format(root=out.resolve()))
    write(out / "templates" / "app" / "app.py", APP_PY)
    write(out / "templates" / "app" / "tests" / "test_app.py", APP_TEST)
    write(out / "templates" / "app" / "pytest.ini", "[pytest]\ntestpaths = tests\npythonpath = .\n")
    return {"units": units, "data": len(data), "model": len(models), "app": len(apps)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, required=True, help="how many delivery units (data, model, app in turn)")
    parser.add_argument("--out", type=Path, required=True, help="a new or empty folder for the platform")
    args = parser.parse_args(argv)
    try:
        counts = generate(args.units, args.out)
    except (ValueError, FileExistsError) as exc:
        print(f"synthetic.py: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {counts['units']} units ({counts['data']} data, {counts['model']} model, {counts['app']} app)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
