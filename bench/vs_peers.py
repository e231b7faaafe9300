"""The gateway next to supervisord and pm2, on this machine, in one run, with the same child
(bench/tiny_http.py) run by the same interpreter. Not a test: it prints figures, and writes
the final table into bench/README.md.

For each N (--n 20 100):
  1. cold start: daemon launched -> all N ports answer
  2. kill -9 of a child -> its port answers again from a new pid (min(N, 20) children, once each)
  3. add one server -> it answers (gateway: write a file; supervisord: append a program +
     `update` (reloadConfig + addProcessGroup); pm2: `pm2 start app.json`)
  4. stop all -> every port closed and every child gone
  5. daemon RSS and CPU seconds over an idle window (--idle, default 30 s)
  7. kill -9 of the daemon, start it again: orphaned children, duplicate/failed starts, adopted
Once:
  6. a stubborn tree (bench/stubborn.py: ignores TERM/INT/HUP, forks a grandchild) stopped
     with a 1 s stop timeout: time until all gone, and whether the grandchild is left.

The peers are installed on first use into bench/.peers/ (supervisor from PyPI into its own
venv, pm2 from npm into a local prefix); PM2_HOME is a temporary folder. The gateway uses its
embedded PostgreSQL (initialised once before timing) unless --dsn / GATEWAY_DSN is given.
supervisord is driven over its XML-RPC API (what supervisorctl uses, without its start-up),
the gateway over its local API (reconciler.client), pm2 through its CLI (its only interface
from outside node; the CLI's own cost is measured and printed as "pm2 CLI round trip").

    python bench/vs_peers.py --quick
    python bench/vs_peers.py --n 20 100 --idle 30
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from pathlib import Path
from typing import Any, Callable

import psutil

import benchlib  # bench/ is on sys.path when run as a script

REPO = benchlib.REPO
BENCH = REPO / "bench"
PEERS = BENCH / ".peers"
CHILD = benchlib.CHILD
answers = benchlib.answers
STUBBORN = BENCH / "stubborn.py"
PY = sys.executable  # every manager runs the child with this interpreter
SUP_VENV = PEERS / "supervisor-venv"
PM2_PREFIX = PEERS / "pm2"
PM2 = PM2_PREFIX / "node_modules" / ".bin" / "pm2"
sys.path.insert(0, str(REPO))

from reconciler.client import Client  # noqa: E402

T_START = time.time()


# --- processes we are responsible for ------------------------------------------------------
class Registry:
    """Every process this benchmark started or was told about (daemons, children, grandchildren),
    by pid + create time, so the final sweep only ever signals those."""

    def __init__(self) -> None:
        self.procs: dict[tuple[int, float], tuple[psutil.Process, str]] = {}
        self.groups: set[int] = set()  # process groups we created (start_new_session)

    def track(self, pid: int | None, label: str) -> None:
        if not pid:
            return
        try:
            p = psutil.Process(pid)
            self.procs.setdefault((pid, p.create_time()), (p, label))
        except psutil.NoSuchProcess:
            pass

    def alive(self) -> list[tuple[psutil.Process, str]]:
        return [(p, label) for p, label in self.procs.values() if is_alive(p)]


REG = Registry()


def is_alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return is_alive(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def popen(argv: list[str], label: str, **kw: Any) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL, **kw)
    REG.groups.add(proc.pid)
    REG.track(proc.pid, label)
    return proc


# --- ports ---------------------------------------------------------------------------------
OUR_PORTS: set[int] = set()  # every port handed to a child of this run


def free_ports(n: int) -> list[int]:
    ports = benchlib.free_ports(n)
    OUR_PORTS.update(ports)
    return ports


def wait_until(pred: Callable[[], bool], timeout: float, step: float = 0.001, what: str = "condition") -> float:
    start = time.perf_counter()
    while not pred():
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"{what}: not within {timeout}s")
        time.sleep(step)
    return time.perf_counter()


def wait_all_answer(ports: list[int], timeout: float = 60.0) -> float:
    pending = set(ports)

    def done() -> bool:
        for port in list(pending):
            if answers(port):
                pending.discard(port)
        return not pending

    return wait_until(done, timeout, 0.001, f"ports answering ({len(pending)} left)")


def wait_all_gone(ports: list[int], pids: list[int], timeout: float = 60.0) -> float:
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    open_ports = set(ports)

    def done() -> bool:
        for port in list(open_ports):
            if not answers(port):
                open_ports.discard(port)
        procs[:] = [p for p in procs if is_alive(p)]
        return not open_ports and not procs

    return wait_until(done, timeout, 0.002, "ports closed and children gone")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def rss_mb(procs: list[psutil.Process]) -> float:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 120, check: bool = True) -> str:
    """A short command (a CLI call); its process group is ours until it exits."""
    proc = popen(argv, f"cli {Path(argv[0]).name}", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    REG.groups.discard(proc.pid)
    text = out.decode(errors="replace")
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {text[-2000:]}")
    return text


# --- installing the peers --------------------------------------------------------------------
def ensure_peers() -> dict[str, str]:
    PEERS.mkdir(parents=True, exist_ok=True)
    if not (SUP_VENV / "bin" / "supervisord").exists():
        print("installing supervisor into", SUP_VENV, flush=True)
        subprocess.run([PY, "-m", "venv", str(SUP_VENV)], check=True)
        subprocess.run([str(SUP_VENV / "bin" / "pip"), "install", "-q", "supervisor"], check=True)
    if not PM2.exists():
        print("installing pm2 into", PM2_PREFIX, flush=True)
        subprocess.run(["npm", "install", "--silent", "--prefix", str(PM2_PREFIX), "pm2"], check=True)
    sup_v = subprocess.run([str(SUP_VENV / "bin" / "supervisord"), "--version"], capture_output=True,
                           text=True).stdout.strip()
    pm2_v = json.loads((PM2_PREFIX / "node_modules" / "pm2" / "package.json").read_text())["version"]
    node_v = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    from reconciler import __version__ as gw_v

    return {"gateway": gw_v, "supervisord": sup_v, "pm2": pm2_v, "node": node_v}


# --- the managers ----------------------------------------------------------------------------
class Manager:
    name = "?"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.work.mkdir(parents=True)
        self.logs = work / "logs"
        self.logs.mkdir()
        self.servers: dict[str, int] = {}  # name -> port
        self.proc: subprocess.Popen[bytes] | None = None

    # to implement
    def configure(self, servers: dict[str, int], stubborn: tuple[int, Path] | None = None) -> None: ...
    def launch(self) -> None: ...
    def ready(self) -> None: ...  # blocks until the daemon's API answers
    def states(self) -> dict[str, tuple[int | None, str]]: ...  # name -> (pid, state)
    def add(self, name: str, port: int) -> None: ...
    def stop_all(self) -> None: ...
    def start_all(self) -> None: ...
    def stop_one(self, name: str) -> None: ...
    def daemon_pid(self) -> int | None: ...
    def extra_procs(self) -> dict[str, list[psutil.Process]]:
        return {}
    def before_daemon_kill(self) -> None: ...
    def relaunch(self) -> None: ...
    def spawn_marks(self) -> dict[str, int]: ...  # name -> spawns recorded so far
    def shutdown(self) -> None: ...

    def pids(self) -> dict[str, int | None]:
        st = self.states()
        for name, (pid, _) in st.items():
            REG.track(pid, f"{self.name} child {name}")
        return {n: pid for n, (pid, _) in st.items()}


class Gateway(Manager):
    name = "gateway"

    src: Path = REPO  # where `python -m reconciler` is run from (a git snapshot, or the work tree)

    def __init__(self, work: Path, dsn: str | None) -> None:
        super().__init__(work)
        self.config = work / "gateway.d"
        self.data = work / "data"
        self.config.mkdir()
        self.env = dict(os.environ)
        self.env.pop("GATEWAY_DSN", None)
        if self.src != REPO:
            self.env["PYTHONPATH"] = str(self.src)
        self.schema: str | None = None
        if dsn:
            self.schema = f"bench_vs_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
            self.env.update(GATEWAY_DSN=dsn, GATEWAY_DB_SCHEMA=self.schema)
        self.dsn = dsn
        self.client: Client | None = None
        self.initdb_s: float | None = None

    def server_file(self, port: int, extra: str = "") -> str:
        return f'command = ["{PY}", "{CHILD.as_posix()}", "{{port}}"]\nport = {port}\n{extra}'

    def configure(self, servers: dict[str, int], stubborn: tuple[int, Path] | None = None) -> None:
        if self.dsn is None:  # initialise the embedded database once, outside any timing
            empty = self.work / "empty.d"
            empty.mkdir()
            t0 = time.perf_counter()
            proc = popen([PY, "-m", "reconciler", "run", "--config", str(empty), "--data-dir", str(self.data),
                          "--listen", "127.0.0.1:0"], "gateway (initdb)", cwd=self.src, env=self.env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_until(lambda: (self.data / "gateway.url").exists(), 120, 0.01, "gateway initdb")
            self.initdb_s = time.perf_counter() - t0
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        self.servers = dict(servers)
        for name, port in servers.items():
            write_atomic(self.config / f"{name}.toml", self.server_file(port))
        if stubborn:
            port, pidfile = stubborn
            write_atomic(self.config / "stubborn.toml",
                         f'command = ["{PY}", "{STUBBORN.as_posix()}", "{{port}}", "{pidfile}"]\nport = {port}\n'
                         '[stop]\ntimeout = "1s"\n')

    def launch(self) -> None:
        (self.data / "gateway.url").unlink(missing_ok=True)  # a stale one after kill -9
        self.log = open(self.work / "gateway.out", "ab")
        self.proc = popen([PY, "-m", "reconciler", "run", "--config", str(self.config), "--data-dir",
                           str(self.data), "--listen", "127.0.0.1:0"], "gateway daemon", cwd=self.src, env=self.env,
                          stdout=self.log, stderr=subprocess.STDOUT)

    def ready(self) -> None:
        wait_until(lambda: (self.data / "gateway.url").exists(), 120, 0.005, "gateway.url")
        self.client = Client(self.data)
        wait_until(lambda: self._try_status(), 60, 0.05, "gateway status")

    def _try_status(self) -> bool:
        try:
            assert self.client is not None
            self.client.status()
            return True
        except Exception:  # noqa: BLE001
            return False

    def states(self) -> dict[str, tuple[int | None, str]]:
        assert self.client is not None
        return {s["name"]: (s["pid"], s["phase"]) for s in self.client.status()["servers"]}

    def add(self, name: str, port: int) -> None:
        self.servers[name] = port
        write_atomic(self.config / f"{name}.toml", self.server_file(port))

    def stop_all(self) -> None:
        assert self.client is not None
        self.client.control("stop", [], None, True, 60)

    def start_all(self) -> None:
        assert self.client is not None
        self.client.control("start", [], None, True, 60)

    def stop_one(self, name: str) -> None:
        assert self.client is not None
        self.client.control("stop", [name], None, False, 60)

    def daemon_pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def extra_procs(self) -> dict[str, list[psutil.Process]]:
        pidfile = self.data / "postgres" / "postmaster.pid"
        if self.dsn is not None or not pidfile.exists():
            return {}
        try:
            pm = psutil.Process(int(pidfile.read_text().split()[0]))
            return {"embedded postgres": [pm, *pm.children(recursive=True)]}
        except (psutil.NoSuchProcess, ValueError, IndexError):
            return {}

    def relaunch(self) -> None:
        self.launch()
        self.ready()

    def spawn_marks(self) -> dict[str, int]:
        out = {}
        for name in self.servers:
            path = self.data / "logs" / f"{name}.log"
            out[name] = path.read_text(errors="replace").count("--- gateway: starting ") if path.exists() else 0
        return out

    def shutdown(self) -> None:
        if self.proc and self.proc.poll() is None:
            benchlib.stop_process(self.proc, 90)
        if self.schema and self.dsn:
            try:
                import psycopg

                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            except Exception as exc:  # noqa: BLE001
                print(f"  (could not drop schema {self.schema}: {exc})")


class Supervisord(Manager):
    name = "supervisord"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.conf = work / "supervisord.conf"
        self.rpc_port = free_ports(1)[0]
        self.rpc = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{self.rpc_port}/RPC2")
        self.logfile = work / "supervisord.log"

    def program(self, name: str, command: str, extra: str = "") -> str:
        return (f"\n[program:{name}]\ncommand={command}\nautostart=true\nautorestart=true\n"
                f"redirect_stderr=true\nstdout_logfile={self.logs / (name + '.log')}\n{extra}")

    def configure(self, servers: dict[str, int], stubborn: tuple[int, Path] | None = None) -> None:
        self.servers = dict(servers)
        text = (f"[supervisord]\nnodaemon=true\nlogfile={self.logfile}\npidfile={self.work / 'supervisord.pid'}\n"
                f"childlogdir={self.logs}\nloglevel=info\n\n"
                f"[inet_http_server]\nport=127.0.0.1:{self.rpc_port}\n\n"
                "[rpcinterface:supervisor]\n"
                "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
                f"[supervisorctl]\nserverurl=http://127.0.0.1:{self.rpc_port}\n")
        for name, port in servers.items():
            text += self.program(name, f"{PY} {CHILD} {port}")
        if stubborn:
            port, pidfile = stubborn
            text += self.program("stubborn", f"{PY} {STUBBORN} {port} {pidfile}", "stopwaitsecs=1\n")
        self.conf.write_text(text)

    def launch(self) -> None:
        self.proc = popen([str(SUP_VENV / "bin" / "supervisord"), "-c", str(self.conf)], "supervisord daemon",
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready(self) -> None:
        def ok() -> bool:
            try:
                return self.rpc.supervisor.getState()["statename"] == "RUNNING"
            except (OSError, xmlrpc.client.Error):
                return False

        wait_until(ok, 60, 0.01, "supervisord API")

    def states(self) -> dict[str, tuple[int | None, str]]:
        return {p["name"]: (p["pid"] or None, p["statename"]) for p in self.rpc.supervisor.getAllProcessInfo()}

    def add(self, name: str, port: int) -> None:
        self.servers[name] = port
        with self.conf.open("a") as fh:
            fh.write(self.program(name, f"{PY} {CHILD} {port}"))
        added, _changed, _removed = self.rpc.supervisor.reloadConfig()[0]  # = `supervisorctl update`
        for group in added:
            self.rpc.supervisor.addProcessGroup(group)

    def stop_all(self) -> None:
        self.rpc.supervisor.stopAllProcesses(True)

    def start_all(self) -> None:
        self.rpc.supervisor.startAllProcesses(True)

    def stop_one(self, name: str) -> None:
        self.rpc.supervisor.stopProcess(name, True)

    def daemon_pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def relaunch(self) -> None:
        self.launch()
        self.ready()

    def spawn_marks(self) -> dict[str, int]:
        text = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
        return {name: len(re.findall(rf"spawned: '{re.escape(name)}' with pid", text)) for name in self.servers}

    def shutdown(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                self.rpc.supervisor.shutdown()
            except (OSError, xmlrpc.client.Error):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Pm2(Manager):
    name = "pm2"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.home = work / "pm2home"
        self.env = dict(os.environ, PM2_HOME=str(self.home))
        self.eco = work / "ecosystem.json"

    def app(self, name: str, args: list[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"name": name, "script": PY, "args": args, "interpreter": "none", "exec_mode": "fork",
                "autorestart": True, "out_file": str(self.logs / f"{name}.out.log"),
                "error_file": str(self.logs / f"{name}.err.log"), **(extra or {})}

    def pm2(self, *args: str, check: bool = True) -> str:
        return run([str(PM2), *args], env=self.env, check=check)

    def configure(self, servers: dict[str, int], stubborn: tuple[int, Path] | None = None) -> None:
        self.servers = dict(servers)
        apps = [self.app(name, [str(CHILD), str(port)]) for name, port in servers.items()]
        if stubborn:
            port, pidfile = stubborn
            apps.append(self.app("stubborn", [str(STUBBORN), str(port), str(pidfile)], {"kill_timeout": 1000}))
        self.eco.write_text(json.dumps({"apps": apps}, indent=1))

    def launch(self) -> None:
        # the CLI spawns the daemon (detached) and asks it to start every app
        self.proc = popen([str(PM2), "start", str(self.eco)], "pm2 cli", env=self.env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready(self) -> None:
        if self.proc is not None:
            self.proc.wait(120)
            REG.groups.discard(self.proc.pid)
        REG.track(self.daemon_pid(), "pm2 daemon")

    def states(self) -> dict[str, tuple[int | None, str]]:
        out = self.pm2("jlist")
        data = json.loads(out[out.index("["):])
        return {a["name"]: (a.get("pid") or None, a["pm2_env"]["status"]) for a in data}

    def add(self, name: str, port: int) -> None:
        self.servers[name] = port
        path = self.work / f"{name}.json"
        path.write_text(json.dumps({"apps": [self.app(name, [str(CHILD), str(port)])]}))
        self.pm2("start", str(path))

    def stop_all(self) -> None:
        self.pm2("stop", "all")

    def start_all(self) -> None:
        self.pm2("restart", "all")

    def stop_one(self, name: str) -> None:
        self.pm2("stop", name)

    def daemon_pid(self) -> int | None:
        try:
            return int((self.home / "pm2.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def before_daemon_kill(self) -> None:
        self.pm2("save")  # pm2's documented way back after a daemon loss: save, then resurrect

    def relaunch(self) -> None:
        try:
            self.pm2("resurrect")
        except subprocess.TimeoutExpired:  # seen at N=100: its daemon busy restarting apps whose ports are held
            print("  pm2          `pm2 resurrect` did not return within 120 s; counted as it stands", flush=True)
        REG.track(self.daemon_pid(), "pm2 daemon")

    def spawn_marks(self) -> dict[str, int]:
        path = self.home / "pm2.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return {name: len(re.findall(rf"App \[{re.escape(name)}:\d+\] starting", text)) for name in self.servers}

    def shutdown(self) -> None:
        if self.home.exists() and self.daemon_pid() and pid_alive(self.daemon_pid()):
            self.pm2("kill", check=False)


def gateway_source(rev: str, root: Path) -> str:
    """Run the gateway from `rev` (exported with git archive) or, for "worktree", from the
    checkout as it is now; returns a label for the report."""
    if rev == "worktree":
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "reconciler", "webview"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True).stdout.strip()
        return f"work tree at {head}" + (" with uncommitted changes" if dirty else "")
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    dest = root / "gateway-src"
    dest.mkdir()
    archive = subprocess.run(["git", "archive", "--format=tar", sha, "reconciler", "webview"], cwd=REPO,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    # compiled as pip compiles an installed package: with PYTHONDONTWRITEBYTECODE set (as on this
    # machine) every start of the exported gateway would compile its ~90 modules again
    subprocess.run([PY, "-m", "compileall", "-q", str(dest)], check=True)
    Gateway.src = dest
    return f"commit {sha}"


def make(peer: str, work: Path, dsn: str | None) -> Manager:
    return Gateway(work, dsn) if peer == "gateway" else Supervisord(work) if peer == "supervisord" else Pm2(work)


# --- the measurements ------------------------------------------------------------------------
def measure_one(peer: str, n: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    r: dict[str, Any] = {}
    m = make(peer, root / f"{peer}-{n}", args.dsn)
    ports = free_ports(n + args.adds)
    servers = {f"s{i:03d}": p for i, p in enumerate(ports[:n])}
    spare = ports[n:]
    m.configure(servers)
    if isinstance(m, Gateway) and m.initdb_s is not None:
        r["initdb_s"] = m.initdb_s
    try:
        # 1. cold start
        t0 = time.perf_counter()
        m.launch()
        r["cold_s"] = wait_all_answer(list(servers.values()), 120) - t0
        m.ready()
        REG.track(m.daemon_pid(), f"{peer} daemon")
        print(f"  {peer:<12} N={n:<3} cold start            {r['cold_s']:7.2f} s", flush=True)
        time.sleep(1.5)  # supervisord counts a child as started after startsecs=1; let all settle

        # 2. kill -9 of a child -> answering again from a new pid
        before = m.pids()
        victims = sorted(servers)[: min(n, 20)]
        crash = []
        for name in victims:
            pid, port = before[name], servers[name]
            assert pid, f"{peer}: no pid for {name}"
            t0 = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda port=port: not answers(port), 10, 0.0002, "old listener gone")
            crash.append(wait_all_answer([port], 30) - t0)
        after = m.pids()
        r["crash_new_pid"] = sum(1 for v in victims if after.get(v) and after[v] != before[v])
        r["crash_med_ms"], r["crash_p95_ms"] = 1000 * statistics.median(crash), 1000 * pct(crash, 0.95)
        print(f"  {peer:<12} N={n:<3} kill -9 child -> ok   median {r['crash_med_ms']:7.1f} ms  "
              f"p95 {r['crash_p95_ms']:7.1f} ms  ({r['crash_new_pid']}/{len(victims)} new pids)", flush=True)

        # 3. add one server -> answering
        adds = []
        for i in range(args.adds):
            port = spare[i]
            t0 = time.perf_counter()
            m.add(f"add{i}", port)
            adds.append(wait_all_answer([port], 60) - t0)
            servers[f"add{i}"] = port
        r["add_ms"] = 1000 * statistics.median(adds)
        print(f"  {peer:<12} N={n:<3} add one -> answering  median {r['add_ms']:7.1f} ms "
              f"({', '.join(f'{1000 * a:.0f}' for a in adds)})", flush=True)

        # 5. idle RSS / CPU of the daemon, once nothing has asked it anything for --quiet seconds
        # (the gateway samples figures at the full rate while someone looks: reconciler/host/sampler.py)
        time.sleep(args.quiet)
        dpid = m.daemon_pid()
        assert dpid is not None
        daemon = [psutil.Process(dpid)]
        extra = m.extra_procs()
        c0, e0 = cpu_seconds(daemon), {k: cpu_seconds(v) for k, v in extra.items()}
        time.sleep(args.idle)
        r["cpu_s"] = cpu_seconds(daemon) - c0
        r["cpu_pct"] = 100 * r["cpu_s"] / args.idle
        r["rss_mb"] = rss_mb(daemon)
        for k, procs in extra.items():
            r[f"{k} rss_mb"] = rss_mb(procs)
            r[f"{k} cpu_s"] = cpu_seconds(procs) - e0[k]
        print(f"  {peer:<12} N={n:<3} idle {args.idle:g}s: daemon RSS {r['rss_mb']:.1f} MB, CPU {r['cpu_s']:.2f} s"
              f" ({r['cpu_pct']:.2f} % of a core)"
              + "".join(f"; {k}: RSS {r[k + ' rss_mb']:.1f} MB, CPU {r[k + ' cpu_s']:.2f} s" for k in extra),
              flush=True)

        # 4. stop all -> every port closed, every child gone
        pids = [p for p in m.pids().values() if p]
        t0 = time.perf_counter()
        m.stop_all()
        r["stop_all_s"] = wait_all_gone(list(servers.values()), pids, 120) - t0
        print(f"  {peer:<12} N={n:<3} stop all ({len(servers)})        {r['stop_all_s']:7.2f} s", flush=True)

        # 7. kill -9 of the daemon, start it again
        t0 = time.perf_counter()
        m.start_all()
        wait_all_answer(list(servers.values()), 120)
        r["start_all_s"] = time.perf_counter() - t0
        time.sleep(1.5)
        before = m.pids()
        m.before_daemon_kill()
        marks0 = m.spawn_marks()
        dpid = m.daemon_pid()
        assert dpid
        os.kill(dpid, signal.SIGKILL)
        if m.proc is not None and m.proc.pid == dpid:
            m.proc.wait()
        wait_until(lambda: not pid_alive(dpid), 10, 0.01, "daemon gone")
        time.sleep(0.3)
        r["k9_alive_after_kill"] = sum(1 for p in before.values() if pid_alive(p))
        t0 = time.perf_counter()
        m.relaunch()
        REG.track(m.daemon_pid(), f"{peer} daemon (relaunched)")
        snapshots = []
        while time.perf_counter() - t0 < args.settle:
            snapshots.append(_or_nothing(m.pids))
            time.sleep(0.5)
        final = _or_nothing(m.pids)
        marks1 = m.spawn_marks()
        total = len(before)
        adopted = [nm for nm in before if final.get(nm) == before[nm] and pid_alive(before[nm])]
        orphans = [nm for nm in before if pid_alive(before[nm]) and final.get(nm) != before[nm]]
        spawned = {nm: marks1.get(nm, 0) - marks0.get(nm, 0) for nm in before}
        seen_new = {nm for snap in snapshots + [final] for nm, p in snap.items()
                    if nm in before and p and p != before[nm]}
        dup = [nm for nm in before if (spawned[nm] > 0 or nm in seen_new) and pid_alive(before[nm])]
        final_states = _or_nothing(m.states)
        r.update(k9_total=total, k9_adopted=len(adopted), k9_orphans=len(orphans), k9_dup_servers=len(dup),
                 k9_spawn_attempts=sum(max(0, v) for v in spawned.values()),
                 k9_states=dict(sorted(_count(s for _, s in final_states.values()).items())))
        print(f"  {peer:<12} N={n:<3} kill -9 daemon + start: {total} servers, {r['k9_alive_after_kill']} still running"
              f" after the kill; after {args.settle:g}s: adopted {len(adopted)}, orphaned (running, unmanaged)"
              f" {len(orphans)}, duplicate/failed starts on {len(dup)} servers ({r['k9_spawn_attempts']} spawns);"
              f" states {r['k9_states']}", flush=True)
    finally:
        cleanup(m)
    return r


def _or_nothing(ask: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """What a manager says, or nothing when it does not answer (a CLI that times out or fails)."""
    try:
        return ask()
    except (subprocess.TimeoutExpired, RuntimeError, ValueError, OSError) as exc:
        print(f"  (no answer: {type(exc).__name__})", flush=True)
        return {}


def measure_bare(n: int) -> float:
    """The floor for a cold start: N children spawned directly (no manager), until all answer."""
    ports = free_ports(n)
    t0 = time.perf_counter()
    procs = [popen([PY, str(CHILD), str(p)], "bare child", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for p in ports]
    took = wait_all_answer(ports, 120) - t0
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait()
        REG.groups.discard(proc.pid)
    return took


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for it in items:
        out[str(it)] = out.get(str(it), 0) + 1
    return out


def measure_stubborn(peer: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    m = make(peer, root / f"{peer}-stubborn", args.dsn)
    port = free_ports(1)[0]
    pidfile = m.work / "stubborn.pids"
    m.configure({}, (port, pidfile))
    r: dict[str, Any] = {}
    try:
        m.launch()
        wait_all_answer([port], 120)
        m.ready()
        REG.track(m.daemon_pid(), f"{peer} daemon")
        wait_until(pidfile.exists, 10, 0.01, "stubborn pid file")
        child, grandchild = (int(x) for x in pidfile.read_text().split())
        REG.track(child, f"{peer} stubborn child")
        REG.track(grandchild, f"{peer} stubborn grandchild")
        time.sleep(1.5)
        t0 = time.perf_counter()
        m.stop_one("stubborn")
        r["stop_call_s"] = time.perf_counter() - t0
        try:
            r["child_gone_s"] = wait_until(lambda: not pid_alive(child), 15, 0.002, "stubborn child") - t0
        except TimeoutError:
            r["child_gone_s"] = None
        deadline = t0 + max(3.0, (r["child_gone_s"] or 0) + 2.0)
        while pid_alive(grandchild) and time.perf_counter() < deadline:
            time.sleep(0.002)
        r["grandchild_left"] = pid_alive(grandchild)
        r["all_gone_s"] = None if r["grandchild_left"] or r["child_gone_s"] is None else time.perf_counter() - t0
        gone = "never (grandchild left running)" if r["all_gone_s"] is None else f"{r['all_gone_s']:.2f} s"
        print(f"  {peer:<12} stubborn tree, stop timeout 1 s: child gone "
              f"{r['child_gone_s'] if r['child_gone_s'] is None else round(r['child_gone_s'], 2)} s,"
              f" all gone {gone}", flush=True)
    finally:
        cleanup(m)
    return r


def cleanup(m: Manager) -> None:
    """Ask the manager to shut down (it stops its children), then end by pid whatever of
    ours is still running."""
    try:
        m.shutdown()
    except Exception as exc:  # noqa: BLE001
        print(f"  ({m.name}: shutdown failed: {exc})")
    sweep(f"after {m.name}")


def sweep(when: str) -> list[str]:
    left = []
    time.sleep(0.2)
    for p, label in REG.alive():
        left.append(f"{label} pid {p.pid}")
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    for pgid in list(REG.groups):
        try:
            os.killpg(pgid, signal.SIGKILL)
            left.append(f"process group {pgid}")
        except (ProcessLookupError, PermissionError):
            pass
        REG.groups.discard(pgid)
    if left:
        print(f"  [{when}] ended by pid (still running): {', '.join(left)}", flush=True)
    return left


def unrecorded_leftovers(ports: set[int]) -> list[psutil.Process]:
    """Children of ours that were never recorded: our child script on one of our ports,
    started after this benchmark began."""
    out = []
    for p in psutil.process_iter(["cmdline", "create_time"]):
        cmd = p.info["cmdline"] or []
        if p.info["create_time"] and p.info["create_time"] >= T_START and len(cmd) >= 3 \
                and cmd[1] in (str(CHILD), str(STUBBORN)) and cmd[2].isdigit() and int(cmd[2]) in ports:
            out.append(p)
    return out


# --- the report ----------------------------------------------------------------------------
PEER_NAMES = ("gateway", "supervisord", "pm2")


def fmt(v: Any, unit: str = "", digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}{unit}"
    return f"{v}{unit}"


def ratio(g: Any, p: Any) -> str:
    if not isinstance(g, (int, float)) or not isinstance(p, (int, float)) or isinstance(g, bool) or p == 0:
        return "-"
    return f"{g / p:.2f}"


def table(results: dict[int, dict[str, dict[str, Any]]], stub: dict[str, dict[str, Any]],
          bare: dict[int, float]) -> str:
    lines = ["| N | figure | gateway | supervisord | pm2 | gw/supervisord | gw/pm2 | target |",
             "|---|---|---|---|---|---|---|---|"]
    rows = [
        ("cold start -> all answer (s)", "cold_s", 2, lambda n: "≤ 1.25× the floor" if n >= 100 else "≤ the floor + 0.3 s"),
        ("kill -9 child -> answers, median (ms)", "crash_med_ms", 1, lambda n: "≤ 1.2× pm2"),
        ("kill -9 child -> answers, p95 (ms)", "crash_p95_ms", 1, lambda n: ""),
        ("add one server -> answers, median (ms)", "add_ms", 0, lambda n: ""),
        ("stop all -> ports closed, children gone (s)", "stop_all_s", 2,
         lambda n: "≤ 0.5 s" if n >= 100 else ""),
        ("daemon RSS (MB)", "rss_mb", 1, lambda n: "≤ 50 MB" if n >= 100 else ""),
        ("daemon CPU over idle window (s)", "cpu_s", 2, lambda n: ""),
        ("daemon idle CPU (% of a core)", "cpu_pct", 2, lambda n: "≤ 3× pm2" if n >= 100 else "≤ 1.5× pm2"),
    ]
    for n, res in results.items():
        for label, key, digits, target in rows:
            vals = [res.get(p, {}).get(key) for p in PEER_NAMES]
            lines.append(f"| {n} | {label} | " + " | ".join(fmt(v, digits=digits) for v in vals)
                         + f" | {ratio(vals[0], vals[1])} | {ratio(vals[0], vals[2])} | {target(n)} |")
        if n in bare:
            cold = res.get("gateway", {}).get("cold_s")
            versus = f"gateway: {cold / bare[n]:.2f}× the floor, floor + {cold - bare[n]:.2f} s" if cold else ""
            lines.append(f"| {n} | the floor for cold start: the N children spawned at once by hand, no manager (s) | "
                         f"{bare[n]:.2f} | {bare[n]:.2f} | {bare[n]:.2f} | | | {versus} |")
        g = res.get("gateway", {})
        if "embedded postgres rss_mb" in g:
            lines.append(f"| {n} | embedded PostgreSQL beside the gateway: RSS (MB) / CPU over idle (s) | "
                         f"{g['embedded postgres rss_mb']:.1f} / {g['embedded postgres cpu_s']:.2f} | | | | | |")
        k9 = [res.get(p, {}) for p in PEER_NAMES]
        for label, key, target in (("kill -9 daemon + start: adopted (same pid)", "k9_adopted", "100 %"),
                                   ("... orphaned (running, unmanaged)", "k9_orphans", "0"),
                                   ("... duplicate / failed starts (servers)", "k9_dup_servers", "0")):
            cells = [f"{d[key]}/{d['k9_total']}" if key in d else "-" for d in k9]
            lines.append(f"| {n} | {label} | " + " | ".join(cells) + f" | | | {target} |")
    if stub:
        s = [stub.get(p, {}) for p in PEER_NAMES]
        lines.append("| 1 | stubborn tree, stop timeout 1 s: all gone (s) | "
                     + " | ".join("never" if d.get("grandchild_left") else fmt(d.get("all_gone_s")) for d in s)
                     + f" | {ratio(s[0].get('all_gone_s'), s[1].get('all_gone_s'))}"
                       f" | {ratio(s[0].get('all_gone_s'), s[2].get('all_gone_s'))} | ≤ 1.2 s |")
        lines.append("| 1 | ... grandchild left running | "
                     + " | ".join(fmt(d.get("grandchild_left")) for d in s) + " | | | no |")
    return "\n".join(lines)


def write_readme(section: str) -> None:
    path = BENCH / "README.md"
    start, end = "<!-- vs_peers:start -->", "<!-- vs_peers:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{section}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[20, 100], help="numbers of servers (default 20 100)")
    ap.add_argument("--quick", action="store_true", help="N=20 only, 1 add, idle 10 s")
    ap.add_argument("--idle", type=float, default=None, help="idle window in seconds (default 30; quick 10)")
    ap.add_argument("--quiet", type=float, default=32.0,
                    help="seconds with no request before the idle window (the gateway's LOOKING_FOR is 30)")
    ap.add_argument("--settle", type=float, default=8.0, help="seconds to watch after restarting a killed daemon")
    ap.add_argument("--peers", nargs="+", default=list(PEER_NAMES), choices=PEER_NAMES)
    ap.add_argument("--dsn", default=os.environ.get("GATEWAY_DSN"),
                    help="PostgreSQL for the gateway (a fresh schema per run, dropped after); default: embedded")
    ap.add_argument("--gateway-rev", default="HEAD",
                    help="git revision of the gateway to run (exported to a temp folder), or 'worktree' for the "
                         "checkout as it is (default HEAD)")
    ap.add_argument("--no-readme", action="store_true", help="do not write bench/README.md")
    args = ap.parse_args()
    if args.quick:
        args.n = [20]
    args.idle = args.idle if args.idle is not None else (10.0 if args.quick else 30.0)
    args.adds = 1 if args.quick else 3

    signal.signal(signal.SIGTERM, _interrupt)  # end like Ctrl-C: clean up what we started
    versions = ensure_peers()
    py_v = platform.python_version()
    db = f"PostgreSQL from a DSN ({args.dsn.split('@')[-1]}), fresh schema" if args.dsn else \
        "embedded PostgreSQL (initialised before timing; its start is inside the cold start)"
    print(f"machine: {os.cpu_count()} cores, Python {py_v}, supervisord {versions['supervisord']}, "
          f"pm2 {versions['pm2']} (node {versions['node']}), gateway {versions['gateway']}; gateway database: {db}",
          flush=True)
    pm2_rtt = None
    root = Path(tempfile.mkdtemp(prefix="gw-vs-peers-"))
    gw_src = gateway_source(args.gateway_rev, root)
    print(f"gateway code: {gw_src}", flush=True)
    results: dict[int, dict[str, dict[str, Any]]] = {}
    stub: dict[str, dict[str, Any]] = {}
    bare: dict[int, float] = {}
    leftovers: list[str] = []
    try:
        for n in args.n:
            results[n] = {}
            bare[n] = measure_bare(n)
            print(f"  {'no manager':<12} N={n:<3} cold start (N bare Popen) {bare[n]:5.2f} s", flush=True)
            for peer in args.peers:
                results[n][peer] = measure_one(peer, n, args, root)
        for peer in args.peers:
            stub[peer] = measure_stubborn(peer, args, root)
        if "pm2" in args.peers:  # what one pm2 CLI call costs by itself (a daemon round trip)
            m = Pm2(root / "pm2-rtt")
            m.configure({})
            try:
                m.pm2("ping")
                t = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    m.pm2("jlist")
                    t.append(time.perf_counter() - t0)
                pm2_rtt = 1000 * statistics.median(t)
            finally:
                cleanup(m)
    finally:
        leftovers += sweep("final")
        for p in unrecorded_leftovers(OUR_PORTS):
            leftovers.append(f"unrecorded child pid {p.pid} {' '.join(p.cmdline())}")
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(root, ignore_errors=True)
    print()
    tbl = table(results, stub, bare)
    print(tbl)
    if pm2_rtt is not None:
        print(f"\npm2 CLI round trip (`pm2 jlist`, idle daemon): {pm2_rtt:.0f} ms — part of every pm2 figure driven by its CLI")
    print("\nleft running at the end:", ", ".join(leftovers) if leftovers else "nothing (all daemons, children and"
          " grandchildren gone)")
    if not args.no_readme:
        cmd = "python bench/vs_peers.py " + " ".join(sys.argv[1:])
        gw = results.get(max(results), {}).get("gateway", {}) if results else {}
        notes = [f"- {_dt.date.today().isoformat()}, {os.cpu_count()} cores, Python {py_v}, supervisord "
                 f"{versions['supervisord']}, pm2 {versions['pm2']} (node {versions['node']}), "
                 f"omen-gateway {versions['gateway']} ({gw_src}); gateway database: {db}.",
                 f"- Command: `{cmd.strip()}` (idle window {args.idle:g} s after {args.quiet:g} s with no request, {args.adds} add(s), "
                 f"{args.settle:g} s watched after a daemon restart).",
                 "- The child is `bench/tiny_http.py` for all three, run by the same interpreter. supervisord and "
                 "pm2 use their defaults except what the figure names (autorestart, stopwaitsecs=1 / "
                 "kill_timeout 1000 for the stubborn tree); supervisord is driven over XML-RPC, the gateway over "
                 "its local API, pm2 through its CLI"
                 + (f" (one `pm2 jlist` round trip: {pm2_rtt:.0f} ms)." if pm2_rtt is not None else "."),
                 "- After kill -9 of the daemon: pm2 is brought back with `pm2 save` (before) + `pm2 resurrect`; "
                 "supervisord and the gateway are started again with the same config. *Adopted*: the manager "
                 "shows the same pid; *orphaned*: the old child still runs but the manager shows another pid "
                 "or none; *duplicate/failed starts*: the manager spawned a new process for a server whose old "
                 "one still held the port.",
                 ]
        if gw.get("initdb_s"):
            notes.append(f"- Embedded PostgreSQL initdb (once per data folder, not in any figure): "
                         f"{gw['initdb_s']:.1f} s.")
        write_readme("## Gateway vs supervisord vs pm2 (`bench/vs_peers.py`)\n\n" + "\n".join(notes)
                     + "\n\n" + tbl + "\n")
        print("\nwritten to bench/README.md")


if __name__ == "__main__":
    main()
