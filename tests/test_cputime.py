"""The opt-in CPU plugin (``pytest --cputime``, ``parts/cputime.py``): its sums and tables."""

from __future__ import annotations

import subprocess
import sys

from parts.cputime import Cpu, now, per_file, summary


def test_a_childs_cpu_is_counted_as_the_childrens_not_the_processs_own() -> None:
    before = now()
    busy = "import time\nend = time.process_time() + 0.2\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", busy], check=True)
    spent = now() - before
    assert spent.children >= 0.2
    assert spent.own < spent.children
    assert spent.total == spent.own + spent.children


def test_tests_are_summed_by_file_and_listed_heaviest_first() -> None:
    tests = {
        "tests/test_a.py::one": Cpu(1.0, 2.0, 5.0),
        "tests/test_a.py::two[sqlite]": Cpu(0.5, 0.0, 1.0),
        "tests/test_b.py::three": Cpu(2.0, 0.0, 2.0),
    }
    assert per_file(tests) == {
        "tests/test_a.py": Cpu(1.5, 2.0, 6.0),
        "tests/test_b.py": Cpu(2.0, 0.0, 2.0),
    }
    lines = summary(tests, top=2)
    heaviest = [line.split()[-1] for line in lines[2:4]]
    assert heaviest == ["tests/test_a.py::one", "tests/test_b.py::three"]
    files = lines.index("CPU seconds by file")
    assert [line.split()[-1] for line in lines[files + 2 : files + 4]] == [
        "tests/test_a.py",
        "tests/test_b.py",
    ]
    assert lines[-1] == "all: 5.50 cpu s (3.50 own, 2.00 children), 8.00 wall s"
