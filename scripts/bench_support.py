"""Processes and databases for scripts/bench.py: the simulator, the job, fresh databases.

Everything created here is registered with a ``Cleanup`` and removed by it, also on
Ctrl-C: child processes run in their own session (a Ctrl-C reaches only the
benchmark, which then stops them in order), databases are dropped, files deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# The simulator's default static OAuth token; it reaches the job by environment only.
OAUTH_TOKEN = "sim-oauth-token"
ACCOUNT = "bench"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RSS_FILE_ENV = "ETL_BENCH_PEAK_RSS_FILE"


def launcher(before_exit: str = "") -> str:
    """What ``python -m etl`` does, with the process's own peak RSS (VmHWM) written to a
    file; ``before_exit`` (top-level lines) runs after the command, before the process ends.
    Not ru_maxrss: Linux carries the pre-exec high-water mark (the benchmark's, forked) into
    it, whereas VmHWM belongs to the address space that exec created."""
    return f"""
import os, sys
from etl.cli.main import exit_now, main
code = main(sys.argv[1:])
with open("/proc/self/status") as status:
    hwm = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
with open(os.environ["{RSS_FILE_ENV}"], "w") as out:
    out.write(hwm)
{before_exit}
exit_now(code)  # as the command itself ends (etl.cli.main.run)
"""


LAUNCHER = launcher()


class JobFailed(Exception):
    """The job under test failed (non-zero exit or a wrong result): the bench must fail."""


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


class Cleanup:
    """Last-in, first-out undo actions; each runs once, errors are reported, not raised."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, action: Callable[[], None]) -> Callable[[], None]:
        entry = (what, action)
        self._actions.append(entry)

        def run_now() -> None:
            if entry in self._actions:
                self._actions.remove(entry)
                action()

        return run_now

    def run_all(self) -> None:
        while self._actions:
            what, action = self._actions.pop()
            try:
                action()
            except Exception as exc:  # keep cleaning up the rest
                print(f"bench: cleanup of {what} failed: {exc}", file=sys.stderr)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def machine_cpu_seconds() -> float:
    """CPU seconds all cores have spent busy since boot: user, nice, system, irq and softirq
    of /proc/stat (not idle, iowait, or steal, the hypervisor's)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / _CLOCK_TICKS


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU of a live process (from /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


# -- the simulator -----------------------------------------------------------------------


class Simulator:
    """``python -m zendesk_sim`` as a separate process, driven over HTTP."""

    def __init__(
        self,
        cleanup: Cleanup,
        records: int,
        *,
        seed: int = 42,
        days: float = 30.0,
        end_offset: float = 3600.0,
        rate_limit: int | None = None,
        latency: float = 0.0,
        jitter: float = 0.0,
        rate_limit_mode: str = "burst",
        rate_limit_window: float = 60.0,
        access_records: int = 0,
        access_days: float = 90.0,
    ) -> None:
        command = [
            PYTHON,
            "-m",
            "zendesk_sim",
            "--port",
            "0",
            "--records",
            str(records),
            "--seed",
            str(seed),
            "--days",
            str(days),
            "--end-offset",
            str(end_offset),
            "--latency",
            str(latency),
            "--jitter",
            str(jitter),
            "--rate-limit-mode",
            rate_limit_mode,
            "--rate-limit-window",
            str(rate_limit_window),
        ]
        if rate_limit is not None:
            command += ["--rate-limit", str(rate_limit)]
        if access_records:
            command += ["--access-records", str(access_records), "--access-days", str(access_days)]
        self.records = records
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True
        )
        self.stop = cleanup.push(f"simulator pid {self.proc.pid}", self._stop)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"the simulator did not start (it said {line!r})")
        self.url = line.removeprefix("listening on ")

    def _stop(self) -> None:
        stop_process(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_sim/stats")
        return result

    def reset_log(self) -> None:
        self._call("POST", "/_sim/reset-log", [])

    def add_records(self, records: list[dict[str, Any]]) -> None:
        self._call("POST", "/_sim/records", records)

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.proc.pid)


# -- databases ---------------------------------------------------------------------------


class Databases:
    """Fresh databases: a SQLite file in its own temporary directory, or a uniquely named
    PostgreSQL or MariaDB database (created and dropped as tests/conftest.py does)."""

    def __init__(
        self, cleanup: Cleanup, postgres_admin_url: str, mariadb_admin_url: str = ""
    ) -> None:
        self.cleanup = cleanup
        self.root = Path(tempfile.mkdtemp(prefix="zendesk-audit-bench-"))
        cleanup.push(f"directory {self.root}", lambda: shutil.rmtree(self.root, True))
        self.pg_admin_url = make_url(postgres_admin_url)
        self.mariadb_admin_url = mariadb_admin_url
        self._pg_admin: sa.Engine | None = None
        self._drops: dict[str, Callable[[], None]] = {}

    def _admin(self) -> sa.Engine:
        if self._pg_admin is None:
            engine = sa.create_engine(self.pg_admin_url, isolation_level="AUTOCOMMIT")
            self._pg_admin = engine
            self.cleanup.push("the PostgreSQL admin engine", engine.dispose)
        return self._pg_admin

    def postgres_version(self) -> str:
        with self._admin().connect() as conn:
            return str(conn.execute(sa.text("SHOW server_version")).scalar())

    def create(self, kind: str) -> str:
        if kind == "sqlite":
            directory = Path(tempfile.mkdtemp(prefix="db-", dir=self.root))
            url = f"sqlite:///{directory / 'audit.db'}"
            self._drops[url] = self.cleanup.push(
                f"SQLite database {directory}", lambda: shutil.rmtree(directory, True)
            )
            return url
        if kind == "mariadb":
            return self._create_mariadb()
        if kind != "postgresql":
            raise ValueError(f"unsupported database kind {kind!r}")
        name = f"zendesk_audit_bench_{uuid.uuid4().hex[:12]}"
        admin = self._admin()

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

        url = self.pg_admin_url.set(database=name).render_as_string(hide_password=False)
        # Registered first: an interrupt right after CREATE must not leave it behind.
        self._drops[url] = self.cleanup.push(f"PostgreSQL database {name}", drop)
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        return url

    def _create_mariadb(self) -> str:
        name = f"zendesk_audit_bench_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(self.mariadb_admin_url, isolation_level="AUTOCOMMIT")
        self.cleanup.push("the MariaDB admin engine", admin.dispose)

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))

        url = make_url(self.mariadb_admin_url).set(database=name)
        self._drops[url.render_as_string(hide_password=False)] = self.cleanup.push(
            f"MariaDB database {name}", drop
        )
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
        return url.render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        self._drops.pop(url)()

    def settle(self) -> None:
        """Before a measurement: what earlier runs wrote goes to disk, and PostgreSQL (once
        used) checkpoints it, so that no run pays for another's writes: a 100k load makes
        hundreds of MB of WAL, whose checkpoint would otherwise land in a later run."""
        os.sync()
        if self._pg_admin is not None:
            with self._pg_admin.connect() as conn:
                conn.execute(sa.text("CHECKPOINT"))

    def count_rows(self, url: str) -> int:
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                query = sa.text("SELECT count(*) FROM zendesk_audit_logs WHERE account = :a")
                return int(conn.execute(query, {"a": ACCOUNT}).scalar_one())
        finally:
            engine.dispose()


def compile_package() -> None:
    """Write the package's bytecode, as ``pip install`` does: a checkout run with
    PYTHONDONTWRITEBYTECODE set (or from a read-only tree) would otherwise compile every
    module of ``etl`` in each timed run, about a third of a run with nothing new."""
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(ROOT / "etl")], check=True)


def psycopg_conninfo(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as a libpq connection string."""
    parsed: URL = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


# -- the job -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRun:
    wall: float  # seconds, the whole process: start-up, imports, sync, exit
    peak_rss_mb: float  # the process's own peak resident set (VmHWM at exit)
    cpu: float  # the process's user + system CPU seconds
    requests: int  # API requests the simulator answered during the run
    rate_limited: int  # of which 429
    sim_cpu: float  # simulator CPU seconds during the run
    other_cpu: float  # the rest of the machine's CPU seconds: the database server, mostly
    # The highest resident set sampled in the first quarter of the wall time: against the
    # peak, whether memory keeps growing once the pipeline is full (a leak) or stays flat.
    early_rss_mb: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "wall_s": self.wall,
            "peak_rss_mb": self.peak_rss_mb,
            "early_rss_mb": self.early_rss_mb,
            "cpu_s": self.cpu,
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            "sim_cpu_s": self.sim_cpu,
            "other_cpu_s": self.other_cpu,
        }


