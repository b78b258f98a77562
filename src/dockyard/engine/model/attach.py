"""Attach decisions that need no I/O: detach keys and stdcopy frame headers.

Detach keys (Docker's `--detach-keys`, moby pkg/term `ToBytes` and `copyEscapable`): a
comma-separated list of `ctrl-<c>` names and single characters; the default is
`ctrl-p,ctrl-q`. While input matches a prefix of the sequence it is held back; a full match
ends the attach (the keys never reach the container); a mismatch releases what was held.
Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
STREAM_NAMES = {1: "stdout", 2: "stderr"}
FRAME_HEADER_BYTES = 8

# moby pkg/term ASCII: ctrl-@ is 0, ctrl-a..ctrl-z are 1..26, then [ \ ] ^ _ are 27..31.
_CTRL_NAMES = {f"ctrl-{c}": code for code, c in enumerate("@abcdefghijklmnopqrstuvwxyz[\\]^_")}


class InvalidDetachKeys(ValueError):
    pass


def parse_detach_keys(text: str) -> bytes:
    """`ctrl-p,ctrl-q` -> b"\\x10\\x11"; refuses names dockerd refuses."""
    codes = bytearray()
    for key in (text or DEFAULT_DETACH_KEYS).split(","):
        if len(key) == 1:
            codes += key.encode("latin-1")
        elif key in _CTRL_NAMES:
            codes.append(_CTRL_NAMES[key])
        else:
            raise InvalidDetachKeys(f"Invalid detach keys ({text}) provided")
    return bytes(codes)


@dataclass
class DetachMatcher:
    """Scans input for the detach sequence across reads."""

    keys: bytes
    held: bytes = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to pass on, whether the sequence is complete). After True, stop feeding."""
        out = bytearray()
        for value in data:
            candidate = self.held + bytes((value,))
            if self.keys and self.keys.startswith(candidate):
                if candidate == self.keys:
                    self.held = b""
                    return bytes(out), True
                self.held = candidate
            else:
                out += candidate
                self.held = b""
        return bytes(out), False


def parse_frame_header(header: bytes) -> tuple[str, int]:
    """stdcopy header -> (stream name, payload size)."""
    return STREAM_NAMES.get(header[0], "stdout"), int.from_bytes(header[4:8], "big")
