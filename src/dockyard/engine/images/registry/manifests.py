"""Image manifests and manifest lists: media types, parsing, platform choice, building.

Role: read what a registry serves — Docker schema 2 manifests and manifest lists, OCI
image manifests and indexes — into values, choose the entry of a list for a platform as
containerd's `platforms.Only` matcher does, and build the schema 2 manifest dockerd pushes.

Invariants:
- A manifest's digest is the sha256 of its bytes as served (never of a re-encoding).
- `build_schema2` is byte for byte what docker/distribution's schema2 `FromStruct` marshals
  (Go's `json.MarshalIndent(m, "", "   ")`, struct field order), so dockerd and dockyard
  pushing the same blobs produce the same manifest digest.
- Parsing refuses what dockerd refuses (schema 1, unknown media types, foreign layer URLs
  are kept but never fetched from elsewhere) with an `InvalidManifest`.

This module is PURE: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACCEPTED_MEDIA_TYPES",
    "CONFIG_MEDIA_TYPES",
    "DOCKER_CONFIG",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Descriptor",
    "ImageManifest",
    "InvalidManifest",
    "ManifestList",
    "Platform",
    "build_schema2",
    "format_platform",
    "parse_manifest",
    "parse_platform",
    "select_manifest",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_NONDIST_LAYER_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"

# The Accept header of a manifest request, in dockerd's order (lists first so a
# multi-platform image is resolved by platform rather than by the registry's default).
ACCEPTED_MEDIA_TYPES = (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX)
CONFIG_MEDIA_TYPES = frozenset({DOCKER_CONFIG, OCI_CONFIG, "application/octet-stream"})
LAYER_MEDIA_TYPES = frozenset(
    {
        DOCKER_LAYER_GZIP,
        DOCKER_FOREIGN_LAYER,
        OCI_LAYER,
        OCI_LAYER_GZIP,
        OCI_NONDIST_LAYER_GZIP,
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
    }
)
_LIST_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
_MANIFEST_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})


class InvalidManifest(ValueError):
    """A manifest dockerd would not pull; the message is the one shown to the client."""


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def normalized(self) -> Platform:
        """containerd platforms.Normalize for the parts that matter on Linux hosts."""
        arch, variant = self.architecture.lower(), self.variant.lower()
        if arch in ("x86_64", "x86-64", "amd64"):
            arch = "amd64"
            if variant == "v1":
                variant = ""
        elif arch in ("aarch64", "arm64"):
            arch = "arm64"
            if variant in ("8", "v8"):
                variant = ""
        elif arch in ("i386", "386"):
            arch = "386"
        elif arch == "armhf":
            arch, variant = "arm", "v7"
        elif arch == "armel":
            arch, variant = "arm", "v6"
        elif arch == "arm":
            variant = {"": "v7", "5": "v5", "6": "v6", "7": "v7", "8": "v8"}.get(variant, variant)
        return Platform(self.os.lower(), arch, variant)


def format_platform(platform: Platform) -> str:
    """containerd platforms.Format: os/arch[/variant]."""
    parts = [platform.os or "unknown", platform.architecture or "unknown"]
    if platform.variant:
        parts.append(platform.variant)
    return "/".join(parts)


def parse_platform(text: str, host: Platform) -> Platform:
    """`--platform` values: `linux`, `linux/arm64`, `linux/arm/v7`, `arm64` (os from host)."""
    parts = text.strip().lower().split("/")
    if not parts[0] or len(parts) > 3 or any(not p for p in parts):
        raise InvalidManifest(
            f'"{text}": unknown operating system or architecture: invalid argument'
        )
    if len(parts) == 1:
        if parts[0] in ("linux", "windows", "darwin", "freebsd"):
            return Platform(parts[0], host.architecture, host.variant)
        return Platform(host.os, parts[0]).normalized()
    return Platform(*parts).normalized()


def _platform_vector(host: Platform) -> list[Platform]:
    """containerd platformVector: the host first, then what it can also run, best first."""
    host = host.normalized()
    vector = [host]
    if host.architecture == "amd64":
        if host.variant.startswith("v") and host.variant[1:].isdigit():
            level = int(host.variant[1:])
            vector += [
                Platform(host.os, "amd64", f"v{n}" if n > 1 else "")
                for n in range(level - 1, 0, -1)
            ]
        vector.append(Platform(host.os, "386"))
    elif host.architecture == "arm" and host.variant[1:].isdigit():
        level = int(host.variant[1:])
        vector += [Platform(host.os, "arm", f"v{n}") for n in range(level - 1, 4, -1)]
    elif host.architecture == "arm64":
        vector += [Platform(host.os, "arm", f"v{n}") for n in (8, 7, 6, 5)]
    return vector


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size_bytes: int
    platform: Platform | None = None
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class ManifestList:
    media_type: str
    manifests: tuple[Descriptor, ...]


def _descriptor(value: Any, what: str) -> Descriptor:
    if not isinstance(value, Mapping):
        raise InvalidManifest(f"invalid manifest: {what} is not an object")
    digest, size, media_type = value.get("digest"), value.get("size"), value.get("mediaType", "")
    if not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) != 71:
        raise InvalidManifest(f"invalid manifest: {what} has no valid sha256 digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidManifest(f"invalid manifest: {what} has no valid size")
    if not isinstance(media_type, str):
        raise InvalidManifest(f"invalid manifest: {what} has an invalid media type")
    platform = None
    raw_platform = value.get("platform")
    if isinstance(raw_platform, Mapping):
        platform = Platform(
            str(raw_platform.get("os", "")),
            str(raw_platform.get("architecture", "")),
            str(raw_platform.get("variant", "") or ""),
        )
    urls = value.get("urls") or ()
    return Descriptor(
        media_type, digest, size, platform, tuple(u for u in urls if isinstance(u, str))
    )


def parse_manifest(content_type: str, body: bytes) -> ImageManifest | ManifestList:
    """A manifest or a list, by the served Content-Type, else the document's `mediaType`
    (OCI documents may carry neither: then by their shape, as containerd does)."""
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise InvalidManifest(f"invalid manifest: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidManifest("invalid manifest: not a JSON object")
    served = content_type.split(";", 1)[0].strip().lower()
    declared = document.get("mediaType")
    media_type = served
    if served not in _LIST_TYPES | _MANIFEST_TYPES | {DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED}:
        if isinstance(declared, str) and declared:
            media_type = declared
        elif "manifests" in document:
            media_type = OCI_INDEX
        elif "layers" in document:
            media_type = OCI_MANIFEST
    if media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED) or document.get("schemaVersion") == 1:
        # Docker 20.10 could still convert these; Docker 28 refuses them as we do.
        raise InvalidManifest(
            "support Docker Image manifest version 2, schema 1 has been removed. "
            "More information at https://docs.docker.com/go/deprecated-image-specs/"
        )
    if media_type in _LIST_TYPES:
        entries = document.get("manifests")
        if not isinstance(entries, list):
            raise InvalidManifest("invalid manifest list: no manifests")
        return ManifestList(
            media_type, tuple(_descriptor(e, f"manifests[{i}]") for i, e in enumerate(entries))
        )
    if media_type in _MANIFEST_TYPES:
        layers = document.get("layers")
        if not isinstance(layers, list):
            raise InvalidManifest("invalid manifest: no layers")
        config = _descriptor(document.get("config"), "config")
        parsed = tuple(_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(layers))
        for layer in parsed:
            if layer.media_type not in LAYER_MEDIA_TYPES:
                raise InvalidManifest(f"unsupported media type {layer.media_type}")
        if config.media_type not in CONFIG_MEDIA_TYPES:
            # moby pull_v2: "Encountered remote %q(%s) when fetching"
            raise InvalidManifest(
                f"Encountered remote {config.media_type!r} when fetching: "
                "target is not a container image"
            )
        return ImageManifest(media_type, config, parsed)
    raise InvalidManifest(
        f"unsupported manifest media type {media_type or 'and no default available'}"
    )


def select_manifest(manifest_list: ManifestList, host: Platform) -> Descriptor:
    """The entry for `host`: containerd platforms.Only order (exact match, then what the
    host can also run); among equals, the first listed. moby 20.10 filterManifests."""
    vector = _platform_vector(host)
    best: tuple[int, Descriptor] | None = None
    for entry in manifest_list.manifests:
        if entry.platform is None or entry.media_type not in _MANIFEST_TYPES | {""}:
            continue
        candidate = entry.platform.normalized()
        for rank, wanted in enumerate(vector):
            if (
                candidate.os == wanted.os
                and candidate.architecture == wanted.architecture
                and candidate.variant == wanted.variant
            ):
                if best is None or rank < best[0]:
                    best = (rank, entry)
                break
    if best is None:
        raise InvalidManifest(
            f"no matching manifest for {format_platform(host.normalized())} "
            "in the manifest list entries"
        )
    return best[1]


def _go_indent(value: Any, indent: str = "   ", level: int = 0) -> str:
    """Go's json.MarshalIndent layout (dict order as given, HTML characters escaped)."""
    pad, inner = indent * level, indent * (level + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            f"{inner}{_go_string(k)}: {_go_indent(v, indent, level + 1)}" for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [inner + _go_indent(v, indent, level + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(value, str):
        return _go_string(value)
    return json.dumps(value)


def _go_string(text: str) -> str:
    encoded = json.dumps(text, ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        encoded = encoded.replace(raw, escaped)
    return encoded.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def build_schema2(config: Descriptor, layers: Sequence[Descriptor]) -> bytes:
    """The schema 2 manifest dockerd pushes for an image (see the module invariants)."""

    def wire(d: Descriptor) -> dict[str, Any]:
        return {"mediaType": d.media_type, "size": d.size_bytes, "digest": d.digest}

    document = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": wire(config),
        "layers": [wire(layer) for layer in layers],
    }
    return _go_indent(document).encode()


def manifest_digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()
