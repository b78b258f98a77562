"""The classic builder's layer cache rules (moby `image/cache`, `builder/dockerfile`).

Role: decide whether a build step can reuse an existing image, and compute the values
that make up a step's cache key, without touching the store.

Docker's rules, kept exactly:
- A step hits when an image whose PARENT is the current image has a `container_config`
  equal to the step's under moby's `compare` (image/cache/compare.go): Cmd, Env,
  Entrypoint in order; Labels, ExposedPorts, Volumes as sets/maps; User, Tty, OpenStdin,
  AttachStdout/Err. WorkingDir, Healthcheck, Shell, OnBuild and StopSignal are NOT compared
  (they show up in the `#(nop)` Cmd of the step that sets them). Of several matches the
  most recently created wins. `FROM scratch` looks among images without a parent.
- Metadata steps carry the `#(nop)` comment as their Cmd; RUN carries its command,
  prefixed with `|N k=v…` when build args are in effect (`prependEnvOnCmd`); COPY/ADD carry
  `#(nop) COPY [--chown=…]<source hash> in <dest> ` where the source hash covers content,
  so a changed file changes the key of that step and (through the parent) of all later ones.
- Once a step misses, the rest of the stage does not probe (`imageProber.cacheBusted`).

This module is PURE: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from dockyard.engine.images.model import ContainerConfig

__all__ = [
    "CacheCandidate",
    "configs_match",
    "dir_hash",
    "file_hash",
    "pick_cached",
    "sources_hash",
]


@dataclass(frozen=True)
class CacheCandidate:
    """A child image of the current image, as the cache sees it."""

    image_id: str
    created: str  # RFC 3339; compares in time order (same format, UTC)
    container_config: ContainerConfig | None


def configs_match(a: ContainerConfig | None, b: ContainerConfig | None) -> bool:
    """moby image/cache/compare.go `compare`."""
    if a is None or b is None or a.open_stdin or b.open_stdin:
        return False
    if (
        a.attach_stdout != b.attach_stdout
        or a.attach_stderr != b.attach_stderr
        or a.user != b.user
        or a.tty != b.tty
    ):
        return False
    if tuple(a.cmd or ()) != tuple(b.cmd or ()):
        return False
    if tuple(a.env or ()) != tuple(b.env or ()):
        return False
    if tuple(a.entrypoint or ()) != tuple(b.entrypoint or ()):
        return False
    if dict(a.labels or ()) != dict(b.labels or ()):
        return False
    if set(a.exposed_ports or ()) != set(b.exposed_ports or ()):
        return False
    return set(a.volumes or ()) == set(b.volumes or ())


def pick_cached(candidates: Sequence[CacheCandidate], probe: ContainerConfig) -> str | None:
    """The image to reuse for `probe` among the current image's children, if any."""
    best: CacheCandidate | None = None
    for candidate in candidates:
        if not configs_match(candidate.container_config, probe):
            continue
        if best is None or candidate.created > best.created:
            best = candidate
    return None if best is None else best.image_id


def file_hash(name: str, mode: int, uid: int, gid: int, size_bytes: int, content: str) -> str:
    """The checksum of one context file: its header fields and its content digest (the
    role of moby's tarsum per-file hash; mtime is left out, as tarsum does)."""
    header = f"name={name}\0mode={mode:o}\0uid={uid}\0gid={gid}\0size={size_bytes}\0"
    return "file:" + hashlib.sha256(header.encode() + content.encode()).hexdigest()


def dir_hash(entries: Sequence[tuple[str, str]]) -> str:
    """The checksum of a directory: its (relative path, entry hash) pairs in path order."""
    digest = hashlib.sha256()
    for path, entry in sorted(entries):
        digest.update(f"{path}\0{entry}\n".encode())
    return "dir:" + digest.hexdigest()


def sources_hash(hashes: Sequence[str]) -> str:
    """moby getSourceHashFromInfos: one source's own hash, else `multi:` over them all."""
    if len(hashes) == 1:
        return hashes[0]
    return "multi:" + hashlib.sha256(",".join(hashes).encode()).hexdigest()
