"""The embedded app target's front door: a real nginx, started and configured by the target,
in front of an app environment that declares a `rollout`, splitting its requests by weight
between the stable release and a new one.

One nginx per home, under `<home>/proxy/`:

    nginx.conf                 the main configuration (written by this module)
    sites/<unit>--<env>.conf   one server per environment: its front port, an upstream of
                               the releases with their weights, its access log
    nginx.pid, error.log       the master's pid and nginx's own errors

Per environment, beside its releases (`<home>/releases/<unit>/<env>/`):

    front.json                 the front port, kept across deploys (the environment's URL)
    access.log                 one line per request: time, release port, status, latency, path

A change of weights rewrites the environment's site file and reloads nginx (`nginx -s
reload`: in-flight requests finish on the old workers). `proxy_next_upstream off`: a
request the new release fails is an error the analysis sees, never retried on the stable
one. Weights are nginx's smooth weighted round robin, so 10 means 10 requests in 100.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unified_delivery.errors import TargetError
from unified_delivery.targets.ports import bind_problem, free_port
from unified_delivery.targets.probes import ReleasePaths
from unified_delivery.targets.state_files import lock_file, read_json, write_json

NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
LOG_FORMAT = "ud_split"
START_TIMEOUT_S = 10.0
RELOAD_TIMEOUT_S = 10.0  # the old workers' requests in flight; a slower one is left to finish

MAIN_CONF = """\
# Written by unified-delivery (targets/front_door.py); rewritten on every start.
{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    log_format {fmt} '$msec $upstream_addr $status $upstream_status $request_time '
                     '$upstream_response_time $uri';
    include {prefix}/sites/*.conf;
}}
"""

SITE_CONF = """\
# {unit} in {env}: {summary}
upstream {name} {{
{servers}
}}
server {{
    listen 127.0.0.1:{front};
    access_log {log} {fmt};
    location / {{
        proxy_pass http://{name};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_next_upstream off;
    }}
}}
"""


def nginx_binary() -> str:
    """nginx from the OS packages (or $UD_NGINX), refused with how to install it."""
    named = os.environ.get("UD_NGINX")
    found = named or shutil.which("nginx")
    found = found or next((p for p in NGINX_CANDIDATES if Path(p).exists()), None)
    if not found or not os.access(found, os.X_OK):
        raise TargetError(
            "UD-PROXY-MISSING",
            "this app declares a rollout, which needs nginx in front of its releases, and "
            + (f"UD_NGINX={named} is not a program" if named else "nginx is not installed"),
            "install it from the OS packages (Debian: apt-get install nginx) or set UD_NGINX "
            "to its path; or remove `rollout:` from the unit to deploy blue-green",
        )
    return found


@dataclass(frozen=True)
class Route:
    """Where an environment's front door sends its requests: (release port, weight) pairs."""

    servers: tuple[tuple[int, int], ...]

    @classmethod
    def only(cls, port: int) -> Route:
        return cls(((port, 100),))

    @classmethod
    def split(cls, stable: int, new: int, weight: int) -> Route:
        return cls(((stable, 100 - weight), (new, weight)))

    def summary(self) -> str:
        return ", ".join(f"{w}% to port {p}" for p, w in self.servers)


class FrontDoor:
    """The nginx of one home, and the front door of each environment it serves."""

    def __init__(self, home: Path):
        self.home = home
        self.prefix = home / "proxy"

    # ---- one environment --------------------------------------------------------------

    def port(self, paths: ReleasePaths, preferred: int | None) -> int:
        """The environment's front port: the one it had, else `preferred` when free, else any
        free port; kept in front.json, so the environment's URL never moves."""
        front = paths.root / "front.json"
        kept = read_json(front)
        if kept and kept.get("port"):
            return int(kept["port"])
        port = preferred if preferred and bind_problem(preferred) is None else free_port()
        paths.root.mkdir(parents=True, exist_ok=True)
        write_json(front, {"port": port})
        return port

    def route(self, paths: ReleasePaths, unit: str, env: str, route: Route) -> None:
        """Send the environment's requests as `route` says, starting nginx if it is not running."""
        front = read_json(paths.root / "front.json")
        if not front:
            raise RuntimeError(f"{unit}/{env} has no front port yet")  # port() comes first
        servers = "\n".join(
            f"    server 127.0.0.1:{p} weight={w} max_fails=0;" for p, w in route.servers if w > 0
        )
        site = SITE_CONF.format(
            unit=unit,
            env=env,
            summary=route.summary(),
            name=_upstream_name(unit, env),
            servers=servers,
            front=front["port"],
            log=access_log(paths),
            fmt=LOG_FORMAT,
        )
        with lock_file(self.prefix / ".lock"):
            (self.prefix / "sites").mkdir(parents=True, exist_ok=True)
            site_file = self.prefix / "sites" / f"{unit}--{env}.conf"
            old = site_file.read_text() if site_file.exists() else None
            site_file.write_text(site)
            try:
                self._apply()
            except BaseException:
                if old is None:
                    site_file.unlink(missing_ok=True)
                else:
                    site_file.write_text(old)
                raise
        _await_listening(int(front["port"]))

    def sync(self, paths: ReleasePaths, unit: str, env: str) -> None:
        """Point the environment's front door (if it has one) at what state.json says runs:
        after a deploy was finished or undone, by whoever finished or undid it."""
        state = read_json(paths.state)
        if not (paths.root / "front.json").exists() or not state or not state.get("port"):
            return
        self.route(paths, unit, env, Route.only(int(state["port"])))

    def retire(self, paths: ReleasePaths, unit: str, env: str) -> bool:
        """The environment no longer has a front door (its unit's rollout was removed): its
        site goes from nginx, and its URL is its release's again. True when it had one."""
        front = paths.root / "front.json"
        if not front.exists():
            return False
        with lock_file(self.prefix / ".lock"):
            (self.prefix / "sites" / f"{unit}--{env}.conf").unlink(missing_ok=True)
            if self.running_pid() is not None:
                self._apply()
        front.unlink(missing_ok=True)
        return True

    # ---- the nginx process ------------------------------------------------------------

    def running_pid(self) -> int | None:
        try:
            pid = int((self.prefix / "nginx.pid").read_text().strip())
            os.kill(pid, 0)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        # a stale pid file whose pid another program got since is not our nginx to signal
        return pid if b"nginx" in cmdline and str(self.prefix).encode() in cmdline else None

    def stop(self) -> bool:
        """Stop this home's nginx (`ud down`); True when it ran."""
        pid = self.running_pid()
        if pid is None:
            return False
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGQUIT)  # graceful: in-flight requests finish
        deadline = time.monotonic() + 10
        while self.running_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.running_pid() is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        return True

    def _apply(self) -> None:
        nginx = nginx_binary()
        for sub in ("tmp", "sites"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
        conf = self.prefix / "nginx.conf"
        conf.write_text(MAIN_CONF.format(user=user, prefix=self.prefix, fmt=LOG_FORMAT))
        base = [
            nginx,
            "-p",
            str(self.prefix),
            "-c",
            str(conf),
            "-e",
            str(self.prefix / "error.log"),
        ]
        check = subprocess.run([*base, "-t", "-q"], capture_output=True, text=True)
        if check.returncode != 0:
            raise TargetError(
                "UD-PROXY-FAILED",
                f"nginx refuses the front door's configuration: {check.stderr.strip()[-800:]}",
                f"see {conf} and {self.prefix / 'sites'}; a port taken by another program is "
                "the usual cause (set service.ports for this environment to a free one)",
            )
        master = self.running_pid()
        if master is not None:
            before = _workers(master)
            done = subprocess.run([*base, "-s", "reload"], capture_output=True, text=True)
            if done.returncode == 0:
                _await_gone(before)  # the new weights serve every new request from here on
        else:
            done = subprocess.run(
                base,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        if done.returncode != 0:
            raise TargetError(
                "UD-PROXY-FAILED",
                f"nginx did not take the front door's configuration: {done.stderr.strip()[-800:]}",
                f"see {self.prefix / 'error.log'}",
            )


def access_log(paths: ReleasePaths) -> Path:
    return paths.root / "access.log"


def _workers(master: int) -> list[Any]:
    import psutil

    try:
        return psutil.Process(master).children()
    except psutil.Error:
        return []


def _await_gone(workers: list[Any]) -> None:
    """A reload is asynchronous: the workers of the old configuration finish their requests,
    then exit. Wait for that (bounded), so a change of weights is in force when route()
    returns."""
    import psutil

    psutil.wait_procs(workers, timeout=RELOAD_TIMEOUT_S)


def _upstream_name(unit: str, env: str) -> str:
    return "ud_" + "".join(c if c.isalnum() else "_" for c in f"{unit}__{env}")


def _await_listening(port: int) -> None:
    """nginx answers on the front port (a start or a reload takes effect in milliseconds)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TargetError(
        "UD-PROXY-FAILED",
        f"nginx does not listen on the front port {port} after {START_TIMEOUT_S:g} s",
        "see <home>/proxy/error.log",
    )
