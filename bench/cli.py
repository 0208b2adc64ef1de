"""How fast `ud` answers, beside the peers' CLIs timed in the same run.

    python bench/cli.py --workdir /tmp/ud-cli --repeat 5 [--units 1000] [--home DIR]

Each command runs --repeat times in a fresh process, the commands taking turns (so a busy
moment of this shared machine falls on all of them alike); medians of wall and CPU time are
reported, with the load average before and after. Commands: `ud --help`, `ud --version`, a
usage error (`ud promot`); on the reference platform (3 units), `ud status` with its catalog
warm (catalog.py: the answer from the ledger and the targets' probes, no platform load) and
cold (the catalog removed before each run: the platform is loaded, as every `ud status` did
before), and, warm, `ud gates`, `ud info`, `ud audit verify` and `ud report dora`. The home is
a fresh one (nothing deployed: the probes find empty places), or --home, e.g. one `ud demo` left
(every unit deployed in both environments). With --units, `ud status` warm and cold on a
synthetic platform of that many units (bench/synthetic.py). The peers: `dagster --help`, `dbt
--help`, `mlflow --help`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH, PYTHON, ROOT, child_env, machine, median, run_child, save, table  # noqa: E402

BIN = Path(PYTHON).parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="emptied, then holds the homes")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--units", type=int, default=0, help="also `ud status` on this many units")
    parser.add_argument("--home", type=Path, default=None, help="the reference platform's home (default: a fresh one)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    home = args.home.resolve() if args.home else args.workdir / "home"
    env = child_env(UD_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), MLFLOW_DISABLE_TELEMETRY="true")
    ud = str(BIN / "ud")
    # name -> (argv, cwd, env, exit codes accepted, home whose catalogs are removed before each run)
    commands: dict[str, tuple[list[str], Path, dict, tuple[int, ...], Path | None]] = {
        "ud --help": ([ud, "--help"], ROOT, env, (0,), None),
        "ud --version": ([ud, "--version"], ROOT, env, (0,), None),
        "ud promot (usage error)": ([ud, "promot"], ROOT, env, (2,), None),
        "ud status (3 units, catalog warm)": ([ud, "status"], ROOT, env, (0,), None),
        "ud status (3 units, cold: platform loaded)": ([ud, "status"], ROOT, env, (0,), home),
        "ud gates recommendation_api (warm)": ([ud, "gates", "recommendation_api"], ROOT, env, (0,), None),
        "ud info (warm)": ([ud, "info"], ROOT, env, (0,), None),
        "ud audit verify (warm)": ([ud, "audit", "verify"], ROOT, env, (0,), None),
        "ud report dora (warm)": ([ud, "report", "dora"], ROOT, env, (0,), None),
        "dagster --help": ([str(BIN / "dagster"), "--help"], ROOT, env, (0,), None),
        "dbt --help": ([str(BIN / "dbt"), "--help"], ROOT, env, (0,), None),
        "mlflow --help": ([str(BIN / "mlflow"), "--help"], ROOT, env, (0,), None),
    }
    if args.units:
        synth = args.workdir / "synth"
        subprocess.run([PYTHON, str(BENCH / "synthetic.py"), "--units", str(args.units), "--out", str(synth)],
                       check=True, capture_output=True)
        synth_home = args.workdir / "synth-home"
        synth_env = child_env(UD_HOME=str(synth_home), DAGSTER_HOME=str(synth_home / "dagster"),
                              MLFLOW_DISABLE_TELEMETRY="true")
        n = args.units
        commands[f"ud status ({n} units, catalog warm)"] = ([ud, "status"], synth, synth_env, (0,), None)
        commands[f"ud status ({n} units, cold: platform loaded)"] = ([ud, "status"], synth, synth_env, (0,),
                                                                     synth_home)
    # Two untimed runs of each platform's status: the first makes a fresh home's stores (MLflow
    # tables, the dbt manifest) and loads the platform before the home exists; the second writes
    # the catalog. That is set-up, not the answer being measured.
    for name, (cmd, cwd, cenv, ok, _) in commands.items():
        if name.startswith("ud status") and "warm" in name:
            for _ in range(2):
                subprocess.run(cmd, cwd=cwd, env=cenv, capture_output=True, timeout=1800)
    load_before = os.getloadavg()
    samples: dict[str, list[dict]] = {name: [] for name in commands}
    for _ in range(args.repeat):
        for name, (cmd, cwd, cenv, ok, cold) in commands.items():
            if cold is not None:
                for catalog in cold.glob("catalog-*.json"):
                    catalog.unlink()
            result = run_child([PYTHON, str(BENCH / "measure_command.py"), *cmd], cwd=cwd, env=cenv)
            if result["returncode"] not in ok:
                raise RuntimeError(f"{name} exited {result['returncode']}: {result['output_tail']}")
            samples[name].append(result)
    rows = [[name, median([s["wall_s"] for s in runs]), median([s["cpu_s"] for s in runs]),
             median([s["maxrss_mb"] for s in runs])] for name, runs in samples.items()]
    load_after = os.getloadavg()
    print(table(["command", "wall s (median)", "CPU s (median)", "peak MB"], rows))
    print(f"\n{args.repeat} runs each, taking turns; load average (1 min) {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after; {os.cpu_count()} cores")
    save(args.out, {"machine": machine(), "repeat": args.repeat, "rows": rows,
                    "load_average": {"before": load_before, "after": load_after}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
