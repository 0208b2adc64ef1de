"""The app repository's own test suite, run at the candidate commit in isolation.

Isolation here means: a fresh copy of the source tree at exactly that commit in a
temporary folder, a separate interpreter with a scrubbed environment (no PYTHONPATH, no
user site, HOME pointing into the temporary folder), and a time limit. The suite runs on
the platform's interpreter; a per-commit virtualenv is not built (see docs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from .base import Gate, GateContext, GateResult, GateSettings, register


class TestsSettings(GateSettings):
    timeout_s: float = 600.0
    min_tests: int = 1  # a suite that collects nothing does not pass


@register
class TestsGate(Gate):
    type = "tests"
    family = "tests"
    kinds = ("app",)
    Settings = TestsSettings

    def evaluate(self, ctx: GateContext) -> GateResult:
        if ctx.artifact is None or not ctx.artifact.location:
            return GateResult(False, "UD-GATE-ERROR", "no built source to test", "materialize the candidate first")
        with tempfile.TemporaryDirectory(prefix="ud-tests-") as tmp:
            work = Path(tmp) / "src"
            shutil.copytree(ctx.artifact.location, work, symlinks=True)
            junit = Path(tmp) / "junit.xml"
            cmd = [a.replace("{python}", sys.executable) for a in ctx.unit.test_command]
            if "pytest" in " ".join(cmd):
                cmd += [f"--junitxml={junit}"]
            env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "UD_", "DAGSTER", "MLFLOW"))}
            env.update(HOME=tmp, PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1")
            ctx.log(f"running {' '.join(cmd)} at {ctx.version}")
            try:
                proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                                      timeout=self.settings.timeout_s)
            except subprocess.TimeoutExpired:
                return GateResult(False, "UD-GATE-TESTS-TIMEOUT",
                                  f"the test suite ran longer than {self.settings.timeout_s:.0f} s",
                                  "make the suite faster or raise settings.timeout_s")
            counts = _junit_counts(junit)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        meta = {"commit": ctx.version, "exit_code": proc.returncode, **counts, "output_tail": tail}
        if proc.returncode == 0 and counts.get("tests", 0) >= self.settings.min_tests:
            return GateResult(True, "UD-GATE-TESTS-PASSED", f"{counts.get('tests', 0)} tests passed at {ctx.version[:12]}", "", meta)
        if proc.returncode == 0:
            return GateResult(False, "UD-GATE-TESTS-NONE", f"only {counts.get('tests', 0)} tests ran at {ctx.version[:12]}",
                              f"the suite must run at least {self.settings.min_tests} test(s)", meta)
        return GateResult(
            False, "UD-GATE-TESTS-FAILED",
            f"{counts.get('failures', 0) + counts.get('errors', 0)} of {counts.get('tests', 0)} tests failed at {ctx.version[:12]}",
            "fix the failing tests and push a new commit; see output_tail", meta)


def _junit_counts(path: Path) -> dict[str, int]:
    if not path.exists():
        return {}
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    keys = ("tests", "failures", "errors", "skipped")
    return {k: sum(int(s.get(k, 0)) for s in suites) for k in keys}
