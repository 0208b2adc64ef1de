"""`ud rollout status UNIT --env ENV`: where an app's canary is, its weights and each step's
analysis, new release against stable (service/rollouts.py)."""

from __future__ import annotations

from ..output import table


def cmd_rollout_status(args, out) -> int:
    from ..service.rollouts import rollout_status

    data = rollout_status(args.unit, args.env)

    def text() -> str:
        if data["status"] == "none":
            return f"{args.unit} has had no rollout in {args.env}"
        steps = data["steps"]
        head = (
            f"{data['unit']} in {data['env']}: {data['version']} over {data['stable_version']}, "
            f"{data['status']}, step {data['step']}/{len(steps)}, "
            f"weights stable {data['weights']['stable']}% / new {data['weights']['new']}%"
            f"  (updated {data['updated_at']})"
        )
        rows = [("step", "weight", "verdict", "new: req", "err", "p95 ms", "stable: req", "err")]
        for a in data["analysis"]:
            new, stable = a.get("new", {}), a.get("stable", {})
            rows.append(
                (
                    str(a["step"]),
                    f"{a['weight']}%",
                    a.get("verdict", "-"),
                    str(new.get("requests", 0)),
                    _rate(new.get("error_rate")),
                    str(new.get("latency_p95_ms") or "-"),
                    str(stable.get("requests", 0)),
                    _rate(stable.get("error_rate")),
                )
            )
        why = f"\nwhy: {data['reason']}" if data.get("reason") else ""
        return head + "\n" + table(rows) + why

    out.result(data, text)
    return 0


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def register(add) -> None:
    sp = add(
        "rollout",
        cmd_rollout_status,
        "an app's canary in an environment: its step, weights and analysis (docs/canary.md)",
    )
    sp.add_argument("verb", choices=["status"])
    sp.add_argument("unit")
    sp.add_argument("--env", required=True)
