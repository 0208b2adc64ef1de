"""This platform's deploy targets, ledger, policy, prices and notifications: the one place the environment
picks them. The embedded defaults keep everything under $UD_HOME (`.ud/`); UD_MLFLOW_TRACKING_URI,
UD_WAREHOUSE and UD_LEDGER_URL point them at shared services. For Kubernetes and Postgres,
swap the targets here (see the unified-delivery docs: kubernetes.md)."""

from pathlib import Path

from unified_delivery.cost import CostModel
from unified_delivery.governance import Governance
from unified_delivery.ledger import LedgerResource
from unified_delivery.notifications import Notifications
from unified_delivery.platform import default_targets

HERE = Path(__file__).parent


def platform_resources() -> dict:
    return {
        "targets": default_targets(),
        "ledger": LedgerResource(),
        "governance": Governance.from_file(HERE / "policy.yaml"),
        "costs": CostModel.from_file(HERE / "prices.yaml"),
        # Who is told what (docs/notifications.md); without the file, nobody.
        "notifications": Notifications.from_file(HERE / "notifications.yaml"),
    }
