"""Run a command that the platform does not trust: an app repository's own code.

Three levels, the strongest this machine allows (`choose_isolation`):

- `user`, where this process is root: the command runs as an unprivileged user (`ud-tests`
  if that user exists, else `nobody`), with no supplementary groups and no_new_privs, in
  new mount and pid namespaces when the kernel allows (it usually does for root). It
  cannot read the parent's /proc/<pid>/environ (another user's, and outside its pid
  namespace), nor anything of the platform's home, which is covered by an empty read-only
  tmpfs; /tmp and /dev/shm are fresh tmpfs of its own. Folders the user could not enter on
  the way to the interpreter (a Python under /root) are covered by a tmpfs too, with only
  the interpreter's folders bound back read-only at the same paths: the rest of such a
  folder stays out of sight. Without namespaces it is the user change alone.
- `namespace`, where this process is not root: a user namespace mapping only this uid,
  with mount and pid namespaces. The command runs as the same uid (so it can read what the
  operator's files allow outside the home) but without capabilities after exec, so it
  cannot unmount what covers the home; it cannot see the platform's processes.
- `environment-only`: neither is possible. Only the allow-listed environment, no inherited
  descriptors and a process group killed whole separate the command from the platform:
  it can read whatever this process can read. The caller must say so.

Stdlib only and runnable as a script: `python -I -S sandbox.py SPEC` is the program that
sets the namespaces up and drops privileges between fork and exec, so that code imports
nothing the sandboxed code could have influenced.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import pwd
import re
import signal
import site
import stat
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, NoReturn

SANDBOX_USER = "ud-tests"  # preferred when it exists (useradd --system --no-create-home ud-tests)
NOBODY = 65534
SETUP_FAILED = 125  # the helper's exit code when it could not build the sandbox
SETUP_MARK = "ud-sandbox:"
PRIVATE = ("/tmp", "/dev/shm")  # with namespaces, fresh and empty for each run

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID = 0x00020000, 0x10000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 1024, 2048, 1 << 21, 1 << 24
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38


def choose_isolation(*, root: bool, namespaces: bool, reachable: bool) -> str:
    """The isolation level for a process that is `root` or not, can or cannot make mount
    and pid namespaces (`namespaces`: as root directly, otherwise in a user namespace),
    and whose interpreter and work folder the unprivileged user can or cannot reach
    without re-mounting (`reachable`)."""
    if root and (namespaces or reachable):
        return "user"
    if not root and namespaces:
        return "namespace"
    return "environment-only"


def sandbox_user() -> tuple[int, int]:
    """uid and gid of the user that untrusted code runs as when this process is root."""
    for name in (SANDBOX_USER, "nobody"):
        try:
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
        except KeyError:
            continue
    return NOBODY, NOBODY


def blocked_ancestor(path: str | Path, uid: int, gid: int) -> str | None:
    """The first folder on the way to `path` (`path` included) that `uid` (in group `gid`,
    no other groups) may not enter, or None. Mode bits only: ACLs are not read."""
    if uid == 0:
        return None
    current = Path("/")
    for part in (None, *Path(path).parts[1:]):
        current = current / part if part else current
        try:
            st = os.stat(current)
        except OSError:
            return None  # does not exist: nothing to bind back
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return str(current)
    return None


def interpreter_paths() -> list[str]:
    """The folders this interpreter needs: its prefixes (a virtualenv's and the Python it was
    made from) and its site-packages. Not the rest of sys.path: the platform's own folders
    are none of the tests' business."""
    found = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        *site.getsitepackages(),
    }
    return sorted({os.path.realpath(p) for p in found if p and os.path.isdir(p)})


