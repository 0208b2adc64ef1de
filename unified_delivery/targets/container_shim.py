"""The process a container release is, for the local release target: started as a script (the
standard library only, no import of the platform), `python container_shim.py NAME -- PODMAN...`.

It starts the container detached (`PODMAN... run --detach ...`), copies its output (`podman
logs --follow`) into the release's service.log and exits with the container's exit code when
the container ends, for whatever reason (it crashed, or was stopped behind the platform's back:
drift). On SIGTERM it stops the container (which gets SIGTERM, then SIGKILL after the grace) and
exits. Either way it removes the container. So the target sees one process whose life is the
container's.

Not `podman run` attached: podman 4.3's attached run (and its `wait`, and the end of `logs
--follow`) can miss the exit of a container that ends at once, and wait forever (seen here: the
container `Exited (3)` in `podman ps`, the client still waiting). The shim watches the
container's monitor process (conmon) instead, and reads the exit code from `podman inspect`.
"""

import os
import signal
import subprocess
import sys
import time

STOP_TIMEOUT_S = "4"
POLL_S = 0.2


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has ended
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main(argv: list[str]) -> int:
    name, sep, podman = argv[0], argv[1], argv[2:]
    assert sep == "--" and "run" in podman, "usage: container_shim.py NAME -- PODMAN... run ..."
    run = podman.index("run")
    base = podman[:run]  # podman and its global options
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        subprocess.run([*base, "stop", "--time", STOP_TIMEOUT_S, name], capture_output=True)

    def inspect(field: str) -> str:
        done = subprocess.run(
            [*base, "inspect", "--format", "{{" + field + "}}", name],
            capture_output=True,
            text=True,
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    started = subprocess.run(
        [*podman[: run + 1], "--detach", *podman[run + 1 :]], stdout=subprocess.DEVNULL
    )
    if started.returncode != 0:
        return started.returncode
    # The container lives as long as its monitor (conmon): a cheap pid to watch. Not `podman
    # wait` or the end of `podman logs --follow`: both missed a container's exit here.
    monitor = inspect(".State.ConmonPid")
    follow = subprocess.Popen([*base, "logs", "--follow", name])
    while monitor.isdigit() and alive(int(monitor)) and not stopping:
        time.sleep(POLL_S)
    time.sleep(POLL_S)  # its last lines
    follow.terminate()
    follow.wait()
    code = inspect(".State.ExitCode")
    subprocess.run([*base, "rm", "--force", "--ignore", name], capture_output=True)
    if stopping:
        return 128 + signal.SIGTERM
    return int(code) if code.lstrip("-").isdigit() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
