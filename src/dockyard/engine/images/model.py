"""Image references, the image config document, image IDs and layer chain IDs.

Role: the pure data model of Docker images. It parses and normalizes references the way
Docker's `distribution/reference` does, reads and writes the image config JSON the way the
Docker daemon writes it, and computes the content addresses derived from it.

Invariants:
- An image ID is `sha256:` + the SHA-256 of the config bytes exactly as stored; `ImageConfig`
  produces canonical bytes (`to_json`), but an ID is always computed from bytes, never from a
  re-serialization of parsed values (a foreign config may not be in our canonical form).
- `to_json` is byte-for-byte what Go's `encoding/json` produces for moby's `image.Image`:
  top-level keys sorted (moby's `Image.MarshalJSON` goes through a map), nested objects in
  Go struct field order, no whitespace, `<`, `>`, `&`, U+2028 and U+2029 escaped.
- Chain IDs follow the OCI image spec (config.md, "Layer ChainID").

This module is PURE: no I/O, no clock. Timestamps are passed in as values.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "ContainerConfig",
    "HealthConfig",
    "HistoryEntry",
    "ImageConfig",
    "InvalidReference",
    "Reference",
    "RootFS",
    "chain_ids",
    "digest_of",
    "format_time",
    "go_json",
    "image_id",
    "parse_reference",
    "short_id",
    "validate_digest",
    "validate_tag",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

# The grammar of github.com/distribution/reference (regexp.go), transcribed literally.
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_NAME_COMPONENT}(?:\.{_DOMAIN_NAME_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE_RE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$", re.ASCII)
_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{64}$")
_TAG_RE = re.compile(rf"^{_TAG}$", re.ASCII)

# go-digest: the algorithms Docker accepts and the hex length of each.
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


class InvalidReference(ValueError):
    """A reference Docker would reject; the message is Docker's own wording."""


def validate_digest(digest: str) -> str:
    """Return `digest` if go-digest's `Parse` accepts it, else raise with its wording."""
    algorithm, sep, hex_part = digest.partition(":")
    if not sep or not algorithm or not hex_part:
        raise InvalidReference("invalid checksum digest format")
    length = _DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        raise InvalidReference("unsupported digest algorithm")
    if len(hex_part) != length:
        raise InvalidReference("invalid checksum digest length")
    if not re.fullmatch(r"[a-f0-9]+", hex_part):
        raise InvalidReference("invalid checksum digest format")
    return digest


@dataclass(frozen=True)
class Reference:
    """A normalized, named image reference: `domain/path[:tag][@digest]`."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The fully qualified repository name, e.g. `docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def familiar_name(self) -> str:
        """The short name Docker shows: `busybox`, `user/app`, `localhost:5000/x/y`."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        return self.path.removeprefix(OFFICIAL_REPO_PREFIX)

    def familiar(self) -> str:
        """The short string Docker shows: `busybox:latest`, `x/y@sha256:…`."""
        text = self.familiar_name()
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def with_default_tag(self) -> Reference:
        """Docker's `TagNameOnly`: a bare name means `:latest`; a digest stays as it is."""
        if self.tag is None and self.digest is None:
            return Reference(self.domain, self.path, DEFAULT_TAG, None)
        return self


def _split_docker_domain(name: str) -> tuple[str, str]:
    # distribution/reference normalize.go splitDockerDomain: the first component is a
    # domain only if it looks like one (has '.' or ':', is "localhost", or has uppercase).
    first, sep, rest = name.partition("/")
    if not sep or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def _parse(text: str) -> tuple[str, str | None, str | None]:
    # distribution/reference reference.go Parse, with its error precedence.
    match = _REFERENCE_RE.match(text)
    if match is None:
        if not text:
            raise InvalidReference("repository name must have at least one component")
        if _REFERENCE_RE.match(text.lower()) is not None:
            raise InvalidReference("repository name must be lowercase")
        raise InvalidReference("invalid reference format")
    name, tag, digest = match.group(1), match.group(2), match.group(3)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference("repository name must not be more than 255 characters")
    if digest is not None:
        validate_digest(digest)
    return name, tag, digest


