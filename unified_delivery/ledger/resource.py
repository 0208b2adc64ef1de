"""The ledger as a Dagster resource: what a platform's definitions name (resources/). Apart from
chain.py so that a reader of the ledger (`ud status`) needs no Dagster."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ..home import Home
from .chain import Ledger, LedgerEntry, ledger_for
from .keys import LedgerKey


class LedgerResource(dg.ConfigurableResource):
    """The ledger as a Dagster resource; Postgres at scale, the embedded SQLite file by default."""

    url: str = Field(
        default="", description="SQLAlchemy URL; empty means the embedded home's SQLite file."
    )

    def ledger(self) -> Ledger:
        # Resolved here, at run time, so one process can serve several homes.
        home = Home.current()
        if not self.url and not home.root.exists():
            home.ensure()
        return ledger_for(self.url or home.ledger_url, LedgerKey.for_home(home))

    def append(
        self,
        action: str,
        *,
        principal: str,
        unit: str | None = None,
        env: str | None = None,
        version: str | None = None,
        payload: dict | None = None,
    ) -> LedgerEntry:
        return self.ledger().append(
            action, principal=principal, unit=unit, env=env, version=version, payload=payload
        )
