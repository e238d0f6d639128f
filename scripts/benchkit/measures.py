"""What the benchmarks read of processes: CPU seconds of a process, a thread or the whole
host (from /proc), a process's resident set sampled in a thread."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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
