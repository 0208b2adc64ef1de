"""The app repository's own test suite, run at the candidate commit.

An app built as an image (kinds/app/image.py) has its suite run inside that image, the
environment its release will run in: `podman run` of the image by digest, with the commit's
files as its working folder, no network and no capabilities (image_suite.py); a dependency the
host has and the image lacks then fails the suite here instead of in production. Without podman
the suite runs on the host as below, and the log says so. The rest of this docstring is the host
path: every app without an image.

A commit's tests are code anyone with push access to the app repository wrote, so they run
as untrusted code:

- in a fresh copy of the source tree at exactly that commit, in a private temporary folder
  with its own HOME and TMPDIR;
- with an environment built from an allow-list: PATH, LANG, LC_*, TZ, HOME, TMPDIR,
  PYTHONNOUSERSITE, PYTHONDONTWRITEBYTECODE and the unit's own `test_env`; nothing else of
  the operator's environment (no secrets, no UD_*, no PYTHONPATH);
- with stdin from /dev/null, no inherited descriptors, in a session of its own whose whole
  process group (with namespaces: the whole pid namespace) is killed at the time limit;
- isolated as far as the machine allows (`sandbox.py`): as an unprivileged user when the
  platform runs as root, in user, mount and pid namespaces when it does not; with
  namespaces the platform's home is covered by an empty tmpfs, every mount but the
  suite's own folder, /tmp and /dev/shm is read-only, and the parent processes are out of
  sight. Where neither is possible,
  environment-only, said in the result's `isolation` metadata and in the log (and refused
  with `settings.require_isolation`);
- and the output tail that goes into the result (the ledger, Dagster's event log) passes
  through `redaction.redact_text` first.

The suite runs on the app's own environment when its unit declares `dependencies`
(kinds/app/environments.py: {python} is that environment's interpreter, its bin/ first on
PATH, revealed read-only inside the sandbox), else on the platform's interpreter and its
site-packages.

What this is not: the suite shares the network (it can reach
localhost services, the Dagster webserver among them), and can read the files its user may
read on this machine. There is no CPU or memory limit beyond the time limit. And it ends
at this gate: the local release target starts the same commit's service unsandboxed
(docs/governance.md, "The app's tests are untrusted code").
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from ..errors import UDError
from ..kinds.app.environments import AppEnvironment
from ..kinds.app.environments import ensure as ensure_environment
from ..kinds.app.unit import AppUnit
from ..redaction import known_secret_values, redact_text
from ..targets import container_run
from . import image_suite
from .base import Gate, GateContext, GateResult, GateSettings
from .sandbox import SETUP_FAILED, SETUP_MARK, Sandbox

PASSED_THROUGH = ("PATH", "LANG", "LANGUAGE", "TZ")  # and LC_*; nothing else of the operator's
TAIL_LINES = 30
TAIL_CHARS = 8000
OUTPUT_READ = 1 << 20  # the last MiB of output is redacted and tailed
JUNIT_MAX = 16 << 20


class TestsSettings(GateSettings):
    timeout_s: float = 600.0
    min_tests: int = 1  # a suite that collects nothing does not pass
    require_isolation: bool = (
        False  # refuse to run where only environment-only isolation is possible
    )


def suite_environment(
    home: Path, tmp: Path, declared: dict[str, str], environ: dict[str, str] | None = None
) -> dict[str, str]:
    """The test process's whole environment: the allow-list, the unit's `test_env`, then
    the variables the gate fixes (a declared one cannot replace those)."""
    environ = dict(os.environ) if environ is None else environ
    env = {k: v for k, v in environ.items() if k in PASSED_THROUGH or k.startswith("LC_")}
    env.setdefault("PATH", os.defpath)
    env.update(declared)
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1")
    return env


class TestsGate(Gate[TestsSettings]):
    type = "tests"
    family = "tests"
    kinds = ("app",)
    Settings = TestsSettings

    def evaluate(self, ctx: GateContext) -> GateResult:
        if ctx.artifact is None or not ctx.artifact.location:
            return GateResult(
                False, "UD-GATE-ERROR", "no built source to test", "materialize the candidate first"
            )
        unit = ctx.unit
        assert isinstance(unit, AppUnit)
        image = ctx.artifact.details.get("image") or ""
        if image and not container_run.available():
            ctx.log(f"podman is not installed: the suite of {image} runs on this host instead")
            image = ""
        if image:
            return self._in_image(ctx, unit, image)
        return self._on_host(ctx, unit)

    def _in_image(self, ctx: GateContext, unit: AppUnit, image: str) -> GateResult:
        """The suite in the candidate's image (image_suite.py): the release's own environment."""
        assert ctx.artifact is not None
        try:
            user = image_suite.user(ctx.home, image)
        except UDError as exc:
            return GateResult(
                False, exc.code, exc.message, exc.remediation, {"commit": ctx.version}
            )
        detail = image_suite.describe(image, user)
        cmd = [a.replace("{python}", image_suite.PYTHON) for a in unit.test_command]
        junit_inside = f"{image_suite.SUITE_DIR}/junit.xml"
        if "pytest" in " ".join(cmd):
            cmd += [f"--junitxml={junit_inside}"]
        env = {
            **unit.test_env,
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        ctx.log(f"running {' '.join(cmd)} at {ctx.version} (isolation: {detail})")
        with tempfile.TemporaryDirectory(prefix="ud-tests-", dir=ctx.home.root) as tmp:
            box = Path(tmp) / "box"
            box.mkdir()
            shutil.copytree(ctx.artifact.location, box / "src", symlinks=True)
            output = Path(tmp) / "output"
            name = f"ud-tests-{unit.name}-{ctx.version[:12]}-{secrets.token_hex(3)}"
            code = image_suite.run(
                ctx.home,
                image,
                cmd,
                box=box,
                env=env,
                timeout=self.settings.timeout_s,
                output=output,
                name=name,
            )
            text = _last_bytes(output, OUTPUT_READ)
            counts = _junit_counts(box / "junit.xml") or _summary_counts(text)
        isolation = {"isolation": "container", "isolation_detail": detail, "image": image}
        return self._result(ctx, code, text, counts, isolation, None, in_image=True)

    def _on_host(self, ctx: GateContext, unit: AppUnit) -> GateResult:
        """The suite on this machine, in the sandbox (sandbox.py)."""
        assert ctx.artifact is not None
        try:  # made when the candidate was built; made again if it was removed since
            environment = ensure_environment(unit, Path(ctx.artifact.location), ctx.home, ctx.log)
        except UDError as exc:
            return GateResult(
                False, exc.code, exc.message, exc.remediation, {"commit": ctx.version}
            )
        reveal: list[str | Path] = [environment.path] if environment else []
        sandbox = Sandbox.plan(hide=[ctx.home.root], reveal=reveal)
        if sandbox.level == "environment-only":
            ctx.log(f"WARNING: tests gate isolation is {sandbox.describe()}")
            if self.settings.require_isolation:
                return GateResult(
                    False,
                    "UD-GATE-TESTS-ISOLATION",
                    "this machine allows only environment-only isolation",
                    "run the platform as root or allow unprivileged user namespaces, "
                    "or set settings.require_isolation: false",
                    {"isolation": sandbox.level},
                )
        # Never inside the home: the sandbox covers the home.
        where = (
            None
            if not Path(tempfile.gettempdir()).resolve().is_relative_to(ctx.home.root)
            else "/tmp"
        )
        with tempfile.TemporaryDirectory(prefix="ud-tests-", dir=where) as tmp:
            box = sandbox.workspace(Path(tmp))
            work = box / "src"
            shutil.copytree(ctx.artifact.location, work, symlinks=True)
            if environment:
                environment.attach(work)
            sandbox.give(work)
            junit = box / "junit.xml"
            python = environment.python if environment and environment.python else sys.executable
            cmd = [a.replace("{python}", python) for a in unit.test_command]
            if "pytest" in " ".join(cmd):
                cmd += [f"--junitxml={junit}"]
            env = suite_environment(box / "home", box / "tmp", dict(unit.test_env))
            if environment:
                env = environment.environ(env)
            ctx.log(f"running {' '.join(cmd)} at {ctx.version} (isolation: {sandbox.describe()})")
            output = Path(tmp) / "output"
            code = sandbox.run(
                cmd, cwd=work, box=box, env=env, timeout=self.settings.timeout_s, output=output
            )
            text = _last_bytes(output, OUTPUT_READ)
            counts = _junit_counts(junit) or _summary_counts(text)
        isolation = {"isolation": sandbox.level, "isolation_detail": sandbox.describe()}
        return self._result(ctx, code, text, counts, isolation, environment)

    def _result(
        self,
        ctx: GateContext,
        code: int | None,
        text: str,
        counts: dict[str, int],
        isolation: dict[str, str],
        environment: AppEnvironment | None,
        *,
        in_image: bool = False,
    ) -> GateResult:
        tail = _tail(redact_text(text, known_secret_values(home=ctx.home)))
        if code is None:
            return GateResult(
                False,
                "UD-GATE-TESTS-TIMEOUT",
                f"the test suite ran longer than {self.settings.timeout_s:.0f} s",
                "make the suite faster or raise settings.timeout_s",
                {"commit": ctx.version, **isolation, "output_tail": tail},
            )
        if code == SETUP_FAILED and SETUP_MARK in text:
            return GateResult(
                False,
                "UD-GATE-TESTS-ISOLATION",
                "the sandbox for the test suite could not be set up",
                "see output_tail for the cause (a mount or namespace the kernel refused)",
                {"commit": ctx.version, **isolation, "output_tail": tail},
            )
        meta = {
            "commit": ctx.version,
            "exit_code": code,
            **counts,
            **isolation,
            "output_tail": tail,
        }
        short = ctx.version[:12]
        if code == 0 and counts.get("tests", 0) >= self.settings.min_tests:
            return GateResult(
                True,
                "UD-GATE-TESTS-PASSED",
                f"{counts.get('tests', 0)} tests passed at {short}",
                "",
                meta,
            )
        if code == 0:
            return GateResult(
                False,
                "UD-GATE-TESTS-NONE",
                f"only {counts.get('tests', 0)} tests ran at {short}",
                f"the suite must run at least {self.settings.min_tests} test(s)",
                meta,
            )
        return GateResult(
            False,
            "UD-GATE-TESTS-FAILED",
            f"{counts.get('failures', 0) + counts.get('errors', 0)} of {counts.get('tests', 0)} "
            f"tests failed at {short}",
            _missing_module_remedy(text, environment, in_image=in_image)
            or "fix the failing tests and push a new commit; see output_tail",
            meta,
        )


def _last_bytes(path: Path, limit: int) -> str:
    with open(path, "rb") as fh:
        fh.seek(max(0, fh.seek(0, os.SEEK_END) - limit))
        return fh.read().decode(errors="replace")


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-TAIL_LINES:])[-TAIL_CHARS:]


# `ModuleNotFoundError: No module named 'flask'`, and `python: No module named pytest`
_MISSING_MODULE = re.compile(r"No module named '?([A-Za-z0-9_]+)")


def _missing_module_remedy(
    text: str, environment: AppEnvironment | None, *, in_image: bool = False
) -> str:
    """For a suite that failed on an import its environment lacks: which files to add it to."""
    missing = _MISSING_MODULE.findall(text)
    if not missing:
        return ""
    if in_image:
        return (
            f"the suite could not import {missing[-1]!r} in the app's image: install it in the "
            "image (its Containerfile or Dockerfile), and push a new commit"
        )
    where = (
        f"add {missing[-1]} to the app's dependency files ({', '.join(environment.files)})"
        if environment and environment.files
        else f"declare the app's own `dependencies` (a requirements file with {missing[-1]}): "
        "without them the suite runs on the platform's interpreter"
    )
    return f"the suite could not import {missing[-1]!r}: {where}, and push a new commit"


# The closing lines of runners that write no JUnit file by default: node's test runner (its
# spec and TAP reporters) and Jest.
_NODE_COUNT = re.compile(r"^\s*(?:#|ℹ)\s+(tests|pass|fail|skipped|cancelled)\s+(\d+)\s*$", re.M)
_JEST = re.compile(r"^Tests:\s+(?P<body>.*?(?P<total>\d+) total)\s*$", re.M)
# Python's unittest: "Ran 3 tests in 0.01s", a blank line, "OK (skipped=1)" or "FAILED (...)".
_UNITTEST = re.compile(r"^Ran (\d+) tests? in \S+\n\n(?:OK|FAILED)(?: \((.*)\))?\s*$", re.M)


def _summary_counts(text: str) -> dict[str, int]:
    """Counts from a runner's own summary in its output (the last one), when it left no JUnit:
    node's, Jest's or unittest's."""
    node = dict(_NODE_COUNT.findall(text))
    if "tests" in node:
        return {
            "tests": int(node["tests"]),
            "failures": int(node.get("fail", 0)),
            "errors": int(node.get("cancelled", 0)),
            "skipped": int(node.get("skipped", 0)),
        }
    unittest = _UNITTEST.findall(text)
    if unittest:
        total, said = unittest[-1]
        found = dict((k, int(n)) for k, n in re.findall(r"(failures|errors|skipped)=(\d+)", said))
        return {
            "tests": int(total),
            "failures": found.get("failures", 0),
            "errors": found.get("errors", 0),
            "skipped": found.get("skipped", 0),
        }
    jest = list(_JEST.finditer(text))
    if jest:
        body = jest[-1].group("body")
        found = dict((k, int(n)) for n, k in re.findall(r"(\d+) (failed|skipped|passed)", body))
        return {
            "tests": int(jest[-1].group("total")),
            "failures": found.get("failed", 0),
            "errors": 0,
            "skipped": found.get("skipped", 0),
        }
    return {}


def _junit_counts(path: Path) -> dict[str, int]:
    """Counts from the suite's JUnit file, which the suite itself wrote: opened without
    following links, a regular file of bounded size, or no counts."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > JUNIT_MAX:
            return {}
        try:
            root = ET.parse(fh).getroot()
        except ET.ParseError:
            return {}
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    keys = ("tests", "failures", "errors", "skipped")
    try:
        return {k: sum(int(s.get(k, 0)) for s in suites) for k in keys}
    except ValueError:
        return {}
