"""Go's `time.ParseDuration`, which Docker uses for durations in filters, `--change` and
Dockerfile HEALTHCHECK flags.

Pure. `1h30m`, `1.5s`, `250ms`, `-2m`, `0`; units ns, us (µs, μs), ms, s, m, h.
"""

from __future__ import annotations

import re

__all__ = ["parse_go_duration"]

_PART_RE = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_go_duration(text: str) -> int | None:
    """The duration in nanoseconds, or None when `text` is not one (Go's error case)."""
    sign = 1
    rest = text
    if rest[:1] in ("-", "+"):
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        return None
    total = 0.0
    pos = 0
    while pos < len(rest):
        m = _PART_RE.match(rest, pos)
        if m is None or m.group(1) in ("", "."):
            return None
        total += float(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    return sign * int(total)
