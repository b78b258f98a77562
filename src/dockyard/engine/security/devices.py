"""Device nodes of the host, read for `--device` and `--privileged` (a thin I/O driver).

The spec builder (`model/oci_spec.py`) maps device nodes it is given; this module stats
them. Sources: containerd pkg/oci HostDevices/DeviceFromPath and moby
daemon/pkg/oci/devices_linux.go DevicesFromPath, which dockerd calls at container start.

Invariants: a node keeps the path it was asked for (a symlink such as /dev/stdin is
followed for the stat, not renamed), so the builder finds it by `PathOnHost`; a path that
does not exist is reported with dockerd's message, in which the CLI finds "no such file or
directory".
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from dockyard.engine.model.oci_spec import InvalidParameter
from dockyard.engine.security.defaults import DeviceNode

__all__ = ["device_nodes", "host_devices"]

# containerd pkg/oci/utils_unix.go getDevices: directories it does not descend into.
_SKIPPED_DIRS = frozenset(("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"))


def _node(path: str, st: os.stat_result) -> DeviceNode | None:
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    return DeviceNode(
        path=path,
        type=kind,
        major=os.major(st.st_rdev),
        minor=os.minor(st.st_rdev),
        file_mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
    )


def _walk(root: str, *, skip: frozenset[str]) -> list[DeviceNode]:
    found: list[DeviceNode] = []
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root:
            dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            if dirpath == "/dev" and name == "console":
                continue  # containerd: the container gets its own console
            path = os.path.join(dirpath, name)
            try:
                node = _node(path, os.lstat(path))
            except OSError:
                continue  # gone meanwhile
            if node is not None:
                found.append(node)
    return found


def host_devices() -> tuple[DeviceNode, ...]:
    """Every device node under /dev (what a privileged container gets)."""
    return tuple(_walk("/dev", skip=_SKIPPED_DIRS))


def device_nodes(paths: Iterable[str], *, strict: bool) -> tuple[DeviceNode, ...]:
    """The nodes at `paths` (a node, or a directory's nodes).

    With `strict`, a missing path raises dockerd's start error. Without it (the validation
    at create, where dockerd does not look yet), a missing path yields a placeholder node
    so that the rest of the configuration is still checked.
    """
    found: list[DeviceNode] = []
    for path in paths:
        try:
            st = os.stat(path)  # follows symlinks, as moby's EvalSymlinks does
        except FileNotFoundError:
            if strict:
                raise InvalidParameter(
                    f'error gathering device information while adding custom device "{path}": '
                    "no such file or directory"
                ) from None
            found.append(DeviceNode(path, "c", 0, 0))
            continue
        except OSError as e:
            raise InvalidParameter(
                f'error gathering device information while adding custom device "{path}": '
                f"{e.strerror.lower() if e.strerror else e}"
            ) from None
        if stat.S_ISDIR(st.st_mode):
            found.extend(_walk(path, skip=frozenset()))
            continue
        node = _node(path, st)
        if node is not None:
            found.append(node)
    return tuple(found)
