"""A canary rollout on the embedded app target: the new release takes a growing share of the
environment's requests through its front door (front_door.py), step by step, while the
analysis of the front door's access log, new release against stable, stays within the
unit's bounds. A breach aborts at once: every request goes back to the stable release, the
new one is stopped by the deploy's own undo, and the reason (with the numbers) is what the
deploy fails with. The progress is in `<env dir>/rollout.json`, which `ud rollout status`
prints.

The analysis of a step reads the access log lines written since the step began:

- requests and errors (answers of 500 and above, a release that refuses connections
  included: nginx answers 502 for it) per release, told apart by the release's port;
- the 95th percentile of the release's own response time.

It is judged while the step runs, once the new release has had `min_requests` requests (so
one early error is not 100 %), and again when the step's pause ends. A step in which the new
release got fewer requests than that is inconclusive: the rollout aborts, unless the unit
says `on_inconclusive: promote`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unified_delivery.targets.front_door import FrontDoor, Route, access_log
from unified_delivery.targets.probes import ReleasePaths
from unified_delivery.targets.state_files import read_json, write_json

if TYPE_CHECKING:
    from unified_delivery.kinds.app.unit import AppUnit, RolloutSpec
    from unified_delivery.targets.base import Log


class Aborted(Exception):
    """The rollout stopped before the new release took every request; the stable one serves."""


@dataclass
class Sample:
    requests: int = 0
    errors: int = 0
    latencies_s: list[float] = field(default_factory=list)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def p95_ms(self) -> float | None:
        if not self.latencies_s:
            return None
        ordered = sorted(self.latencies_s)
        return round(ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] * 1000, 1)

    def summary(self) -> dict[str, Any]:
        rate = self.error_rate
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": None if rate is None else round(rate, 4),
            "latency_p95_ms": self.p95_ms,
        }


def read_split(
    log: Path, offset: int, ports: dict[int, str], *, since: float = 0.0, skip_path: str = ""
) -> dict[str, Sample]:
    """The requests logged from `offset` on (and at or after the epoch time `since`), per
    release (`ports`: port -> role); the platform's own health checks (`skip_path`) are not
    the clients' requests."""
    samples = {role: Sample() for role in ports.values()}
    try:
        with open(log, "rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return samples
    for line in lines:
        parts = line.split()
        if len(parts) < 6:
            continue  # a line being written
        if since:
            try:
                if float(parts[0]) < since:
                    continue
            except ValueError:
                continue
        if skip_path and len(parts) > 6 and parts[6] == skip_path:
            continue
        addr, status, upstream_time = parts[1], parts[2], parts[5]
        try:
            port = int(addr.rsplit(":", 1)[-1].split(",")[0])
        except ValueError:
            continue
        role = ports.get(port)
        if role is None:
            continue
        sample = samples[role]
        sample.requests += 1
        if status.isdigit() and int(status) >= 500:
            sample.errors += 1
        with_time = upstream_time.split(",")[0]
        if with_time not in ("-", ""):
            try:
                sample.latencies_s.append(float(with_time))
            except ValueError:
                pass
    return samples


def judge(spec: RolloutSpec, new: Sample, *, final: bool) -> tuple[str, str]:
    """("passed" | "failed" | "inconclusive" | "running", why) for the new release's sample."""
    bounds = spec.analysis
    if new.requests < bounds.min_requests:
        if not final:
            return "running", f"{new.requests} of {bounds.min_requests} requests so far"
        return "inconclusive", (
            f"the new release got {new.requests} requests in this step, fewer than the "
            f"{bounds.min_requests} its analysis needs"
        )
    rate, p95 = new.error_rate, new.p95_ms
    if bounds.error_rate is not None and rate is not None and rate > bounds.error_rate:
        return "failed", (
            f"error rate {rate:.1%} ({new.errors} of {new.requests} requests) is above "
            f"{bounds.error_rate:.1%}"
        )
    if bounds.latency_p95_ms is not None and p95 is not None and p95 > bounds.latency_p95_ms:
        return "failed", f"latency p95 {p95:g} ms is above {bounds.latency_p95_ms:g} ms"
    return ("passed" if final else "running"), "within bounds"


TAIL_BYTES = 4 << 20  # a monitor reads at most the last 4 MiB of the access log


def recent(paths: ReleasePaths, port: int, window_s: float, skip_path: str = "") -> Sample:
    """What the release on `port` answered through the front door in the last `window_s`."""
    logfile = access_log(paths)
    try:
        size = logfile.stat().st_size
    except FileNotFoundError:
        return Sample()
    offset = max(0, size - TAIL_BYTES)
    since = time.time() - window_s
    return read_split(logfile, offset, {port: "release"}, since=since, skip_path=skip_path)[
        "release"
    ]


def record_path(paths: ReleasePaths) -> Path:
    return paths.root / "rollout.json"


def read_record(paths: ReleasePaths) -> dict | None:
    return read_json(record_path(paths))


def interrupted(paths: ReleasePaths, version: str | None) -> None:
    """A deploy undone by whoever found it killed: its rollout, if one was under way, ended."""
    record = read_record(paths)
    if record and record.get("status") == "progressing" and record.get("version") == version:
        record.update(
            status="aborted",
            weights={"stable": 100, "new": 0},
            reason="the deploying process ended during the rollout; the deploy was undone",
            updated_at=_now(),
        )
        write_json(record_path(paths), record)


def run(
    unit: AppUnit,
    env: str,
    paths: ReleasePaths,
    door: FrontDoor,
    *,
    stable_port: int,
    new_port: int,
    version: str,
    stable_version: str | None,
    log: Log,
) -> dict[str, Any]:
    """Take the new release through the unit's steps; the record when every step passed (the
    caller then sends it every request and switches). Raises Aborted with the reason after
    sending every request back to the stable release."""
    spec = unit.rollout
    assert spec is not None
    record: dict[str, Any] = {
        "unit": unit.name,
        "env": env,
        "version": version,
        "stable_version": stable_version,
        "status": "progressing",
        "step": 0,
        "steps": [s.model_dump() for s in spec.steps],
        "weights": {"stable": 100, "new": 0},
        "analysis": [],
        "started_at": _now(),
        "updated_at": _now(),
        "reason": None,
    }
    ports = {stable_port: "stable", new_port: "new"}
    logfile = access_log(paths)
    try:
        for number, step in enumerate(spec.steps, 1):
            door.route(paths, unit.name, env, Route.split(stable_port, new_port, step.weight))
            offset = logfile.stat().st_size if logfile.exists() else 0
            record.update(step=number, weights={"stable": 100 - step.weight, "new": step.weight})
            log(
                f"rollout of {unit.name}/{env} {version}: step {number}/{len(spec.steps)}, "
                f"{step.weight}% of requests for {step.pause_s:g} s"
            )
            entry: dict[str, Any] = {"step": number, "weight": step.weight}
            record["analysis"].append(entry)
            deadline = time.monotonic() + step.pause_s
            while True:
                final = time.monotonic() >= deadline
                samples = read_split(logfile, offset, ports, skip_path=unit.service.health_path)
                verdict, why = judge(spec, samples["new"], final=final)
                entry.update(
                    new=samples["new"].summary(),
                    stable=samples["stable"].summary(),
                    verdict=verdict,
                )
                record["updated_at"] = _now()
                write_json(record_path(paths), record)
                if verdict == "failed" or (
                    verdict == "inconclusive" and spec.analysis.on_inconclusive == "abort"
                ):
                    raise Aborted(
                        f"step {number} ({step.weight}% of requests): {why}; stable "
                        f"{_said(samples['stable'])}"
                    )
                if final:
                    if verdict == "inconclusive":
                        log(f"step {number}: {why}; going on (on_inconclusive: promote)")
                    break
                time.sleep(min(spec.analysis.interval_s, max(0.0, deadline - time.monotonic())))
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, Aborted) else f"{type(exc).__name__}: {exc}"
        try:
            door.route(paths, unit.name, env, Route.only(stable_port))
        finally:
            record.update(
                status="aborted",
                weights={"stable": 100, "new": 0},
                reason=reason,
                updated_at=_now(),
            )
            write_json(record_path(paths), record)
        log(f"rollout of {unit.name}/{env} {version} aborted: {reason}")
        raise
    record.update(status="completed", weights={"stable": 0, "new": 100}, updated_at=_now())
    write_json(record_path(paths), record)
    log(f"rollout of {unit.name}/{env} {version} completed: every step within bounds")
    return record


def _said(sample: Sample) -> str:
    s = sample.summary()
    if not s["requests"]:
        return "got no requests"
    rate = f"{s['error_rate']:.1%}" if s["error_rate"] is not None else "-"
    return f"{s['requests']} requests, error rate {rate}, p95 {s['latency_p95_ms']} ms"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