def parse_reference(text: str, *, default_tag: bool = True) -> Reference:
    """Parse `text` as Docker's `ParseNormalizedNamed` does (plus `TagNameOnly` by default).

    `busybox` → `docker.io/library/busybox:latest`; errors carry Docker's wording, e.g.
    `invalid reference format`.
    """
    if _IDENTIFIER_RE.match(text):
        raise InvalidReference(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_docker_domain(text)
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        raise InvalidReference(
            f"invalid reference format: repository name ({remote}) must be lowercase"
        )
    name, tag, digest = _parse(f"{domain}/{remainder}")
    # The name regexp has matched domain/remote, so splitting at the first '/' is exact.
    ref = Reference(domain, name[len(domain) + 1 :], tag, digest)
    return ref.with_default_tag() if default_tag else ref


def validate_tag(tag: str) -> str:
    """Return `tag` if Docker accepts it as a tag, else raise `invalid tag format`."""
    if not _TAG_RE.match(tag):
        raise InvalidReference("invalid tag format")
    return tag


def digest_of(data: bytes) -> str:
    """The OCI digest of `data`: `sha256:<hex>`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_id(config_bytes: bytes) -> str:
    """The image ID: the digest of the config bytes exactly as stored."""
    return digest_of(config_bytes)


def short_id(digest: str) -> str:
    """Docker's `stringid.TruncateID`: the first 12 hex digits, algorithm dropped."""
    return digest.partition(":")[2][:12] if ":" in digest else digest[:12]


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """Chain IDs of a layer stack, bottom first (OCI image spec, config.md "Layer ChainID").

    ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln)).
    """
    result: list[str] = []
    for diff_id in diff_ids:
        validate_digest(diff_id)
        if not result:
            result.append(diff_id)
        else:
            result.append(digest_of(f"{result[-1]} {diff_id}".encode()))
    return result


def format_time(moment: datetime) -> str:
    """Go's RFC3339Nano as `encoding/json` writes a `time.Time`: trailing zeros trimmed."""
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


@dataclass(frozen=True)
class HealthConfig:
    """moby `container.HealthConfig`; durations in nanoseconds, as Go's `time.Duration`."""

    test: tuple[str, ...] | None = None
    interval_ns: int = 0
    timeout_ns: int = 0
    start_period_ns: int = 0
    start_interval_ns: int = 0
    retries: int = 0

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {}
        # Every field is `omitempty`.
        if self.test:
            wire["Test"] = list(self.test)
        for key, value in (
            ("Interval", self.interval_ns),
            ("Timeout", self.timeout_ns),
            ("StartPeriod", self.start_period_ns),
            ("StartInterval", self.start_interval_ns),
            ("Retries", self.retries),
        ):
            if value:
                wire[key] = value
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> HealthConfig:
        return cls(
            test=_strings(wire.get("Test")),
            interval_ns=int(wire.get("Interval") or 0),
            timeout_ns=int(wire.get("Timeout") or 0),
            start_period_ns=int(wire.get("StartPeriod") or 0),
            start_interval_ns=int(wire.get("StartInterval") or 0),
            retries=int(wire.get("Retries") or 0),
        )


@dataclass(frozen=True)
class ContainerConfig:
    """moby `container.Config` as stored in an image config's `config` member.

    `None` means Go's nil (written `null`), distinct from an empty list or map; maps are
    kept as sorted tuples so the value is hashable and its serialization deterministic.
    """

    hostname: str = ""
    domainname: str = ""
    user: str = ""
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    exposed_ports: tuple[str, ...] | None = None
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    env: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    healthcheck: HealthConfig | None = None
    args_escaped: bool = False
    image: str = ""
    volumes: tuple[str, ...] | None = None
    working_dir: str = ""
    entrypoint: tuple[str, ...] | None = None
    network_disabled: bool = False
    mac_address: str = ""
    on_build: tuple[str, ...] | None = None
    labels: tuple[tuple[str, str], ...] | None = None
    stop_signal: str = ""
    stop_timeout_s: int | None = None
    shell: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # Maps and sets are unordered: keep them sorted so equal configs compare equal.
        for name in ("exposed_ports", "volumes", "labels"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(sorted(value)))

    def to_wire(self) -> dict[str, Any]:
        """The Go struct in field order; `omitempty` fields left out when empty."""

        def opt(values: tuple[str, ...] | None) -> list[str] | None:
            return None if values is None else list(values)

        def as_set(values: tuple[str, ...] | None) -> dict[str, Any] | None:
            # Go's map[string]struct{}: keys sorted, values `{}`.
            return None if values is None else {key: {} for key in sorted(values)}

        wire: dict[str, Any] = {
            "Hostname": self.hostname,
            "Domainname": self.domainname,
            "User": self.user,
            "AttachStdin": self.attach_stdin,
            "AttachStdout": self.attach_stdout,
            "AttachStderr": self.attach_stderr,
        }
        if self.exposed_ports:
            wire["ExposedPorts"] = as_set(self.exposed_ports)
        wire |= {
            "Tty": self.tty,
            "OpenStdin": self.open_stdin,
            "StdinOnce": self.stdin_once,
            "Env": opt(self.env),
            "Cmd": opt(self.cmd),
        }
        if self.healthcheck is not None:
            wire["Healthcheck"] = self.healthcheck.to_wire()
        if self.args_escaped:
            wire["ArgsEscaped"] = True
        wire |= {
            "Image": self.image,
            "Volumes": as_set(self.volumes),
            "WorkingDir": self.working_dir,
            "Entrypoint": opt(self.entrypoint),
        }
        if self.network_disabled:
            wire["NetworkDisabled"] = True
        if self.mac_address:
            wire["MacAddress"] = self.mac_address
        wire["OnBuild"] = opt(self.on_build)
        wire["Labels"] = None if self.labels is None else dict(sorted(self.labels))
        if self.stop_signal:
            wire["StopSignal"] = self.stop_signal
        if self.stop_timeout_s is not None:
            wire["StopTimeout"] = self.stop_timeout_s
        if self.shell:
            wire["Shell"] = list(self.shell)
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> ContainerConfig:
        def keys(value: Any) -> tuple[str, ...] | None:
            return None if value is None else tuple(sorted(str(k) for k in value))

        labels = wire.get("Labels")
        health = wire.get("Healthcheck")
        stop_timeout = wire.get("StopTimeout")
        return cls(
            hostname=str(wire.get("Hostname") or ""),
            domainname=str(wire.get("Domainname") or ""),
            user=str(wire.get("User") or ""),
            attach_stdin=bool(wire.get("AttachStdin")),
            attach_stdout=bool(wire.get("AttachStdout")),
            attach_stderr=bool(wire.get("AttachStderr")),
            exposed_ports=keys(wire.get("ExposedPorts")),
            tty=bool(wire.get("Tty")),
            open_stdin=bool(wire.get("OpenStdin")),
            stdin_once=bool(wire.get("StdinOnce")),
            env=_strings(wire.get("Env")),
            cmd=_strings(wire.get("Cmd")),
            healthcheck=None if health is None else HealthConfig.from_wire(health),
            args_escaped=bool(wire.get("ArgsEscaped")),
            image=str(wire.get("Image") or ""),
            volumes=keys(wire.get("Volumes")),
            working_dir=str(wire.get("WorkingDir") or ""),
            entrypoint=_strings(wire.get("Entrypoint")),
            network_disabled=bool(wire.get("NetworkDisabled")),
            mac_address=str(wire.get("MacAddress") or ""),
            on_build=_strings(wire.get("OnBuild")),
            labels=None
            if labels is None
            else tuple(sorted((str(k), str(v)) for k, v in labels.items())),
            stop_signal=str(wire.get("StopSignal") or ""),
            stop_timeout_s=None if stop_timeout is None else int(stop_timeout),
            shell=_strings(wire.get("Shell")),
        )


@dataclass(frozen=True)
class RootFS:
    """The image's layers as uncompressed-tar digests (DiffIDs), bottom first."""

    diff_ids: tuple[str, ...] = ()
    type: str = "layers"

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "diff_ids": list(self.diff_ids)}


