"""`ud` answers what needs no platform (help, the version, a usage error) without importing
Dagster, MLflow, dbt or Great Expectations: those cost seconds before anything is parsed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("dagster", "mlflow", "dbt", "great_expectations", "sqlalchemy", "pandas")
PROBE = """
import json, sys
from unified_delivery.cli import main
try:
    code = main({argv!r})
except SystemExit as exc:  # argparse's --help and --version exit
    code = exc.code
print(json.dumps({{"code": code, "heavy": sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))}}), file=sys.stderr)
"""


@pytest.mark.parametrize("argv, code", [(["--help"], 0), (["--version"], 0), (["promote", "--help"], 0),
                                        (["promot"], 2), (["promote"], 2), (["audit", "verify", "--help"], 0)])
def test_answers_without_a_heavy_import(argv, code):
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)], capture_output=True,
                          text=True, timeout=60)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report["code"] == code, proc.stdout + proc.stderr
    assert report["heavy"] == [], f"`ud {' '.join(argv)}` imported {report['heavy']}"


def test_every_lazy_name_stays_the_function_once_its_modules_are_imported():
    """A submodule named like a lazy name would replace it as the package's attribute the moment
    anything imports that submodule; every name must still be what the package promises."""
    import importlib
    import inspect
    import pkgutil

    import unified_delivery
    from unified_delivery import service

    for package in (unified_delivery, service):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)
        for name in package._LAZY:
            assert not inspect.ismodule(getattr(package, name)), f"{package.__name__}.{name} is a module"
