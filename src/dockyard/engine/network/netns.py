"""Network namespaces that outlive the daemon, and running code inside them.

Role: moby's osl layer (libnetwork/osl/namespace_linux.go) in Python: a container's network
namespace is created by a short-lived thread that unshares CLONE_NEWNET and bind-mounts its
/proc/self/task/<tid>/ns/net onto a regular file (Docker: /var/run/docker/netns/<id>), so the
namespace lives as long as that mount, across daemon restarts, with no process holding it.

Invariants:
- Namespaces are per thread. Nothing here changes the namespace of a thread it does not own:
  `create_netns` and `run_in` use a fresh thread that ends with the work (no fork, no thread
  pool, whose threads would be returned to the pool inside the wrong namespace);
  `entered` is for a thread its caller dedicates, and fails loudly (raises) if it cannot put
  that thread back, because the caller must then not reuse it.
- The parent directory of a namespace file must be a private mount or a plain directory on
  one: a bind mount made under a shared mount would propagate into its peers.
- `delete_netns` is idempotent and leaves neither a mount nor a file.

Python 3.11 has no os.setns/os.unshare and no os.mount, hence the libc calls through ctypes.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MNT_DETACH = 0x2
NS_GET_NSTYPE = 0xB703  # linux/nsfs.h _IO(0xb7, 0x3)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _setns(fd: int, what: str) -> None:
    _check(_libc.setns(fd, CLONE_NEWNET), f"setns {what}")


def _on_thread(fn: Callable[[], T], name: str) -> T:
    """Runs fn on a new thread that ends with it; re-raises fn's exception here."""
    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def create_netns(path: Path) -> None:
    """A new, empty network namespace kept alive by a bind mount at `path` (created as a
    regular file first, as moby's createNamespaceFile does). Fails with EEXIST if `path` is
    already a namespace (stacking a second mount would leak the first)."""
    if netns_exists(path):
        raise FileExistsError(errno.EEXIST, f"network namespace {path} already exists")
    # O_RDONLY|O_CREAT with mode 0: what `ip netns add` creates; a stale file is reused.
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0))

    def make() -> None:
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        source = f"/proc/self/task/{threading.get_native_id()}/ns/net"
        _check(
            _libc.mount(source.encode(), os.fsencode(path), b"none", MS_BIND, None),
            f"bind mount {source} on {path}",
        )

    try:
        _on_thread(make, "netns-create")
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def delete_netns(path: Path) -> None:
    """Unmounts (MNT_DETACH: open fds and sockets keep the namespace alive until they close,
    as with `ip netns delete`) and removes the file. A missing or unmounted path is fine."""
    while True:
        if _libc.umount2(os.fsencode(path), MNT_DETACH) == 0:
            continue  # unmount every stacked mount, should a caller have stacked some
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):  # not a mount point (any more) / no file
            break
        raise OSError(err, f"unmount {path}: {os.strerror(err)}")
    path.unlink(missing_ok=True)


def netns_exists(path: Path) -> bool:
    """Whether `path` is a network-namespace file (a bind-mounted nsfs inode)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError as exc:
        if exc.errno in (errno.ENOTTY, errno.EINVAL):  # a plain file: no nsfs ioctls
            return False
        raise
    finally:
        os.close(fd)


@contextmanager
def entered(path: Path) -> Iterator[None]:
    """Runs the block with the calling thread in the namespace at `path`, then moves it back.
    For a thread the caller dedicates to this; failing to move back raises RuntimeError (the
    thread is then in the wrong namespace and must end)."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target, str(path))
        finally:
            os.close(target)
        try:
            yield
        finally:
            try:
                _setns(original, "back to the thread's namespace")
            except OSError as exc:
                raise RuntimeError(
                    f"thread {threading.get_native_id()} is stuck in network namespace {path}"
                ) from exc
    finally:
        os.close(original)


def run_in(path: Path, fn: Callable[[], T]) -> T:
    """fn() on a fresh thread inside the namespace at `path`. The thread ends afterwards, so
    it is never moved back. Sockets fn opens stay in that namespace for their lifetime."""

    def body() -> T:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(fd, str(path))
        finally:
            os.close(fd)
        return fn()

    return _on_thread(body, "netns-run")


def sysctl_path(key: str) -> Path:
    """/proc/sys path of a network sysctl: `net.ipv4.ip_forward` or `net/ipv4/ip_forward`
    (the slash form for keys whose parts contain dots, such as VLAN interface names)."""
    parts = key.split("/") if "/" in key else key.split(".")
    if parts[0] != "net" or len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a network sysctl: {key!r}")
    return Path("/proc/sys", *parts)


def set_sysctl(path: Path | None, key: str, value: str) -> None:
    """Writes a net.* sysctl in the namespace at `path` (the current one if None).
    /proc/sys/net resolves to the namespace of the thread that opens it."""
    target = sysctl_path(key)

    def write() -> None:
        target.write_text(value)

    if path is None:
        write()
    else:
        run_in(path, write)
