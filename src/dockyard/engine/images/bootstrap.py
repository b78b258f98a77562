"""A `busybox:latest` image made from the host's static busybox, with no registry.

Role: give the engine (and its tests) a real image offline. The root filesystem is built in
memory — `/bin/busybox`, a symlink per applet, `/etc/passwd` and `/etc/group` with root and
nobody, and the directories a container expects — and imported as one layer with the
config of Docker Hub's busybox image (`Cmd ["sh"]`, the default `PATH`).

Invariants:
- Deterministic: entries sorted, fixed owners and mtimes, fixed `created`, so the same host
  busybox binary always yields the same DiffID and image ID.
- The binary must be statically linked (no ELF interpreter): the image has no libc.
"""

from __future__ import annotations

import io
import re
import struct
import subprocess
import tarfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from dockyard.engine.images.model import ContainerConfig
from dockyard.engine.images.store import ImageStore, ImageStoreError

__all__ = [
    "BUSYBOX_CONFIG",
    "HOST_BUSYBOX",
    "bootstrap_busybox",
    "build_rootfs_tar",
    "busybox_applets",
]

HOST_BUSYBOX = Path("/usr/bin/busybox")
# Docker Hub's busybox image config (`docker inspect busybox`: Config.Env and Config.Cmd).
BUSYBOX_CONFIG = ContainerConfig(
    env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
    cmd=("sh",),
)
_MTIME_S = 0
_CREATED = datetime(1970, 1, 1, tzinfo=UTC)
_APPLET_RE = re.compile(r"^[A-Za-z0-9_.\[\]-]+$")
_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
_GROUP = b"root:x:0:\nnobody:x:65534:\n"
# (path, mode) of the directories, parents first.
_DIRECTORIES = (
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("sys", 0o555),
    ("tmp", 0o1777),
)
_PT_INTERP = 3


def _is_static_elf(binary: bytes) -> bool:
    """True for an ELF executable without a PT_INTERP program header."""
    if binary[:4] != b"\x7fELF" or len(binary) < 64:
        return False
    is_64 = binary[4] == 2
    endian = "<" if binary[5] == 1 else ">"
    if is_64:
        phoff, phentsize, phnum = (
            struct.unpack_from(endian + "Q", binary, 0x20)[0],
            *struct.unpack_from(endian + "HH", binary, 0x36),
        )
    else:
        phoff, phentsize, phnum = (
            struct.unpack_from(endian + "I", binary, 0x1C)[0],
            *struct.unpack_from(endian + "HH", binary, 0x2A),
        )
    return all(
        struct.unpack_from(endian + "I", binary, phoff + i * phentsize)[0] != _PT_INTERP
        for i in range(phnum)
    )


def busybox_applets(busybox: Path = HOST_BUSYBOX) -> list[str]:
    """The applets `busybox --list` names, validated and sorted, without `busybox`."""
    result = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True, timeout=10
    )
    applets = set(result.stdout.split()) - {"busybox"}
    bad = sorted(a for a in applets if not _APPLET_RE.match(a))
    if bad:
        raise ImageStoreError(f"unexpected busybox applet names: {bad}")
    return sorted(applets)


def _entry(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = link
    info.mtime = _MTIME_S
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def build_rootfs_tar(busybox_binary: bytes, applets: Sequence[str]) -> bytes:
    """The root filesystem tar, byte-for-byte the same for the same inputs."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, mode in _DIRECTORIES:
            tar.addfile(_entry(path, tarfile.DIRTYPE, mode))
        tar.addfile(
            _entry("bin/busybox", tarfile.REGTYPE, 0o755, len(busybox_binary)),
            io.BytesIO(busybox_binary),
        )
        for applet in sorted(set(applets) - {"busybox"}):
            tar.addfile(_entry(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox"))
        for path, content in (("etc/group", _GROUP), ("etc/passwd", _PASSWD)):
            tar.addfile(_entry(path, tarfile.REGTYPE, 0o644, len(content)), io.BytesIO(content))
    return out.getvalue()


def bootstrap_busybox(
    store: ImageStore, *, busybox: Path = HOST_BUSYBOX, ref: str = "busybox:latest"
) -> str:
    """Import the host's static busybox as `ref`; return the image ID."""
    binary = busybox.read_bytes()
    if not _is_static_elf(binary):
        raise ImageStoreError(f"{busybox} is not a statically linked ELF executable")
    layer = build_rootfs_tar(binary, busybox_applets(busybox))
    return store.import_tar(
        io.BytesIO(layer),
        ref=ref,
        config=BUSYBOX_CONFIG,
        comment=f"dockyard bootstrap from {busybox}",
        created=_CREATED,
    )
