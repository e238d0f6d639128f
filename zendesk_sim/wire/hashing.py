"""``mix``: the hash both logs' generated records are drawn from.

Generated records are derived from ``(seed, i)``, never stored, so the same record comes
out every time; the audit log (``zendesk_sim.audit``) and the access log
(``zendesk_sim.access``) share this one hash, below both.
"""

from __future__ import annotations

_MASK = (1 << 64) - 1


def mix(value: int) -> int:
    """splitmix64 finalizer: a fast, well-spread 64-bit hash."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)
