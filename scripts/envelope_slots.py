"""Every lost request slot of a traced backfill, attributed to its cause (issue 27).

Reads the JSON lines ``scripts/envelope_trace/sitecustomize.py`` writes (one file a run)
and prints, per run and as medians, where the whole process's wall time went beyond the
ideal (the pages x the budget's spacing): the process's start, the first page read alone,
each spacing in which no request started (sampled every millisecond and put down to what
held it: a caller waiting in the limiter, a free fetcher with no reader, the writer's queue,
a fetcher that ended and was not yet replaced, ...), starts closer than a spacing (the
limiter's making up for a late one), the requests beyond the pages, the last answers.
Seconds, and points of the share of the ceiling.

    python scripts/envelope_slots.py PAGES REQUESTS_PER_MINUTE TRACE.jsonl...
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
from collections import defaultdict
from typing import Any

STEP = 0.001  # seconds: how finely a lost spacing is sampled
Event = tuple[float, int, str, dict[str, Any]]


def load(path: str) -> tuple[dict[str, float], list[Event]]:
    with open(path) as lines:
        head = json.loads(lines.readline())
        events = [tuple(json.loads(line)) for line in lines]
    events.sort(key=lambda e: e[0])
    return head, events


def cause(t: float, first_answer: float, state: dict[int, str], sched: dict[str, Any]) -> str:
    """What held a start at ``t``."""
    if t < first_answer:
        return "the first page read alone"
    held = set(state.values())
    if "limiter" in held:
        return "limiter: a caller waits (woken late)"
    if "processing" in held:
        return "no free fetcher: the spare is parsing its page"
    if "put" in held:
        return "writer's back-pressure: queue full"
    if "gate" in held:
        return "no free fetcher: gate full"
    alive = len(state)
    if alive >= sched["gate"]:
        return "no free fetcher: all in flight"
    if alive < sched["running"]:
        return "a fetcher ended, not yet replaced"
    if sched["why"] == "no_reader":
        return "no slice with work"
    return "writer's back-pressure: no fetcher added"


def confirmations(events: list[Event]) -> dict[str, int]:
    """The requests that confirmed a full last page (``has_more`` false): the answers that
    followed one saying it was the last, in the same query; and how many brought records."""
    said_last: dict[int, bool] = {}
    asked = found = 0
    for _, _, kind, details in events:
        if kind != "page":
            continue
        if said_last.get(details["q"]):
            asked += 1
            found += details["n"] > 0
        said_last[details["q"]] = not details["more"]
    return {"confirmations": asked, "confirmations_with_records": found}


STATES = {"gate_in": "gate", "acq_in": "limiter", "start": "flight", "put_in": "put"}


def account(path: str, pages: int, rpm: int) -> dict[str, Any]:
    head, events = load(path)
    spacing = 60.0 / rpm
    starts = [e[0] for e in events if e[2] == "start"]
    answers = [e[0] for e in events if e[2] == "answer"]
    begin = next(e[0] for e in events if e[2] == "backfill_begin")
    n = len(starts)
    samples: list[tuple[float, float]] = []  # (time, weight) in the lost part of each gap
    made_up = 0.0
    for a, b in itertools.pairwise(starts):
        if b - a <= spacing:
            made_up += spacing - (b - a)
            continue
        t = a + spacing
        while t < b:
            samples.append((t, min(STEP, b - t)))
            t += STEP
    lost: dict[str, float] = defaultdict(float)
    state: dict[int, str] = {}
    sched: dict[str, Any] = {"running": 0, "gate": 1, "why": "full"}
    i = 0
    for t, thread, kind, details in [*events, (float("inf"), 0, "end", {})]:
        while i < len(samples) and samples[i][0] < t:
            at, weight = samples[i]
            why = cause(at, answers[0], state, sched)
            if why == "no slice with work":
                done = sum(1 for s in starts if s <= at)
                why += ", last tenth" if done >= 0.9 * n else ", before the last tenth"
            lost[why] += weight
            i += 1
        if kind == "fetch_begin":
            state[thread] = "processing"
        elif kind == "fetch_end":
            state.pop(thread, None)
        elif thread in state:
            if kind in STATES:
                state[thread] = STATES[kind]
            elif kind in ("answer", "put_out") or (kind == "gate_out" and state[thread] == "gate"):
                state[thread] = "processing"
        if kind == "sched_out":
            running, gate, why = details["running"], details["gate"], details["why"]
            if running < gate and why != "no_reader":
                why = "writer_behind"
            sched = {"running": running, "gate": gate, "why": why}
    wall = head["exit"] - head["process_start"]
    rows = {
        "process start to the backfill": begin - head["process_start"],
        "backfill to its first request": starts[0] - begin,
        **dict(sorted(lost.items())),
        "made up: starts closer than a spacing": -made_up,
        "requests beyond the pages": (n - pages) * spacing,
        "last start to last answer, beyond a spacing": max(answers) - starts[-1] - spacing,
        "last answer to exit": head["exit"] - max(answers),
    }
    ideal = pages * spacing
    return {
        **confirmations(events),
        "wall": wall,
        "rows": rows,
        "share": 100 * ideal / wall,
        "unaccounted": wall - ideal - sum(rows.values()),
        "requests": n,
    }


def main(argv: list[str]) -> int:
    # PERFORMANCE.md sends a reader to `--help`: asked for, the usage is an answer (exit 0)
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    pages, rpm = int(argv[0]), int(argv[1])
    runs = [account(path, pages, rpm) for path in argv[2:]]
    keys = list(dict.fromkeys(key for run in runs for key in run["rows"]))
    print(
        "| cause | "
        + " | ".join(f"run {i + 1}: s (points)" for i in range(len(runs)))
        + " | median |"
    )
    print("|---|" + "---|" * (len(runs) + 1))
    for key in keys:
        values = [run["rows"].get(key, 0.0) for run in runs]
        points = [100 * v / run["wall"] for v, run in zip(values, runs, strict=True)]
        cells = " | ".join(f"{v:.2f} ({p:.1f})" for v, p in zip(values, points, strict=True))
        median = f"{statistics.median(values):.2f} ({statistics.median(points):.1f})"
        print(f"| {key} | {cells} | {median} |")
    walls = " | ".join(f"{run['wall']:.2f} s, {run['requests']} requests" for run in runs)
    print(f"| wall time | {walls} | {statistics.median(r['wall'] for r in runs):.2f} s |")
    shares = " | ".join(f"{run['share']:.1f}%" for run in runs)
    print(
        f"| share of the ceiling | {shares} | {statistics.median(r['share'] for r in runs):.1f}% |"
    )
    asked = " | ".join(
        f"{run['confirmations']} ({run['confirmations_with_records']} with records)" for run in runs
    )
    print(f"| of the requests: confirmations of a full last page | {asked} | |")
    left = " | ".join(f"{run['unaccounted']:.3f}" for run in runs)
    print(f"| unaccounted (a check) | {left} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
