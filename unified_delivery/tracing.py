"""Promotions as OpenTelemetry traces: one span per gate evaluated and per target deploy or
rollback, so teams that watch Datadog or Grafana see the pipeline there too.

Where spans go is read from the environment when the first span starts, not at import:
- `UD_TRACES=file` (the default): one JSON object per span, appended to
  `$UD_HOME/traces/spans.jsonl`; nothing on the terminal, nothing on `ud --json`'s stdout.
- `UD_TRACES=console`: the same JSON on stderr.
- `UD_TRACES=otlp`: OTLP over HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT` (or
  `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), with `OTEL_EXPORTER_OTLP_HEADERS`; the default
  when one of those endpoints is set and `UD_TRACES` is not.
- `UD_TRACES=none`: no spans.

Every step of one Dagster run (the gate checks, the deploy) lands in one trace whose id is
the run id without dashes, so a run found in the Dagster UI is found in the tracing tool.
Tracing never stops a promotion: an unknown mode turns tracing off with a warning on
stderr, and a collector that is down loses spans, not deploys.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .home import Home

MODES = ("file", "console", "otlp", "none")
SERVICE = "unified-delivery"
FLUSH_MILLIS = 5000

_PROVIDERS: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()
_WARNED: set[str] = set()


def mode() -> str:
    chosen = os.environ.get("UD_TRACES", "").strip().lower()
    if chosen:
        return chosen
    otlp = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return "otlp" if otlp else "file"


def trace_file(home: Home | None = None) -> Path:
    return (home or Home.current()).root / "traces" / "spans.jsonl"


class _Stderr:
    """sys.stderr as it is when a span ends: `ud` redirects stdout and tests capture streams."""

    def write(self, text: str) -> None:
        sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _build(chosen: str, path: str) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by Resource.create; ours is the
    # fallback name.
    provider = TracerProvider(
        resource=Resource.create(
            {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": SERVICE}
        )
    )
    if chosen == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return provider
    if chosen == "file":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        out: Any = open(
            path, "a", encoding="utf-8"
        )  # held for the process; one line per span, flushed per span
    else:
        out = _Stderr()
    provider.add_span_processor(
        SimpleSpanProcessor(
            ConsoleSpanExporter(out=out, formatter=lambda s: s.to_json(indent=None) + "\n")
        )
    )
    return provider


def provider() -> Any | None:
    """The tracer provider for the current settings (one per mode and file or endpoint), or None
    when tracing is off."""
    chosen = mode()
    if chosen == "none":
        return None
    if chosen not in MODES:
        if chosen not in _WARNED:
            _WARNED.add(chosen)
            print(
                f"ud: UD_TRACES={chosen!r} is not one of {', '.join(MODES)}; tracing is off",
                file=sys.stderr,
            )
        return None
    where = {
        "file": lambda: str(trace_file()),
        "console": lambda: "",
        "otlp": lambda: (
            os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
        ),
    }
    key = (chosen, where[chosen]())
    with _LOCK:
        if key not in _PROVIDERS:
            _PROVIDERS[key] = _build(chosen, key[1])
        return _PROVIDERS[key]


def run_trace_id(run_id: str) -> int:
    try:
        return uuid.UUID(run_id).int
    except ValueError:  # not a Dagster run id: still one stable trace per id
        return int(hashlib.sha256(run_id.encode()).hexdigest()[:32], 16)


def _run_parent(run_id: str) -> Any:
    """A remote parent standing for the run: its steps run in separate processes, each joins the
    run's trace."""
    from opentelemetry import trace

    span_id = int(hashlib.sha256(f"run:{run_id}".encode()).hexdigest()[:16], 16) or 1
    ctx = trace.SpanContext(
        run_trace_id(run_id),
        span_id,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(ctx))


@contextmanager
def span(name: str, *, run_id: str | None = None, **attributes: Any) -> Iterator[Any]:
    """A span around the block (a no-op span when tracing is off); attributes named `ud.<key>`.
    Outside any span, `run_id` puts it in that run's trace. An exception marks it failed and goes
    on."""
    from opentelemetry import trace

    tracing = provider()
    if tracing is None:
        yield trace.INVALID_SPAN
        return
    current = trace.get_current_span().get_span_context()
    parent = _run_parent(run_id) if run_id and not current.is_valid else None
    attrs = {
        f"ud.{k}": v if isinstance(v, (str, bool, int, float)) else str(v)
        for k, v in attributes.items()
        if v is not None
    }
    if run_id:
        attrs["ud.run_id"] = run_id
    try:
        with tracing.get_tracer("unified_delivery").start_as_current_span(
            name, context=parent, attributes=attrs
        ) as s:
            yield s
    finally:
        if (
            not current.is_valid
        ):  # the step's outermost span: do not wait for process exit to ship it
            tracing.force_flush(FLUSH_MILLIS)


def record_gate(s: Any, result: Any) -> None:
    from opentelemetry.trace import Status, StatusCode

    s.set_attribute("ud.gate.passed", bool(result.passed))
    s.set_attribute("ud.gate.code", result.code)
    if not result.passed:
        s.set_status(Status(StatusCode.ERROR, f"{result.code}: {result.message}"[:500]))
