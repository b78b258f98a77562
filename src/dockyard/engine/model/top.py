"""`docker top`: the host's `ps` output, cut down to one container's processes.

Role: parse what `ps <ps_args>` (default `-ef`) printed on the host and keep the rows whose
PID is one of the container's (`runc ps`), as moby daemon/top_unix.go parsePSOutput does:
the titles are the header's words; each row is split into as many fields, the last (CMD)
taking the rest of the line. Pure.
"""

from __future__ import annotations

from collections.abc import Collection


class PsOutputError(ValueError):
    """ps printed something this parser cannot use (dockerd answers 500)."""


def parse_ps_output(text: str, pids: Collection[int]) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise PsOutputError("Couldn't find PID field in ps output")
    titles = lines[0].split()
    try:
        pid_index = titles.index("PID")
    except ValueError:
        raise PsOutputError("Couldn't find PID field in ps output") from None
    processes: list[list[str]] = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < len(titles):
            continue
        try:
            pid = int(fields[pid_index])
        except ValueError:
            raise PsOutputError(f"Unexpected pid '{fields[pid_index]}'") from None
        if pid in pids:
            last = len(titles) - 1
            processes.append([*fields[:last], " ".join(fields[last:])])
    return titles, processes


__all__ = ["PsOutputError", "parse_ps_output"]
