"""How fast `ud` answers, beside the peers' CLIs timed in the same run.

    python bench/cli.py --workdir /tmp/ud-cli --repeat 5 [--units 1000]

Each command runs --repeat times in a fresh process, the commands taking turns (so a busy
moment of this shared machine falls on all of them alike); medians of wall and CPU time are
reported. Commands: `ud --help`, `ud --version`, a usage error (`ud promot`), `ud status` on
the reference platform (3 units) from a fresh home, and with --units, `ud status` on a
synthetic platform of that many units (bench/synthetic.py); the peers: `dagster --help`,
`dbt --help`, `mlflow --help`.
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
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    home = args.workdir / "home"
    env = child_env(UD_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), MLFLOW_DISABLE_TELEMETRY="true")
    ud = str(BIN / "ud")
    commands: dict[str, tuple[list[str], Path, dict, tuple[int, ...]]] = {
        "ud --help": ([ud, "--help"], ROOT, env, (0,)),
        "ud --version": ([ud, "--version"], ROOT, env, (0,)),
        "ud promot (usage error)": ([ud, "promot"], ROOT, env, (2,)),
        "ud status (3 units)": ([ud, "status"], ROOT, env, (0,)),
        "dagster --help": ([str(BIN / "dagster"), "--help"], ROOT, env, (0,)),
        "dbt --help": ([str(BIN / "dbt"), "--help"], ROOT, env, (0,)),
        "mlflow --help": ([str(BIN / "mlflow"), "--help"], ROOT, env, (0,)),
    }
    if args.units:
        synth = args.workdir / "synth"
        subprocess.run([PYTHON, str(BENCH / "synthetic.py"), "--units", str(args.units), "--out", str(synth)],
                       check=True, capture_output=True)
        synth_home = args.workdir / "synth-home"
        synth_env = child_env(UD_HOME=str(synth_home), DAGSTER_HOME=str(synth_home / "dagster"),
                              MLFLOW_DISABLE_TELEMETRY="true")
        commands[f"ud status ({args.units} units)"] = ([ud, "status"], synth, synth_env, (0,))
    # One untimed run each: the fresh home's first status makes its stores (MLflow tables,
    # the dbt manifest), which is set-up, not the answer being measured.
    for name, (cmd, cwd, cenv, ok) in commands.items():
        if name.startswith("ud status"):
            subprocess.run(cmd, cwd=cwd, env=cenv, capture_output=True, timeout=1800)
    samples: dict[str, list[dict]] = {name: [] for name in commands}
    for _ in range(args.repeat):
        for name, (cmd, cwd, cenv, ok) in commands.items():
            result = run_child([PYTHON, str(BENCH / "measure_command.py"), *cmd], cwd=cwd, env=cenv)
            if result["returncode"] not in ok:
                raise RuntimeError(f"{name} exited {result['returncode']}: {result['output_tail']}")
            samples[name].append(result)
    rows = [[name, median([s["wall_s"] for s in runs]), median([s["cpu_s"] for s in runs]),
             median([s["maxrss_mb"] for s in runs])] for name, runs in samples.items()]
    print(table(["command", "wall s (median)", "CPU s (median)", "peak MB"], rows))
    print(f"\n{args.repeat} runs each, taking turns; load average {os.getloadavg()[0]:.1f} at the end")
    save(args.out, {"machine": machine(), "repeat": args.repeat, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
