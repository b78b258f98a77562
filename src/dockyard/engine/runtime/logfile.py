"""Docker's json-file log format: one JSON object per line of container output.

Role: pure encoding and line splitting for the shim's log writer. Each entry is
`{"log":"<line>\\n","stream":"stdout|stderr","time":"<RFC3339Nano>"}` followed by a newline,
byte-for-byte what dockerd's json-file driver writes (moby
`daemon/logger/jsonfilelog/jsonlog/jsonlogbytes.go`), so `docker logs` readers and log
shippers that parse Docker's files read ours.

Invariants:
- `LineSplitter` keeps the newline on a full line and never holds more than
  `max_line_bytes`; a longer line is emitted in pieces without a newline (a "partial"
  message in Docker's terms), and a trailing unterminated line is emitted at `finish()`.
- Encoding escapes exactly what Docker escapes: `"`, `\\`, `\\n`, `\\r`, `\\t`, other bytes
  below 0x20 and `<`, `>`, `&` as `\\u00xx`; U+2028/U+2029 as `\\u2028`/`\\u2029`; invalid
  UTF-8 as `\\ufffd`.

This module does no I/O: it takes bytes and nanosecond timestamps and returns bytes. The shim
process imports it at startup, so it imports nothing at run time (no dataclasses,
datetime or typing: each costs milliseconds of every container start).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal, TypeAlias

    Stream: TypeAlias = Literal["stdout", "stderr"]

# moby daemon/logger/copier.go: bufSize = 16 * 1024; longer lines become partial messages.
MAX_LINE_BYTES = 16 * 1024

_HEX = "0123456789abcdef"


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`)."""
    days += 719_468
    era = days // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_index = (5 * day_of_year + 2) // 153  # March-based
    day = day_of_year - (153 * month_index + 2) // 5 + 1
    month = month_index + 3 if month_index < 10 else month_index - 9
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


def format_rfc3339nano(time_ns: int) -> str:
    """UTC time as Go's `time.RFC3339Nano`: nanoseconds with trailing zeros trimmed, then `Z`."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    days, second_of_day = divmod(seconds, 86_400)
    year, month, day = _civil_from_days(days)
    hour, rest = divmod(second_of_day, 3600)
    stamp = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{rest // 60:02d}:{rest % 60:02d}"
    if nanos:
        stamp += "." + f"{nanos:09d}".rstrip("0")
    return stamp + "Z"


def _escape(text: str) -> str:
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or ch in "<>&":
            # Docker: "<, > and & are escaped because they can lead to security holes when
            # user-controlled strings are rendered into JSON and served to some browsers".
            out.append("\\u00" + _HEX[code >> 4] + _HEX[code & 0xF])
        elif 0xDC80 <= code <= 0xDCFF:
            # A byte that is not UTF-8 (kept by surrogateescape); Go writes one `\ufffd`
            # escape per such byte.
            out.append("\\ufffd")
        elif code == 0x2028 or code == 0x2029:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def encode_entry(line: bytes, stream: Stream, time_ns: int) -> bytes:
    """One json-file record, newline-terminated, for one line (or partial line) of output."""
    log = _escape(line.decode("utf-8", errors="surrogateescape"))
    stamp = format_rfc3339nano(time_ns)
    return f'{{"log":"{log}","stream":"{stream}","time":"{stamp}"}}\n'.encode()


class LineSplitter:
    """Cuts a byte stream into lines as Docker's log copier does (a small mutable buffer)."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Append `data`; return every complete line (with its newline) and oversized piece."""
        self._pending += data
        lines: list[bytes] = []
        while True:
            newline = self._pending.find(b"\n", 0, self.max_line_bytes)
            if newline >= 0:
                lines.append(bytes(self._pending[: newline + 1]))
                del self._pending[: newline + 1]
            elif len(self._pending) >= self.max_line_bytes:
                lines.append(bytes(self._pending[: self.max_line_bytes]))
                del self._pending[: self.max_line_bytes]
            else:
                return lines

    def finish(self) -> list[bytes]:
        """The unterminated tail at end of stream, if any."""
        tail = bytes(self._pending)
        self._pending.clear()
        return [tail] if tail else []