@dataclass(frozen=True)
class HistoryEntry:
    """One `history` entry; `created` is an RFC 3339 string (see `format_time`)."""

    created: str | None = None
    author: str = ""
    created_by: str = ""
    comment: str = ""
    empty_layer: bool = False

    def to_wire(self) -> dict[str, Any]:
        # moby image.History: every field `omitempty`, in this order.
        wire: dict[str, Any] = {}
        if self.created is not None:
            wire["created"] = self.created
        if self.author:
            wire["author"] = self.author
        if self.created_by:
            wire["created_by"] = self.created_by
        if self.comment:
            wire["comment"] = self.comment
        if self.empty_layer:
            wire["empty_layer"] = True
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> HistoryEntry:
        created = wire.get("created")
        return cls(
            created=None if created is None else str(created),
            author=str(wire.get("author") or ""),
            created_by=str(wire.get("created_by") or ""),
            comment=str(wire.get("comment") or ""),
            empty_layer=bool(wire.get("empty_layer")),
        )


@dataclass(frozen=True)
class ImageConfig:
    """moby `image.Image`: the document whose digest is the image ID.

    `container_config` and `docker_version` are not modelled: Docker 25 stopped writing
    the former, and the latter names a Docker build we are not.
    """

    architecture: str
    os: str
    rootfs: RootFS
    config: ContainerConfig | None = None
    history: tuple[HistoryEntry, ...] = ()
    created: str | None = None
    author: str = ""
    comment: str = ""
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = field(default=())

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {}
        # Go `omitempty` on every top-level field except where noted.
        if self.architecture:
            wire["architecture"] = self.architecture
        if self.author:
            wire["author"] = self.author
        if self.comment:
            wire["comment"] = self.comment
        if self.config is not None:
            wire["config"] = self.config.to_wire()
        if self.created is not None:
            wire["created"] = self.created
        if self.history:
            wire["history"] = [entry.to_wire() for entry in self.history]
        if self.os:
            wire["os"] = self.os
        if self.os_features:
            wire["os.features"] = list(self.os_features)
        if self.os_version:
            wire["os.version"] = self.os_version
        wire["rootfs"] = self.rootfs.to_wire()
        if self.variant:
            wire["variant"] = self.variant
        # moby Image.MarshalJSON re-marshals through a map: top-level keys are sorted.
        return dict(sorted(wire.items()))

    def to_json(self) -> bytes:
        """The canonical bytes, as the Docker daemon would write this config."""
        return go_json(self.to_wire())

    def image_id(self) -> str:
        return image_id(self.to_json())

    @classmethod
    def from_json(cls, raw: bytes) -> ImageConfig:
        """Parse a stored config; raise `ValueError` if it is not an image config."""
        wire = json.loads(raw)
        if not isinstance(wire, dict):
            raise ValueError("image config is not a JSON object")
        rootfs = wire.get("rootfs") or {}
        config = wire.get("config")
        return cls(
            architecture=str(wire.get("architecture") or ""),
            os=str(wire.get("os") or ""),
            rootfs=RootFS(
                diff_ids=tuple(str(d) for d in rootfs.get("diff_ids") or ()),
                type=str(rootfs.get("type") or "layers"),
            ),
            config=None if config is None else ContainerConfig.from_wire(config),
            history=tuple(HistoryEntry.from_wire(h) for h in wire.get("history") or ()),
            created=None if wire.get("created") is None else str(wire["created"]),
            author=str(wire.get("author") or ""),
            comment=str(wire.get("comment") or ""),
            variant=str(wire.get("variant") or ""),
            os_version=str(wire.get("os.version") or ""),
            os_features=tuple(str(f) for f in wire.get("os.features") or ()),
        )

    def chain_ids(self) -> list[str]:
        return chain_ids(self.rootfs.diff_ids)


def go_json(value: Any) -> bytes:
    """Serialize as Go's `json.Marshal` would (dict order is the caller's)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # Go's HTML-safe escaping. These characters can only occur inside JSON strings, so a
    # textual replacement cannot touch the structure.
    for char, escape in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text.encode()


def _strings(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        # strslice.StrSlice accepts a bare string and means a one-element list.
        return (value,)
    return tuple(str(v) for v in value)
