"""Definitions load time and peak memory of synthetic platforms of 10, 100 and 1,000 units.

    python bench/load.py --workdir /tmp/ud-bench --repeat 5 --out /tmp/ud-bench/load.json

For each size: generate the platform, make its dbt manifest once the way the platform
does (`dbt parse` in a child process, timed on its own: a one-off build step), then load
the definitions `--repeat` times, each in a fresh process (bench/load_child.py), and run
`dagster definitions validate` on its workspace. Medians are reported.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH, PYTHON, child_env, machine, median, run_child, save, table  # noqa: E402

import synthetic  # noqa: E402

DAGSTER = str(Path(PYTHON).with_name("dagster"))
PARSE = "from unified_delivery.dbt import ensure_manifest; ensure_manifest('dbt_project')"


def prepare(size: int, workdir: Path) -> tuple[Path, float]:
    platform = workdir / f"units-{size}"
    shutil.rmtree(platform, ignore_errors=True)
    synthetic.generate(size, platform)
    env = child_env(UD_HOME=str(workdir / "home"))
    parse = run_child([PYTHON, "-c", PARSE + "; print('{}')"], cwd=platform, env=env)
    return platform, parse["process_wall_s"]


def measure(size: int, workdir: Path, repeat: int, validate_repeat: int) -> dict:
    platform, parse_s = prepare(size, workdir)
    dagster_home = workdir / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = child_env(UD_HOME=str(workdir / "home"), DAGSTER_HOME=str(dagster_home))
    loads = [run_child([PYTHON, str(BENCH / "load_child.py")], cwd=platform, env=env) for _ in range(repeat)]
    validates = []
    for _ in range(validate_repeat):
        v = run_child([PYTHON, str(BENCH / "measure_command.py"), DAGSTER, "definitions", "validate", "-w", "workspace.yaml"],
                      cwd=platform, env=env)
        if v["returncode"] != 0:
            raise RuntimeError(f"dagster definitions validate failed at {size} units:\n{v['output_tail']}")
        validates.append(v)
    row = {"units": size, "dbt_parse_s": parse_s, "runs": loads, "validate_runs": validates}
    for k in ("imports_s", "definitions_s", "resolve_s", "in_process_s", "process_wall_s", "process_cpu_s", "maxrss_mb"):
        row[k] = median([r[k] for r in loads])
    for k in ("assets", "checks", "jobs"):
        row[k] = loads[0][k]
    row["validate_wall_s"] = median([v["wall_s"] for v in validates])
    row["validate_cpu_s"] = median([v["cpu_s"] for v in validates])
    row["validate_maxrss_mb"] = median([v["maxrss_mb"] for v in validates])
    return row


def report(rows: list[dict]) -> str:
    out = table(["units", "assets", "checks", "jobs", "dbt parse (once) s", "imports s", "definitions s",
                 "resolve s", "load, whole process s", "CPU s", "peak RSS MiB", "`dagster definitions validate` s",
                 "its peak RSS MiB"],
                [[r["units"], r["assets"], r["checks"], r["jobs"], r["dbt_parse_s"], r["imports_s"], r["definitions_s"],
                  r["resolve_s"], r["process_wall_s"], r["process_cpu_s"], round(r["maxrss_mb"]), r["validate_wall_s"],
                  round(r["validate_maxrss_mb"])] for r in rows])
    by = {r["units"]: r for r in rows}
    if 100 in by and 1000 in by:
        ratio = by[1000]["process_wall_s"] / by[100]["process_wall_s"]
        out += f"\n\n1,000 units / 100 units (whole-process load): {ratio:.1f}x"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeat", type=int, default=5, help="fresh-process loads per size")
    parser.add_argument("--validate-repeat", type=int, default=1, help="`dagster definitions validate` runs per size")
    parser.add_argument("--out", type=Path, default=None, help="write every measurement as JSON here")
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        rows.append(measure(size, args.workdir, args.repeat, args.validate_repeat))
        print(f"{size} units: load {rows[-1]['process_wall_s']:.1f} s, {rows[-1]['maxrss_mb']:.0f} MiB", file=sys.stderr)
    save(args.out, {"machine": machine(), "rows": rows})
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
