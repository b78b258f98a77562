"""runc command lines, runc's error text, and a blocking runner for the shim process.

Role: the one place that builds runc command lines (`runc_argv`) and reads runc's errors
(`parse_runc_log`); the asyncio driver (`runc.py`) and the shim process (`shim_main.py`)
both use it. `run_runc` runs one command with `os.posix_spawn` and `waitpid` on that
pid only, so a subreaper shim never reaps someone else's child here.

Invariants:
- Every command carries our `--root` and `--log-format json` (see `runc.py`).
- The spawned runc gets exactly the stdio given (None means /dev/null) and SIGPIPE and
  SIGXFSZ at their defaults, as `subprocess` would; every other fd of ours is
  close-on-exec (PEP 446), so runc inherits nothing else.

Import cost is part of every container start: this module imports only `os` and `signal`
(and `json` lazily, on the error path).
"""

from __future__ import annotations

import os
import signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

DEFAULT_ROOT_DIR = "/run/dockyard/runc"
DEFAULT_BINARY = "runc"
_ERROR_CHUNK_BYTES = 64 * 1024
# Python ignores SIGPIPE (and SIGXFSZ); `subprocess` restores both for its children.
_RESTORED_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


class RuncError(Exception):
    """runc failed; `message` is runc's own error text (e.g. `... executable file not found`)."""

    def __init__(self, command: Sequence[str], returncode: int, message: str) -> None:
        super().__init__(message)
        self.command = tuple(command)
        self.returncode = returncode
        self.message = message


def runc_argv(binary: str, root: str, *args: str, log_path: str | None = None) -> list[str]:
    argv = [binary, "--root", root, "--log-format", "json"]
    if log_path is not None:
        argv += ["--log", log_path]
    return argv + list(args)


def parse_runc_log(text: str) -> str | None:
    """The last error-level message in runc's JSON log output, if any.

    runc also prints the fatal error as a plain line after the JSON record (`fatal()` in
    runc's main.go); plain lines are used only when no JSON error record is present.
    """
    import json

    message: str | None = None
    plain: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            plain = line
            continue
        if isinstance(record, dict) and record.get("level") in ("error", "fatal"):
            message = str(record.get("msg", ""))
    return message if message is not None else plain


def _spawn(argv: list[str], stdio: tuple[int | None, int | None, int | None]) -> int:
    actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = []
    for target, fd in enumerate(stdio):
        if fd is None:
            actions.append((os.POSIX_SPAWN_OPEN, target, os.devnull, os.O_RDWR, 0))
        elif fd == target:
            os.set_inheritable(fd, True)  # dup2 onto itself would keep close-on-exec
        else:
            actions.append((os.POSIX_SPAWN_DUP2, fd, target))
    return os.posix_spawnp(
        argv[0], argv, os.environ, file_actions=actions, setsigdef=_RESTORED_SIGNALS
    )


def _wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def run_runc(
    binary: str,
    root: str,
    *args: str,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    log_path: str | None = None,
) -> None:
    """Run one runc command to completion (blocking); raise `RuncError` on failure.

    With `log_path`, runc's stdio belongs to the container and its errors are read from
    that log file (which the caller owns); without it, its stderr is captured and its stdio
    otherwise goes where given.
    """
    argv = runc_argv(binary, root, *args, log_path=log_path)
    if log_path is not None:
        returncode = _wait(_spawn(argv, (stdin, stdout, stderr)))
        try:
            with open(log_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            text = ""
        message = parse_runc_log(text)
        if message is None and returncode != 0:
            message = f"runc exited with status {returncode}"
    else:
        err_r, err_w = os.pipe()
        try:
            try:
                pid = _spawn(argv, (stdin, stdout, err_w))
            finally:
                os.close(err_w)
            chunks: list[bytes] = []
            while chunk := os.read(err_r, _ERROR_CHUNK_BYTES):
                chunks.append(chunk)
        finally:
            os.close(err_r)
        returncode = _wait(pid)
        message = None
        if returncode != 0:
            text = b"".join(chunks).decode(errors="replace")
            message = parse_runc_log(text) or f"runc exited with status {returncode}"
    if message is not None:
        raise RuncError(argv, returncode, message)