class Job:
    """The real CLI, ``python -m etl --config CFG``, against one simulator and database."""

    def __init__(
        self,
        cleanup: Cleanup,
        sim: Simulator,
        db_url: str,
        workdir: Path,
        rpm: int,
        *,
        settle: Callable[[], None] = lambda: None,
    ) -> None:
        self.cleanup = cleanup
        self.settle = settle  # run before each timed sync (Databases.settle)
        self.sim = sim
        self.workdir = workdir
        self.config = workdir / f"config-{uuid.uuid4().hex[:8]}.toml"
        self.config.write_text(
            f'[zendesk]\nbase_url = "{sim.url}"\nname = "{ACCOUNT}"\n'
            f"requests_per_minute = {rpm}\n\n"
            f'[database]\nurl = "{db_url}"\n'
        )
        self.config.chmod(0o600)
        self.env = {**os.environ, "ZENDESK_OAUTH_TOKEN": OAUTH_TOKEN}

    def command(self, *args: str, launcher: bool = False) -> list[str]:
        start = [PYTHON, "-c", LAUNCHER] if launcher else [PYTHON, "-m", "etl"]
        return [*start, "--config", str(self.config), "--quiet", *args]

    def migrate(self) -> None:
        result = subprocess.run(
            self.command("migrate"),
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise JobFailed(f"migrate exited {result.returncode}: {result.stderr.strip()}")

    def sync(self) -> JobRun:
        """One timed ``sync``: wall time of the whole process and its own peak RSS."""
        self.settle()
        command = self.command("sync", launcher=True)
        return measure_process(self.cleanup, self.sim, command, self.env, self.workdir, "sync")


def measure_process(
    cleanup: Cleanup,
    sim: Simulator,
    command: list[str],
    env: dict[str, str],
    workdir: Path,
    what: str,
) -> JobRun:
    """One timed process against ``sim``, which writes its own peak RSS (VmHWM, in kB) to
    the file named by ``RSS_FILE_ENV``: the job's ``sync``, or another tool's load."""
    sim.reset_log()
    sim_cpu = sim.cpu_seconds()
    machine_cpu = machine_cpu_seconds()
    rss_file = workdir / f"rss-{uuid.uuid4().hex[:8]}"
    env = {**env, RSS_FILE_ENV: str(rss_file)}
    with tempfile.TemporaryFile(mode="w+", dir=workdir) as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
        unregister = cleanup.push(f"{what} pid {proc.pid}", lambda: stop_process(proc))
        sampler = RssSampler(proc.pid)
        # wait4 (not waitpid) returns the rusage of this one child: its CPU time.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        early_rss = sampler.stop(until=started + wall / 4)
        proc.returncode = os.waitstatus_to_exitcode(status)
        unregister()
        stderr.seek(0)
        errors = stderr.read().strip()
    machine_cpu = machine_cpu_seconds() - machine_cpu
    sim_cpu = sim.cpu_seconds() - sim_cpu
    if proc.returncode != 0:
        raise JobFailed(f"{what} exited {proc.returncode}: {errors or '(no message)'}")
    if errors:
        print(f"bench: {what} warned: {errors}", file=sys.stderr)
    stats = sim.stats()
    peak_kib = int(rss_file.read_text())
    rss_file.unlink()
    job_cpu = usage.ru_utime + usage.ru_stime
    return JobRun(
        wall=wall,
        peak_rss_mb=peak_kib / 1024,
        cpu=job_cpu,
        requests=int(stats["requests"]),
        rate_limited=int(stats["rate_limited"]),
        sim_cpu=sim_cpu,
        # clock ticks round each figure: never below zero
        other_cpu=max(0.0, machine_cpu - job_cpu - sim_cpu),
        early_rss_mb=early_rss,
    )


class RssSampler:
    """A process's resident set, read from /proc every ``INTERVAL`` s in a thread."""

    INTERVAL = 0.2

    def __init__(self, pid: int) -> None:
        self.samples: list[tuple[float, float]] = []  # (perf_counter, MB)
        self._pid = pid
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self.INTERVAL):
            try:
                status = Path(f"/proc/{self._pid}/status").read_text()
            except OSError:  # gone (or a zombie's status without VmRSS, below)
                return
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    self.samples.append((time.perf_counter(), int(line.split()[1]) / 1024))

    def stop(self, until: float) -> float:
        """Stop sampling; the highest resident set sampled up to ``until`` (0: none)."""
        self._done.set()
        self._thread.join()
        return max((mb for at, mb in self.samples if at <= until), default=0.0)


def time_command(command: list[str], runs: int) -> list[float]:
    """Wall seconds of ``command`` (which must succeed), ``runs`` times."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def task_cpu(task: int) -> float | None:
    """User and system CPU seconds of a process or thread of this host (None when gone)."""
    try:
        with open(f"/proc/{task}/status") as status:
            group = next(line.split()[1] for line in status if line.startswith("Tgid:"))
        with open(f"/proc/{group}/task/{task}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, StopIteration):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
