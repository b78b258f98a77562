"""The shim zygote: a warm process that forks shims, so a start skips Python's start-up.

Role: starting a shim as a new `python -I -S` costs an interpreter start and the shim's
imports (tens of milliseconds, most of a container start's own time). The daemon starts one
zygote (`runtime/shim.py: ShimZygote`); the zygote has imported `shim_main` once and, per
request, forks a child that becomes the launcher: it runs `shim_main.main(argv)` exactly as
a freshly spawned `python -I -S` shim would (`--daemonize`: the launcher forks the shim and
exits at once, so the shim is reparented away from both the zygote and the daemon).

Protocol, over one SOCK_SEQPACKET socket inherited from the daemon (`--control-fd`):
- request: one message, a JSON object `{"args": [...], "attach_modes": [...]}`, carrying
  (SCM_RIGHTS) the shim's stderr, the report pipe's write end, then one fd per attach mode;
- reply: one message, `{"exit": <launcher exit code>}`, after the launcher has exited
  (that is, after the double fork: the shim itself runs on).
EOF on the control socket (the daemon closed it, or died) ends the zygote; running shims
are not its children by then and are not affected.

Invariants:
- The zygote is single-threaded and keeps no fds but the control socket and its stdio, so a
  forked launcher inherits nothing the daemon holds; the launcher closes the control socket
  and every fd not named in its request before running the shim.
- Requests are served one at a time; a launcher exits within microseconds of its fork.
- Signals: the zygote ignores SIGINT/SIGHUP (it lives in its own session); a launcher
  restores the defaults before running the shim, as a fresh process would have them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys

from dockyard.engine.runtime import shim_main

_MAX_REQUEST_BYTES = 64 * 1024
_MAX_FDS = 64
_FD_ITEM_BYTES = 4  # sizeof(int), as SCM_RIGHTS carries them


def _launch(control: socket.socket, args: list[str], modes: list[str], fds: list[int]) -> int:
    """Fork a launcher running the shim with `fds` (stderr, report, attach...); its exit."""
    stderr_fd, report_fd, *attach_fds = fds
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            control.close()
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.dup2(stderr_fd, 2)
            keep = {0, 1, 2, report_fd, *attach_fds}
            for entry in os.listdir("/proc/self/fd"):
                if int(entry) not in keep:
                    with contextlib.suppress(OSError):  # the listdir's own fd, already gone
                        os.close(int(entry))
            argv = [
                *args,
                "--report-fd",
                str(report_fd),
                *(f"--attach-fd={fd}:{mode}" for fd, mode in zip(attach_fds, modes, strict=True)),
                "--daemonize",
            ]
            sys.argv = ["dockyard-shim", *argv]
            code = shim_main.main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException as e:  # the launcher must never return to the zygote's loop
            with contextlib.suppress(OSError):
                os.write(2, f"shim launcher: {e!r}\n".encode())
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def serve(control: socket.socket) -> int:
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    fds_size = socket.CMSG_SPACE(_MAX_FDS * _FD_ITEM_BYTES)
    while True:
        try:
            data, ancdata, _, _ = control.recvmsg(_MAX_REQUEST_BYTES, fds_size)
        except InterruptedError:
            continue
        fds: list[int] = []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % _FD_ITEM_BYTES
                fds += list(memoryview(payload[:usable]).cast("i"))
        if not data:
            for fd in fds:
                os.close(fd)
            return 0  # the daemon is gone
        try:
            request = json.loads(data)
            args = [str(a) for a in request["args"]]
            modes = [str(m) for m in request.get("attach_modes", [])]
            if len(fds) != 2 + len(modes):
                raise ValueError(f"expected {2 + len(modes)} fds, got {len(fds)}")
        except (ValueError, KeyError, TypeError) as e:
            for fd in fds:
                os.close(fd)
            control.send(json.dumps({"exit": -1, "error": str(e)}).encode())
            continue
        exit_code = _launch(control, args, modes, fds)
        control.send(json.dumps({"exit": exit_code}).encode())


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--control-fd" or not argv[1].isdigit():
        print("usage: shim_zygote --control-fd FD", file=sys.stderr)
        return 2
    control = socket.socket(fileno=int(argv[1]))
    try:
        return serve(control)
    finally:
        control.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
