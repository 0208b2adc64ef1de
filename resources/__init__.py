"""This platform's deploy targets and ledger: the one place the environment picks them.

Embedded defaults keep everything under $UD_HOME (`.ud/`). Empty fields resolve at run
time through `unified_delivery.home.Home`, which also honours UD_MLFLOW_TRACKING_URI,
UD_WAREHOUSE and UD_LEDGER_URL, so pointing at shared services needs variables only.
"""

from pathlib import Path

from unified_delivery.cost import CostModel
from unified_delivery.governance import Governance
from unified_delivery.ledger import LedgerResource
from unified_delivery.notifications import Notifications
from unified_delivery.targets.dbt_duckdb import DbtDuckDBTarget
from unified_delivery.targets.local_artifact import LocalArtifactTarget
from unified_delivery.targets.local_release import LocalReleaseTarget
from unified_delivery.targets.mlflow_alias import MlflowAliasTarget


def platform_resources() -> dict:
    return {
        "targets": {"app": LocalReleaseTarget(), "model": MlflowAliasTarget(), "data": DbtDuckDBTarget(),
                    "asset": LocalArtifactTarget()},
        "ledger": LedgerResource(),
        "governance": Governance.from_file(Path(__file__).parent / "policy.yaml"),
        "costs": CostModel.from_file(Path(__file__).parent / "prices.yaml"),
        # Who is told what (docs/notifications.md); without the file, nobody.
        "notifications": Notifications.from_file(Path(__file__).parent / "notifications.yaml"),
    }
