"""Notifications: the ledger is the outbox. What happened (a refusal, an approval waiting, a
rollback, a drift, a failed deploy) is read back from the ledger and delivered along the routes
of the platform's `resources/notifications.yaml` to webhooks (Slack-compatible, or a generic
JSON body signed with HMAC-SHA256) and to email over SMTP, with retries and back-off; every
attempt that ends (delivered, or dead-lettered after the last retry) is itself a ledger entry.
Delivery runs after `ud`'s own commands and on the `ud_notify` sensor's ticks, never inside a
promotion: a receiver that is down delays its own messages, nothing else."""

from .config import Notifications
from .outbox import deliver

__all__ = ["Notifications", "deliver"]
