"""Security: a static scan of the app's code (bandit) and a scan for committed secrets
(detect-secrets), on the source tree exported at the candidate commit.

    - type: security
      settings: {severity: medium}   # the lowest bandit severity that refuses

Bandit runs in a child process on the platform's interpreter and skips `exclude` (test
code by default: it does not ship). The secrets scan covers every file, tests included:
a key committed in a test is still committed. A line that holds a known false positive
is allowlisted with a `# pragma: allowlist secret` comment. Secrets are never echoed:
metadata shows their kind, file and line, and a masked value.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field

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
        secrets = secret_scan(tree) if self.settings.secrets else []
        meta = {
            "commit": ctx.version,
            "severity_threshold": self.settings.severity,
            "files_scanned": scanned,
            "findings": findings[:50],
            "secrets": secrets[:50],
        }
        where = ", ".join(f"{f['file']}:{f['line']}" for f in (secrets or findings)[:5])
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
                "fix the code; a reviewed false positive takes a `# nosec BXXX` comment",
                meta,
            )
        return GateResult(
            True,
            "UD-GATE-SECURITY-OK",
            f"no finding of severity {self.settings.severity} or above and no secret in {scanned} "
            "files",
            "",
            meta,
        )


def bandit_scan(tree: Path, s: SecuritySettings) -> tuple[list[dict], int]:
    """Bandit's findings at or above the severity threshold, and how many files it read.
    A file bandit cannot parse is a finding: code nobody scanned does not pass."""
    cmd = [sys.executable, "-m", "bandit", "-r", ".", "-f", "json", "-q"]
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


def secret_scan(tree: Path) -> list[dict]:
    """Committed secrets found by detect-secrets' default plugins and filters, masked."""
    from detect_secrets.core.secrets_collection import SecretsCollection
    from detect_secrets.settings import default_settings

    found = SecretsCollection(root=str(tree))
    with default_settings():
        for path in sorted(tree.rglob("*")):
            if (
                path.is_file()
                and ".git" not in path.relative_to(tree).parts
                and path.stat().st_size <= MAX_FILE_BYTES
            ):
                found.scan_file(str(path.relative_to(tree)))
    return sorted(
        (
            {
                "file": filename,
                "line": secret.line_number,
                "kind": secret.type,
                "masked": mask(secret.secret_value or ""),
            }
            for filename, secret in found
        ),
        key=lambda f: (f["file"], f["line"], f["kind"]),
    )


def mask(value: str) -> str:
    """Enough to recognise a long key by its prefix, never enough to use it."""
    return (value[:4] if len(value) >= 16 else "") + "*" * 8 + f" ({len(value)} chars)"
