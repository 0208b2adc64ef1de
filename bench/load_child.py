"""One definitions load, in this fresh process, from the platform in the current folder.

Prints one JSON line: seconds per phase (framework imports, `assets.definitions`, and
Dagster resolving the whole repository as a code location does), peak memory and counts.
"""

import time

STARTED = time.perf_counter()

import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

import dagster as dg  # noqa: E402

import unified_delivery  # noqa: E402, F401

IMPORTED = time.perf_counter()
sys.path.insert(0, ".")
from assets.definitions import defs  # noqa: E402

LOADED = time.perf_counter()
dg.Definitions.validate_loadable(defs)
RESOLVED = time.perf_counter()

repo = defs.get_repository_def()
graph = repo.asset_graph
print(json.dumps({
    "imports_s": IMPORTED - STARTED,
    "definitions_s": LOADED - IMPORTED,
    "resolve_s": RESOLVED - LOADED,
    "in_process_s": RESOLVED - STARTED,
    "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "assets": len(graph.get_all_asset_keys()),
    "checks": len(graph.asset_check_keys),
    "jobs": len([j for j in repo.get_all_jobs() if not j.name.startswith("__")]),
}))
