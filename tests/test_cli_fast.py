"""`ud` answers what needs no platform (help, the version, a usage error) without importing
Dagster, MLflow, dbt or Great Expectations: those cost seconds before anything is parsed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("dagster", "mlflow", "dbt", "great_expectations", "sqlalchemy", "pandas", "mcp", "uvicorn", "starlette")
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
                                        (["promot"], 2), (["promote"], 2), (["audit", "verify", "--help"], 0),
                                        (["mcp", "--help"], 0)])
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
    from unified_delivery import engine, service

    for package in (unified_delivery, service, engine):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)
        for name in package._LAZY:
            assert not inspect.ismodule(getattr(package, name)), f"{package.__name__}.{name} is a module"


# argparse's own --help and --version ignore a failed write: they exit 0, quietly too.
@pytest.mark.parametrize("argv, codes", [(["--help"], (0, 141)), (["--version"], (0, 141)),
                                         (["--json", "promot"], (141,))])
def test_a_closed_pipe_ends_quietly(argv, codes):
    """`ud ... | head` when the reader has gone: exit 141 (SIGPIPE's), no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "unified_delivery.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # gone before ud writes a byte
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
    assert proc.returncode in codes


@pytest.mark.parametrize("argv", [["--json", "promote"], ["promote", "-o", "yaml"], ["-ojson", "promot"],
                                  ["--output=yaml", "gates"]])
def test_global_options_go_anywhere_and_errors_come_in_the_format_asked(argv):
    import yaml

    proc = subprocess.run([sys.executable, "-m", "unified_delivery.cli", *argv], capture_output=True, text=True,
                          timeout=60)
    doc = yaml.safe_load(proc.stdout)  # JSON is YAML too
    assert proc.returncode == 2 and doc["ok"] is False and doc["error"]["code"] == "UD-USAGE", proc.stdout
    assert doc["error"]["exit_code"] == 2 and proc.stderr == ""


def test_every_machine_output_starts_with_ok():
    from unified_delivery.output import dump, envelope

    assert list(envelope({"units": []})) == ["ok", "units"]
    assert envelope({"ok": False, "problems": ["x"]})["ok"] is False  # a command's own verdict stays
    assert envelope([1, 2]) == {"ok": True, "items": [1, 2]}
    assert dump({"ok": True, "at": Path("/x")}, "yaml") == "ok: true\nat: /x"


@pytest.mark.parametrize("argv, output, token", [
    (["audit", "verify", "-o", "yaml", "--token", "t"], "yaml", "t"),
    (["--token", "t", "-o", "json", "audit", "verify"], "json", "t"),
    (["audit", "--token", "t", "verify"], "table", "t"),
    (["sensors", "tick", "-o", "yaml"], "yaml", None),
    (["render", "k8s", "api", "--env", "staging", "--json"], "table", None),
])
def test_global_options_reach_every_verb(argv, output, token):
    from unified_delivery.cli import build_parser

    args = build_parser().parse_args(argv)
    assert (args.output, args.token) == (output, token)


def test_shell_completion_completes_commands_and_verbs_without_heavy_imports(tmp_path):
    ud = str(Path(sys.executable).with_name("ud"))
    script = subprocess.run([ud, "completion", "bash"], capture_output=True, text=True, timeout=60)
    assert script.returncode == 0 and "complete " in script.stdout and "ud" in script.stdout
    assert subprocess.run([ud, "completion", "zsh"], capture_output=True, text=True, timeout=60).returncode == 0

    def complete(line: str) -> list[str]:
        out = tmp_path / "completions"
        env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
               "_ARGCOMPLETE_STDOUT_FILENAME": str(out), "PYTHONPROFILEIMPORTTIME": "1"}
        done = subprocess.run([ud], env=env, capture_output=True, text=True, timeout=60)
        assert " dagster" not in done.stderr and " mlflow" not in done.stderr  # -X importtime lines
        return out.read_text().split()

    assert complete("ud pro") == ["promote"]
    assert complete("ud audit v") == ["verify"]
    assert "--dry-run" in complete("ud promote x --dr")


def test_every_example_in_the_help_parses():
    import shlex

    from unified_delivery.cli import EXAMPLES, build_parser

    parser = build_parser()
    for name, lines in EXAMPLES.items():
        help_text = subprocess.run([str(Path(sys.executable).with_name("ud")), name, "--help"], capture_output=True,
                                   text=True, timeout=60).stdout
        assert "examples:" in help_text, name
        for line in lines:
            argv = shlex.split(line.split(" | ")[0])
            assert argv[0] == "ud"
            parser.parse_args(argv[1:])  # a usage error raises UDError here
