"""Processes for scripts/bench.py: the simulator, the job, their clean-up (fresh databases:
``benchkit.databases``; what is read of processes: ``benchkit.measures``).

Everything created here is registered with a ``Cleanup`` and removed by it, also on
Ctrl-C: child processes run in their own session (a Ctrl-C reaches only the
benchmark, which then stops them in order), databases are dropped, files deleted.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit.measures import RssSampler, machine_cpu_seconds, process_cpu_seconds

ROOT = Path(__file__).resolve().parents[2]  # the checkout: scripts/benchkit/ is two below
PYTHON = sys.executable
# The simulator's default static OAuth token; it reaches the job by environment only.
OAUTH_TOKEN = "sim-oauth-token"
ACCOUNT = "bench"
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


def compile_package() -> None:
    """Write the package's bytecode, as ``pip install`` does: a checkout run with
    PYTHONDONTWRITEBYTECODE set (or from a read-only tree) would otherwise compile every
    module of ``etl`` in each timed run, about a third of a run with nothing new."""
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(ROOT / "etl")], check=True)


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


def time_command(command: list[str], runs: int) -> list[float]:
    """Wall seconds of ``command`` (which must succeed), ``runs`` times."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times