@lru_cache(maxsize=4)
def namespaces_available(python: str = sys.executable) -> bool:
    """Whether this process can make the mount and pid namespaces the helper needs (tried once)."""
    try:
        proc = subprocess.run(
            [python, "-I", "-S", __file__, json.dumps({"probe": True})],
            env={"PATH": os.defpath},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            close_fds=True,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


@dataclass(frozen=True)
class Sandbox:
    """Where and as whom an untrusted command runs; built by `plan`."""

    level: str
    namespaces: bool = False
    uid: int | None = None  # the user the command runs as, when level is "user"
    gid: int | None = None
    hide: tuple[str, ...] = ()  # covered by an empty read-only tmpfs (namespaces only)
    expose: tuple[
        str, ...
    ] = ()  # the interpreter's folders, bound back where an ancestor is covered
    python: str = sys.executable  # runs the helper
    reveal: tuple[str, ...] = ()  # folders under a hidden one, bound back read-only (an app's env)

    @classmethod
    def plan(
        cls,
        *,
        hide: list[str | Path],
        expose: list[str] | None = None,
        reveal: list[str | Path] | None = None,
        python: str = sys.executable,
    ) -> Sandbox:
        root = os.geteuid() == 0
        namespaces = namespaces_available(python)
        expose = interpreter_paths() if expose is None else expose
        revealed = tuple(os.path.realpath(p) for p in reveal or [])
        uid, gid = sandbox_user() if root else (os.getuid(), os.getgid())
        # Without namespaces nothing is bound back: the revealed folders must be reachable too.
        needed = [*expose, *(revealed if not namespaces else ())]
        reachable = all(blocked_ancestor(p, uid, gid) is None for p in needed)
        level = choose_isolation(root=root, namespaces=namespaces, reachable=reachable)
        hidden = tuple(os.path.realpath(p) for p in hide)
        return cls(
            level=level,
            namespaces=namespaces and level != "environment-only",
            uid=uid if level == "user" else None,
            gid=gid if level == "user" else None,
            hide=hidden,
            expose=tuple(p for p in expose if not any(_inside(p, h) for h in hidden)),
            python=python,
            reveal=revealed,
        )

    def describe(self) -> str:
        if self.level == "environment-only":
            return (
                "environment-only: no separate user and no namespaces here; the suite can read "
                "whatever this process can read"
            )
        who = f"uid {self.uid}" if self.level == "user" else "the same uid without capabilities"
        if not self.namespaces:
            return f"{who}, no namespaces (the home readable where its permissions allow)"
        return f"{who} in new mount and pid namespaces, the home covered, /tmp and /dev/shm private"

    def workspace(self, tmp: Path) -> Path:
        """A folder inside `tmp` (a fresh private temporary folder) that the command owns."""
        box = tmp / "box"
        box.mkdir(mode=0o700)
        for sub in ("home", "tmp"):
            (box / sub).mkdir(mode=0o700)
        if self.level == "user" and not self.namespaces:
            tmp.chmod(0o711)  # enterable, not listable; with namespaces `tmp` is covered instead
        self.give(box)
        return box

    def give(self, path: Path) -> None:
        """Make `path` and everything under it the command's user's (links not followed)."""
        if self.uid is None or self.uid == os.geteuid():
            return
        gid = self.uid if self.gid is None else self.gid
        os.chown(path, self.uid, gid, follow_symlinks=False)
        for folder, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(os.path.join(folder, name), self.uid, gid, follow_symlinks=False)

    def spec(self, cmd: list[str], cwd: Path, box: Path) -> dict:
        """What the helper does: which folders to cover (a private /tmp and /dev/shm; for
        another user, the folders it could not enter), what to bind back under them, which
        folders to hide, as whom to run what."""
        private, covered = [], set()
        reveal = self.reveal if self.namespaces else ()
        if self.namespaces:
            private = [p for p in PRIVATE if os.path.isdir(p)]
            if self.level == "user" and self.uid is not None and self.gid is not None:
                for path in (*self.expose, str(box), *reveal):
                    blocked = blocked_ancestor(path, self.uid, self.gid)
                    # A folder inside a hidden one is a fresh tmpfs folder there, enterable.
                    if blocked and not any(_inside(blocked, h) for h in self.hide):
                        covered.add(blocked)
        masks = [*private, *covered]
        top = sorted({m for m in masks if not any(m != o and _inside(m, o) for o in masks)})
        binds = sorted(
            (p for p in (*self.expose, str(box), *reveal) if any(_inside(p, m) for m in top)),
            key=lambda p: p.count("/"),
        )
        hide = [h for h in self.hide if not any(_inside(h, m) for m in top)]
        return {
            "namespaces": self.namespaces,
            "uid": self.uid,
            "gid": self.gid,
            "masks": [[m, m in private] for m in top],
            "binds": binds,
            "rw": [str(box)],
            "hide": hide if self.namespaces else [],
            # Bound back read-only inside the hidden folders, after they are covered.
            "reveal": [r for r in reveal if r not in binds and any(_inside(r, h) for h in hide)],
            "cwd": str(cwd),
            "cmd": cmd,
        }

    def run(
        self,
        cmd: list[str],
        *,
        cwd: Path,
        box: Path,
        env: dict[str, str],
        timeout: float,
        output: Path,
    ) -> int | None:
        """Run `cmd` with its stdout and stderr into `output` (outside `box`; with namespaces
        out of the command's sight); the exit code, or None when it ran out of time (the whole
        group, with namespaces the whole pid namespace, is then killed)."""
        argv = (
            cmd
            if self.level == "environment-only"
            else [self.python, "-I", "-S", __file__, json.dumps(self.spec(cmd, cwd, box))]
        )
        return run_to_file(argv, cwd=cwd, env=env, timeout=timeout, output=output, stop=_kill)


def run_to_file(
    argv: list[str],
    *,
    env: dict[str, str],
    timeout: float,
    output: Path,
    stop: Callable[[subprocess.Popen], None],
    cwd: Path | None = None,
) -> int | None:
    """`argv` in a session of its own, its stdout and stderr into `output`: its exit code, or
    None when it ran out of time. A process still running then (out of time, or this one
    interrupted) is ended by `stop`, so nothing is left behind."""
    with open(output, "wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            close_fds=True,
            start_new_session=True,
        )
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if proc.returncode is None:
                stop(proc)


def _kill(proc: subprocess.Popen) -> None:
    """The whole group (with namespaces, the whole pid namespace) killed at once."""
    _kill_group(proc.pid)
    proc.wait()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- the helper: runs between the launcher and the untrusted command ---------------------------


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _call(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(
    libc, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    def enc(s: str | None) -> bytes | None:
        return s.encode() if s is not None else None

    _call(
        libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {target}",
    )


def _remount(libc, path: str, *, read_only: bool) -> None:
    """Remount `path` read-only or writable, nosuid and nodev, keeping the flags it has that a
    user namespace may not drop (noexec, the atime mode)."""
    have = os.statvfs(path).f_flag
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (MS_RDONLY if read_only else 0)
    flags |= MS_NOEXEC if have & os.ST_NOEXEC else 0
    flags |= MS_NOATIME if have & os.ST_NOATIME else 0
    flags |= MS_NODIRATIME if have & os.ST_NODIRATIME else 0
    flags |= MS_RELATIME if have & os.ST_RELATIME else 0
    flags |= MS_STRICTATIME if not have & (os.ST_NOATIME | os.ST_RELATIME) else 0
    _mount(libc, None, path, None, flags)


def _mount_points() -> list[str]:
    """Every mount point of this mount namespace, parents first (/proc/self/mountinfo order)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        raw = line.split()[4]
        points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), raw))
    return points


def _read_only_everywhere(libc, strict: bool) -> None:
    """Every existing mount read-only, but /proc, /sys and /dev (the suite needs /dev/null; as
    another user it cannot write the others anyway). `strict` where the command runs as the
    platform's own uid, so the mount flag is all that keeps it from the platform's files."""
    for point in _mount_points():
        if any(_inside(point, keep) for keep in ("/proc", "/sys", "/dev")):
            continue
        try:
            _remount(libc, point, read_only=True)
        except OSError:
            if strict and os.path.exists(point):  # a point covered by a later mount does not matter
                raise


def _layout(libc, spec: dict) -> None:
    """Everything read-only; a private /tmp and /dev/shm; the folders the user could not
    enter covered, the ones it needs bound back; the box writable; the home covered."""
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    # Handles on what gets bound back, taken before the folders above them are covered.
    handles = {
        path: os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        for path in (*spec["binds"], *spec.get("reveal", []))
    }
    _read_only_everywhere(libc, strict=spec.get("uid") is None)
    masks = [m for m, _ in spec["masks"]]
    for mask, private in spec["masks"]:
        options = "mode=1777" if private else "mode=0755,size=64k"
        _mount(libc, "tmpfs", mask, "tmpfs", MS_NOSUID | MS_NODEV, options)
    bound: list[str] = []
    for path in spec["binds"]:
        if any(_inside(path, b) for b in bound):
            continue
        if not any(_inside(path, m) for m in masks):
            raise OSError(errno.EINVAL, f"{path} is not under a covered folder")
        os.makedirs(path, mode=0o755, exist_ok=True)  # inside a fresh tmpfs, never on a real disk
        _mount(libc, f"/proc/self/fd/{handles[path]}", path, None, MS_BIND | MS_REC)
        _remount(libc, path, read_only=path not in spec["rw"])
        bound.append(path)
    for mask, private in spec["masks"]:
        if not private:  # the covers hold nothing but the paths to what was bound back
            _remount(libc, mask, read_only=True)
    for rw in spec["rw"]:
        if rw not in bound:  # not under a covered folder: made read-only above with the rest
            _mount(libc, rw, rw, None, MS_BIND)
            _remount(libc, rw, read_only=False)
    for home in spec["hide"]:
        if not os.path.isdir(home):  # not there when it lies under a covered folder
            continue
        inside = [r for r in spec.get("reveal", []) if _inside(r, home)]
        flags = MS_NOSUID | MS_NODEV | (0 if inside else MS_RDONLY)
        _mount(libc, "tmpfs", home, "tmpfs", flags, "mode=0755,size=64k")
        for path in inside:
            os.makedirs(path, mode=0o755, exist_ok=True)  # in the fresh tmpfs
            _mount(libc, f"/proc/self/fd/{handles[path]}", path, None, MS_BIND | MS_REC)
            _remount(libc, path, read_only=True)
        if inside:
            _remount(libc, home, read_only=True)
    for fd in handles.values():
        os.close(fd)


def _drop_and_exec(libc, spec: dict) -> NoReturn:
    """Become the command's user (when there is one), then the command; returns only by exiting."""
    if spec.get("uid") is not None:
        os.setgroups([])
        os.setresgid(spec["gid"], spec["gid"], spec["gid"])
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])
        # A change of user clears the parent-death signal: set it again.
        _call(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
    _call(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    os.chdir(spec["cwd"])
    os.umask(0o022)
    try:
        os.execvpe(spec["cmd"][0], spec["cmd"], dict(os.environ))
    except OSError as exc:
        sys.stderr.write(f"cannot run {spec['cmd'][0]}: {exc}\n")
        os._exit(127)


def _in_child(fn, *args) -> None:
    """Run `fn` in a forked child that never returns into its parent's code, whatever happens."""
    try:
        os._exit(fn(*args))
    except BaseException as exc:  # noqa: BLE001  (the child must end here; the cause goes to the output)
        sys.stderr.write(f"{SETUP_MARK} {exc}\n")
        sys.stderr.flush()
        os._exit(SETUP_FAILED)


def _status(status: int) -> int:
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _init(libc, spec: dict) -> int:
    """Pid 1 of the new pid namespace: start the command, reap orphans, exit with its status.
    When it exits, the kernel kills whatever the command left behind in the namespace."""
    _call(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
    _mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if spec.get("probe"):
        return 0
    child = os.fork()
    if child == 0:
        _in_child(_drop_and_exec, libc, spec)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            return _status(status)


def _enter(spec: dict) -> int:
    # The folders made for bind mounts live in fresh tmpfs and must be enterable by the
    # command's user; the caller's umask (ud's is 077, private home) would make them root's alone.
    os.umask(0o022)
    libc = _libc()
    _call(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
    if not (spec.get("probe") or spec["namespaces"]):
        _drop_and_exec(libc, spec)
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWPID | (CLONE_NEWUSER if os.geteuid() != 0 else 0)
    _call(libc.unshare(flags), "unshare")
    if flags & CLONE_NEWUSER:  # only this uid exists inside: nothing to become but itself
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1\n")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1\n")
    if spec.get("probe"):
        _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    else:
        _layout(libc, spec)
    child = os.fork()  # the first child is pid 1 of the new pid namespace
    if child == 0:
        _in_child(_init, libc, spec)
    return _status(os.waitpid(child, 0)[1])


if __name__ == "__main__":
    try:
        sys.exit(_enter(json.loads(sys.argv[1])))
    except OSError as exc:
        sys.stderr.write(f"{SETUP_MARK} {exc}\n")
        sys.exit(SETUP_FAILED)
