"""The envelope's report (``scripts/bench_envelope.py``): the medians' table and each
cell's targets, PASS or FAIL."""

from __future__ import annotations

from benchkit.envelope_cells import BUSY_SHARE_TARGET, EXTRA_TARGET, SHARE_TARGET, Cell


def table(done: list[Cell]) -> str:
    """Medians, in the columns of the README's table."""
    lines = [
        "| limit, latency | records/s (ceiling) | share of the ceiling (steady state) | 429s "
        "| requests beyond the pages | peak requests in flight |",
        "|---|---|---|---|---|---|",
    ]
    for cell in done:
        m = cell.medians()
        if cell.others:
            # The simulator's first-to-last answer span includes the other app's: no
            # steady state of the job's own to show.
            ceiling = f"{cell.ceiling:,.0f} remain"
            share = f"{m['share']:.1f}%"
            other = (
                f" (the other app: {m['other_rate_limited']:,.0f} of {m['other_requests']:,.0f})"
            )
        else:
            ceiling = f"{cell.ceiling:,.0f}"
            share = f"{m['share']:.1f}% ({m['steady_share']:.1f}%)"
            other = ""
        lines.append(
            f"| {cell.name} | {m['records_per_s']:,.0f} ({ceiling}) | {share} | "
            f"{m['rate_limited']:,.0f} of {m['requests']:,.0f}{other} | "
            f"{m['extra_requests_share']:.1f}% | {m['peak_in_flight']:.0f} |"
        )
    return "\n".join(lines)


def targets(done: list[Cell]) -> list[tuple[str, bool]]:
    """Each cell's targets against its medians: (what, met)."""
    found = []
    for cell in done:
        m = cell.medians()
        goal = BUSY_SHARE_TARGET if cell.busy else SHARE_TARGET
        found.append(
            (f"{cell.name}: {m['share']:.1f}% of the ceiling >= {goal:.0f}%", m["share"] >= goal)
        )
        found.append(
            (
                f"{cell.name}: {m['extra_requests_share']:.1f}% requests beyond the pages "
                f"< {EXTRA_TARGET:.0f}%",
                m["extra_requests_share"] < EXTRA_TARGET,
            )
        )
        refused = m["rate_limited"] + m["other_rate_limited"]
        found.append((f"{cell.name}: {refused:.0f} 429s = 0", refused == 0))
    return found
