"""What the code server's runs start from (code_server.serve): imported once in the fork server
of a code server, before any run, so that each run's process is forked with Dagster, the
instance's storage and the platform's definitions already imported.

It imports the definitions module named by $UD_RUN_WORKER_PRELOAD and opens the instance of
$DAGSTER_HOME once (which imports its storage: SQLAlchemy, Alembic, Dagster's SQL storages),
then disposes of it, so that no connection or thread is carried into a fork. The fork server
is single-threaded and runs nothing itself. A definitions module that does not import here (it
imported in the code server, so this is rare) only costs each run the import it would have
paid anyway, and the run reports the real error.
"""

import contextlib
import importlib
import os

with contextlib.suppress(Exception):
    import dagster

    module = os.environ.get("UD_RUN_WORKER_PRELOAD")
    if module:
        importlib.import_module(module)
    if os.environ.get("DAGSTER_HOME"):
        dagster.DagsterInstance.get().dispose()
