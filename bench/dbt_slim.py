"""Slim CI on the platform: a candidate of a changed 300-model dbt project built against the
production state (`state:modified+`, the rest deferred) vs the same candidate built in full.

    python bench/dbt_slim.py --workdir /tmp/ud-bench-dbt --out /tmp/ud-bench-dbt/slim.json

Generates a project (3 seeds, staging views, layered mart tables each reading two earlier
models, a not_null test per mart), builds it in full with the platform's DuckDB target and
publishes it to production (which keeps the production state), changes one mart near the
end of the graph, then builds the changed project twice, side by side in the same run: as
the platform does (slim: what changed and its children, unchanged selected models as views
onto production's relations) and in full (a unit with no production state); then the same
for a change to a staging model that many marts read (production still serves the first
build, so that candidate has both changes). Each build is timed on the wall and in CPU
(this process and its children: dbt). The project's shadow and manifest are made before
either build is timed: both pay the same parse.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def generate(project: Path, models: int) -> None:
    shutil.rmtree(project, ignore_errors=True)
    (project / "seeds").mkdir(parents=True)
    (project / "models" / "staging").mkdir(parents=True)
    (project / "models" / "marts").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: slim\nversion: '1.0.0'\nprofile: slim\nmodels:\n  slim:\n"
        "    staging: {+materialized: view}\n    marts: {+materialized: table}\n"
    )
    for s in range(3):
        rows = "\n".join(f"{i},{(i * 7 + s) % 97},{i % 5}" for i in range(200))
        (project / "seeds" / f"raw_{s}.csv").write_text("id,amount,bucket\n" + rows + "\n")
    staging = max(3, models // 10)
    names = []
    for i in range(staging):
        name = f"stg_{i:03d}"
        (project / "models" / "staging" / f"{name}.sql").write_text(
            f"select id, amount + {i} as amount, bucket from {{{{ ref('raw_{i % 3}') }}}}\n"
        )
        names.append(name)
    tests = ["version: 2", "models:"]
    for i in range(models - staging):
        name = f"mart_{i:03d}"
        a, b = names[(i * 7) % len(names)], names[(i * 13 + 1) % len(names)]
        (project / "models" / "marts" / f"{name}.sql").write_text(
            f"select x.id, x.amount + y.amount as amount, x.bucket\n"
            f"from {{{{ ref('{a}') }}}} as x join {{{{ ref('{b}') }}}} as y on x.id = y.id\n"
        )
        tests += [f"  - name: {name}", "    columns:", "      - name: id",
                  "        data_tests: [not_null]"]
        names.append(name)
    (project / "models" / "marts" / "_marts.yml").write_text("\n".join(tests) + "\n")


def cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(label: str, build) -> tuple[dict, object]:
    wall, used = time.perf_counter(), cpu()
    artifact = build()
    out = {
        "build": label,
        "wall_s": round(time.perf_counter() - wall, 2),
        "cpu_s": round(cpu() - used, 2),
        "nodes_built": len(artifact.details["built"]),
        "models_reused": len(artifact.details["reused"]),
    }
    print(json.dumps(out), flush=True)
    return out, artifact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ud-bench-dbt"))
    parser.add_argument("--models", type=int, default=300)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.environ["UD_HOME"] = str(work / "home")
    os.environ["UD_DBT_CACHE"] = str(work / "dbt-cache")

    from unified_delivery import dbt
    from unified_delivery.kinds.data.unit import DataUnit
    from unified_delivery.targets.dbt_duckdb import DbtDuckDBTarget

    project = work / "project"
    generate(project, args.models)
    target = DbtDuckDBTarget(warehouse=str(work / "warehouse.duckdb"))
    select = "path:models path:seeds"

    def unit(name: str) -> DataUnit:
        return DataUnit(name=name, team="bench", project=str(project), select=select, publish=[])

    def models() -> list[str]:
        manifest = dbt.ensure_manifest(project)
        return [n["name"] for u, n in manifest["nodes"].items() if n["resource_type"] == "model"]

    def build(u: DataUnit, version: str):
        return target.write(u, version, models=models(), project=project)

    shop = unit("slim_shop")
    dbt.ensure_manifest(project)
    first, v1 = timed("first full build (no production yet)", lambda: build(shop, "v1"))
    target.deploy(shop, "production", v1)  # keeps the production state the next build reads
    marts = project / "models" / "marts"
    changes = [  # one mart near the end of the graph, then one staging model many marts read
        marts / f"mart_{args.models - args.models // 10 - 5:03d}.sql",
        project / "models" / "staging" / "stg_005.sql",
    ]
    rows = []
    for i, changed in enumerate(changes, start=2):
        changed.write_text(changed.read_text().replace("as amount", "* 2 as amount", 1))
        dbt.ensure_manifest(project)  # the changed project's shadow and manifest: not timed
        slim, _ = timed(f"{changed.name} changed, slim", lambda: build(shop, f"v{i}"))
        full, _ = timed(f"{changed.name} changed, full", lambda: build(unit(f"full{i}"), f"v{i}"))
        rows.append({
            "changed": changed.name,
            "slim": slim,
            "full": full,
            "cpu_saving": round(1 - slim["cpu_s"] / full["cpu_s"], 3),
            "wall_saving": round(1 - slim["wall_s"] / full["wall_s"], 3),
        })
    result = {
        "models": args.models,
        "first_build": first,
        "changes": rows,
        "machine": {"cores": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2)},
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
