"""Security: a static scan of the app's code (bandit) and a scan for committed secrets
(detect-secrets), on the source tree exported at the candidate commit.

    - type: security
      settings: {severity: medium}   # the lowest bandit severity that refuses

Bandit runs in a child process on the platform's interpreter and skips `exclude` (test
code by default: it does not ship). The secrets scan covers every file, tests included:
a key committed in a test is still committed. Secrets are never echoed: metadata shows
their kind, file and line, and a masked value.

What the repository already keeps for these tools is honoured, as their own hooks do:
- bandit's configuration: `[tool.bandit]` in pyproject.toml, a `.bandit` INI file or a
  `bandit.yaml` (its skips and excluded folders), and `# nosec` comments;
- detect-secrets: `# pragma: allowlist secret` on a line, and a `.secrets.baseline`: a
  secret recorded there (same file, kind and hash) is known, not new, unless the baseline's
  audit marked it a real secret (`is_secret: true`). Only the baseline's results are read,
  never its plugin or filter settings: a custom plugin there would be code from the commit
  run in the platform's process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import Field

from ..engine.overrides import OverriddenGate, ScopedOverride, scoped_overrides
from ..errors import UDError
from .base import Gate, GateContext, GateResult, GateSettings

LEVELS = {"low": 1, "medium": 2, "high": 3}
MAX_FILE_BYTES = 1_000_000  # larger files are data or build output, not source


class SecuritySettings(GateSettings):
    severity: Literal["low", "medium", "high"] = "medium"
    exclude: list[str] = Field(default_factory=lambda: ["*/tests/*", "*/test_*.py"])  # bandit only
    skip: list[str] = Field(default_factory=list)  # bandit test ids, e.g. B101
    secrets: bool = True
    timeout_s: float = Field(default=300.0, gt=0)


class SecurityGate(Gate[SecuritySettings]):
    type = "security"
    family = "security"
    kinds = ("app",)
    Settings = SecuritySettings
    scoped_findings = True

    def evaluate(self, ctx: GateContext) -> GateResult:
        if (
            ctx.artifact is None
            or not ctx.artifact.location
            or not Path(ctx.artifact.location).is_dir()
        ):
            raise UDError(
                "UD-GATE-SECURITY-ERROR",
                f"unit {ctx.unit.name}: no built source tree to scan",
                "materialize the candidate first",
            )
        tree = Path(ctx.artifact.location)
        ctx.log(f"scanning {tree} at {ctx.version[:12]}")
        findings, scanned = bandit_scan(tree, self.settings)
        secrets, known = secret_scan(tree) if self.settings.secrets else ([], 0)
        scoped = self._scoped_overrides(ctx)
        findings, covered = split_covered(findings, "test", scoped)
        secrets, covered_secrets = split_covered(secrets, "kind", scoped)
        covered += covered_secrets
        meta = {
            "commit": ctx.version,
            "severity_threshold": self.settings.severity,
            "files_scanned": scanned,
            "findings": findings[:50],
            "secrets": secrets[:50],
            "secrets_in_baseline": known,
            "covered": covered[:50],
        }
        # File and rule as a scoped override names them (`ud override --file F --rule R`).
        where = ", ".join(
            f"{f['file']}:{f['line']} ({f.get('kind') or f.get('test')})"
            for f in (secrets or findings)[:5]
        )
        if secrets:
            also = f" and {len(findings)} code finding(s)" if findings else ""
            return GateResult(
                False,
                "UD-GATE-SECURITY-SECRETS",
                f"{len(secrets)} committed secret(s){also} at {ctx.version[:12]}: {where}",
                "remove the secret from the code, rotate it (it is in the Git history), and read "
                "it from the environment at run time",
                meta,
            )
        if findings:
            return GateResult(
                False,
                "UD-GATE-SECURITY-FINDINGS",
                f"{len(findings)} bandit finding(s) of severity {self.settings.severity} or above "
                f"at {ctx.version[:12]}: {where}",
                "fix the code; a reviewed false positive takes a `# nosec BXXX` comment, or a "
                "scoped override for a period: ud override UNIT --gate GATE --file F --rule R",
                meta,
            )
        also = f"; {len(covered)} covered by scoped overrides" if covered else ""
        return GateResult(
            True,
            "UD-GATE-SECURITY-OK",
            f"no finding of severity {self.settings.severity} or above and no secret in {scanned} "
            f"files{also}",
            "",
            meta,
        )

    def _scoped_overrides(self, ctx: GateContext) -> list[ScopedOverride]:
        """The overrides of one finding of this gate in force, for the principal gating."""
        if ctx.ledger is None:  # a gate evaluated outside a platform (a unit test)
            return []
        gate = OverriddenGate(ctx.unit.name, self.name, ctx.stage, self.overridable)
        return [
            o
            for o in scoped_overrides(ctx.ledger, gate)
            if o.for_principal(ctx.principal or None, ctx.governance, ctx.guards)
        ]


def split_covered(
    found: list[dict], rule_key: str, scoped: list[ScopedOverride]
) -> tuple[list[dict], list[dict]]:
    """`found` split into what no scoped override covers and what one does (with the override
    that covers it: the engine records each use in the ledger)."""
    left, covered = [], []
    for f in found:
        override = next((o for o in scoped if o.covers(f["file"], f[rule_key])), None)
        if override is None:
            left.append(f)
        else:
            covered.append(
                {
                    "file": f["file"],
                    "line": f["line"],
                    "rule": f[rule_key],
                    "override_seq": override.seq,
                    "overridden_by": override.by,
                    "justification": override.justification,
                    "expires_at": override.expires_at,
                }
            )
    return left, covered


def bandit_scan(tree: Path, s: SecuritySettings) -> tuple[list[dict], int]:
    """Bandit's findings at or above the severity threshold, and how many files it read.
    A file bandit cannot parse is a finding: code nobody scanned does not pass."""
    cmd = [sys.executable, "-m", "bandit", "-r", ".", "-f", "json", "-q", *bandit_config(tree)]
    if s.exclude:
        cmd += ["-x", ",".join(s.exclude)]
    if s.skip:
        cmd += ["-s", ",".join(s.skip)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    try:
        proc = subprocess.run(
            cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=s.timeout_s
        )
    except subprocess.TimeoutExpired:
        raise UDError(
            "UD-GATE-SECURITY-ERROR",
            f"bandit ran longer than {s.timeout_s:.0f} s",
            "raise settings.timeout_s or exclude generated code",
        ) from None
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise UDError(
            "UD-GATE-SECURITY-ERROR",
            f"bandit failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}",
            "check that bandit is installed in the platform's environment",
        ) from None
    threshold = LEVELS[s.severity]
    findings = [
        {
            "file": r["filename"].removeprefix("./"),
            "line": r["line_number"],
            "test": r["test_id"],
            "severity": r["issue_severity"].lower(),
            "confidence": r["issue_confidence"].lower(),
            "issue": r["issue_text"],
        }
        for r in report.get("results", [])
        if LEVELS.get(r["issue_severity"].lower(), 3) >= threshold
    ]
    findings += [
        {
            "file": e["filename"].removeprefix("./"),
            "line": 0,
            "test": "parse-error",
            "severity": "high",
            "confidence": "high",
            "issue": f"bandit could not parse the file: {e['reason'][:200]}",
        }
        for e in report.get("errors", [])
    ]
    scanned = sum(1 for k in report.get("metrics", {}) if k != "_totals")
    return findings, scanned


def bandit_config(tree: Path) -> list[str]:
    """The arguments that make bandit read the repository's own configuration, if it has one."""
    pyproject = tree / "pyproject.toml"
    if pyproject.is_file():
        try:
            has_section = "bandit" in tomllib.loads(pyproject.read_text()).get("tool", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            has_section = False  # bandit would fail on it too; scanned without it
        if has_section:
            return ["-c", "pyproject.toml"]
    for name in ("bandit.yaml", "bandit.yml", ".bandit.yaml", ".bandit.yml"):
        if (tree / name).is_file():
            return ["-c", name]
    if (tree / ".bandit").is_file():
        return ["--ini", ".bandit"]
    return []


def baseline(tree: Path) -> set[tuple[str, str, str]]:
    """(file, kind, hash) of every secret the repository's `.secrets.baseline` records as
    known; one its audit marked real (`is_secret: true`) is not known. An unreadable baseline
    is an error: a scan that silently ignored it would refuse what the team accepted."""
    path = tree / ".secrets.baseline"
    if not path.is_file():
        return set()
    try:
        results = json.loads(path.read_text()).get("results") or {}
        return {
            (str(name).removeprefix("./"), str(r["type"]), str(r["hashed_secret"]))
            for name, entries in results.items()
            for r in entries
            if r.get("is_secret") is not True
        }
    except (ValueError, AttributeError, KeyError, TypeError) as exc:
        raise UDError(
            "UD-GATE-SECURITY-ERROR",
            f".secrets.baseline cannot be read: {type(exc).__name__}: {exc}"[:300],
            "regenerate it: detect-secrets scan > .secrets.baseline",
        ) from None


def secret_scan(tree: Path) -> tuple[list[dict], int]:
    """Committed secrets found by detect-secrets' default plugins and filters, masked, and
    how many more the repository's baseline knows."""
    from detect_secrets.core.secrets_collection import SecretsCollection
    from detect_secrets.settings import default_settings

    found = SecretsCollection(root=str(tree))
    known = baseline(tree)
    with default_settings():
        for path in sorted(tree.rglob("*")):
            if (
                path.is_file()
                and path != tree / ".secrets.baseline"  # hashes, not secrets
                and ".git" not in path.relative_to(tree).parts
                and path.stat().st_size <= MAX_FILE_BYTES
            ):
                found.scan_file(str(path.relative_to(tree)))
    every = list(found)
    new = [(f, secret) for f, secret in every if (f, secret.type, secret.secret_hash) not in known]
    secrets = sorted(
        (
            {
                "file": filename,
                "line": secret.line_number,
                "kind": secret.type,
                "masked": mask(secret.secret_value or ""),
            }
            for filename, secret in new
        ),
        key=lambda f: (f["file"], f["line"], f["kind"]),
    )
    return secrets, len(every) - len(new)


def mask(value: str) -> str:
    """Enough to recognise a long key by its prefix, never enough to use it."""
    return (value[:4] if len(value) >= 16 else "") + "*" * 8 + f" ({len(value)} chars)"
