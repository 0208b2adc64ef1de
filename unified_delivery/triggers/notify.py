"""Notify sensor: on every tick, delivers what the ledger has to tell along the platform's
notification routes (notifications/outbox.py), retrying failed deliveries after their back-off.
It requests no runs; a receiver that is down only delays its own messages."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from ..notifications import deliver
from .base import note

if TYPE_CHECKING:
    from ..platform import Platform


def notify_sensor(
    platform: Platform,
    *,
    name: str = "ud_notify",
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    def evaluate(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        report = deliver(
            platform, log=lambda text: note(context, "info", f"{name}: {text}", event="notify")
        )
        for error in report["errors"]:
            note(context, "warning", f"{name}: {error}", event="error")
        return dg.SkipReason(
            f"{report['delivered']} delivered, {report['failed']} to retry, "
            f"{report['dead_letter']} dead-lettered, {report['waiting']} waiting"
        )

    return dg.SensorDefinition(
        name=name,
        evaluation_fn=evaluate,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Delivers refusals, pending approvals, rollbacks, failed deploys and drift "
        "to the platform's webhooks and email, with retries; each outcome in the ledger.",
    )
