"""The platform's definitions against the same graph written in plain Dagster, side by side.

    python bench/load_ratio.py --workdir /tmp/ud-ratio --sizes 100 1000 --repeat 3

For each size: generate the synthetic platform (bench/synthetic.py), load its definitions once
to read their asset graph (every asset with its group, description and dependencies, every
check with its asset and blocking flag), and write beside it the Dagster a team would write by
hand for that graph: one plain `@dg.asset` per stage asset and one `@dg.asset_check` per gate,
in a loop over the graph (plain.py below), no jobs, sensors or resources of the platform's own.
Then `dagster definitions validate` runs on each workspace, alternately (platform, plain,
platform, plain...), each in a fresh process, and the medians are compared: the ratio is what
the platform's definitions cost over Dagster's own for the same graph (goal: 1.2x or less).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH, PYTHON, child_env, machine, median, run_child, save, table  # noqa: E402

import load  # noqa: E402

DAGSTER = str(Path(PYTHON).with_name("dagster"))

# What the platform's definitions hold, as data: run in the platform's folder.
EXTRACT = """
import json, sys
sys.path.insert(0, ".")
from assets.definitions import defs
graph = defs.get_repository_def().asset_graph
assets = []
for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
    node = graph.get(key)
    assets.append({"key": list(key.path), "group": node.group_name, "description": node.description,
                   "deps": [list(p.path) for p in sorted(node.parent_keys, key=lambda k: k.to_user_string())]})
checks = []
for ck in sorted(graph.asset_check_keys, key=lambda c: c.to_user_string()):
    spec = graph.get_check_spec(ck)
    checks.append({"asset": list(ck.asset_key.path), "name": ck.name, "blocking": spec.blocking,
                   "description": spec.description})
repo = defs.get_repository_def()
jobs = [j.name for j in repo.get_all_jobs() if not j.name.startswith("__")]
print(json.dumps({"assets": assets, "checks": checks, "jobs": len(jobs),
                  "sensors": len(repo.sensor_defs), "schedules": len(repo.schedule_defs)}))
"""

PLAIN = '''"""The synthetic platform's asset graph written in plain Dagster (bench/load_ratio.py)."""

import json
from pathlib import Path

import dagster as dg

GRAPH = json.loads((Path(__file__).parent / "graph.json").read_text())


def stage_asset(spec: dict) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey(spec["key"]),
        deps=[dg.AssetKey(d) for d in spec["deps"]],
        group_name=spec["group"],
        description=spec["description"],
    )
    def stage() -> None:
        return None

    return stage


def gate_check(spec: dict) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(spec["asset"]),
        name=spec["name"],
        blocking=spec["blocking"],
        description=spec["description"],
    )
    def gate() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    return gate


defs = dg.Definitions(
    assets=[stage_asset(a) for a in GRAPH["assets"]],
    asset_checks=[gate_check(c) for c in GRAPH["checks"]],
)
'''

WORKSPACE = """load_from:
  - python_file:
      relative_path: plain.py
      attribute: defs
      working_directory: .
      location_name: plain
"""


def plain_equivalent(platform: Path, env: dict[str, str], out: Path) -> dict:
    """Write the plain-Dagster workspace of `platform`'s graph into `out`; the graph's counts."""
    graph = run_child([PYTHON, "-c", EXTRACT], cwd=platform, env=env)
    out.mkdir(parents=True, exist_ok=True)
    (out / "graph.json").write_text(json.dumps({"assets": graph["assets"], "checks": graph["checks"]}))
    (out / "plain.py").write_text(PLAIN)
    (out / "workspace.yaml").write_text(WORKSPACE)
    return {"assets": len(graph["assets"]), "checks": len(graph["checks"]), "jobs": graph["jobs"],
            "sensors": graph["sensors"], "schedules": graph["schedules"]}


def validate(folder: Path, env: dict[str, str]) -> dict:
    v = run_child([PYTHON, str(BENCH / "measure_command.py"), DAGSTER, "definitions", "validate", "-w", "workspace.yaml"],
                  cwd=folder, env=env)
    if v["returncode"] != 0:
        raise RuntimeError(f"dagster definitions validate failed in {folder}:\n{v['output_tail']}")
    return v


def measure(size: int, workdir: Path, repeat: int) -> dict:
    platform, parse_s = load.prepare(size, workdir)
    dagster_home = workdir / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = child_env(UD_HOME=str(workdir / "home"), DAGSTER_HOME=str(dagster_home))
    plain = workdir / f"plain-{size}"
    counts = plain_equivalent(platform, env, plain)
    runs: dict[str, list[dict]] = {"platform": [], "plain": []}
    for i in range(repeat):
        for name, folder in (("platform", platform), ("plain", plain)):
            runs[name].append(validate(folder, env))
            print(f"{size} units, {name} #{i + 1}: {runs[name][-1]['wall_s']:.1f} s wall, "
                  f"{runs[name][-1]['cpu_s']:.1f} s CPU", file=sys.stderr)
    row = {"units": size, "dbt_parse_s": parse_s, **counts, "runs": runs}
    for name in runs:
        row[f"{name}_wall_s"] = median([r["wall_s"] for r in runs[name]])
        row[f"{name}_cpu_s"] = median([r["cpu_s"] for r in runs[name]])
        row[f"{name}_maxrss_mb"] = median([r["maxrss_mb"] for r in runs[name]])
    row["ratio_wall"] = row["platform_wall_s"] / row["plain_wall_s"]
    row["ratio_cpu"] = row["platform_cpu_s"] / row["plain_cpu_s"]
    return row


def report(rows: list[dict]) -> str:
    return table(
        ["units", "assets", "checks", "platform jobs", "platform validate s (CPU s)", "plain Dagster validate s (CPU s)",
         "ratio wall", "ratio CPU", "peak RSS MiB platform / plain"],
        [[r["units"], r["assets"], r["checks"], r["jobs"], f"{r['platform_wall_s']:.2f} ({r['platform_cpu_s']:.2f})",
          f"{r['plain_wall_s']:.2f} ({r['plain_cpu_s']:.2f})", f"{r['ratio_wall']:.2f}x", f"{r['ratio_cpu']:.2f}x",
          f"{r['platform_maxrss_mb']:.0f} / {r['plain_maxrss_mb']:.0f}"] for r in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeat", type=int, default=3, help="validate runs of each, alternately, per size")
    parser.add_argument("--out", type=Path, default=None, help="write every measurement as JSON here")
    args = parser.parse_args(argv)
    rows = [measure(size, args.workdir, args.repeat) for size in args.sizes]
    save(args.out, {"machine": machine(), "rows": rows})
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
