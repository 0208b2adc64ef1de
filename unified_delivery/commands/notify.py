"""`ud notify`: deliver now what the ledger has to tell along the platform's notification
routes (what the ud_notify sensor does on each tick), and say what happened."""

from __future__ import annotations

from .. import service


def cmd_notify(args, out) -> int:
    from ..notifications import deliver

    platform, _ = service.load_platform()
    report = deliver(platform, log=out.progress)
    if report.get("configured") is False:
        text = (
            f"no notification routes ({platform.notifications.source}): nothing to deliver "
            "(docs/notifications.md)"
        )
    elif report.get("busy"):
        text = "another delivery is under way (the ud_notify sensor?); nothing sent"
    else:
        text = (
            f"{report['delivered']} delivered, {report['failed']} to retry, "
            f"{report['dead_letter']} dead-lettered, {report['waiting']} waiting"
        )
    out.result(report, text)
    return 0


def register(add) -> None:
    add(
        "notify",
        cmd_notify,
        "deliver pending notifications now (refusals, approvals waiting, rollbacks, drift)",
    )
