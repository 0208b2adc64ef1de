"""Run a command as this process's child; print its wall and CPU time and peak memory as JSON.

    python bench/measure_command.py dagster definitions validate -w workspace.yaml
"""

import json
import resource
import subprocess
import sys
import time

started = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"returncode": proc.returncode, "wall_s": time.perf_counter() - started,
                  "cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_mb": usage.ru_maxrss / 1024,
                  "output_tail": (proc.stdout + proc.stderr)[-1500:]}))
