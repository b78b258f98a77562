"""Volumes and mounts as values: parsing `-v`/`--mount`/`--volumes-from`, planning a
container's mount points, and Docker's JSON for volumes and container `Mounts`.

Role: everything about volumes that can be decided without touching the host. The parsing
follows moby `daemon/volume/mounts/linux_parser.go` (rules and messages), the planning
`daemon/volumes.go` registerMountPoints and `daemon/create_unix.go`
createContainerVolumesOS, the OCI mounts `daemon/volumes_unix.go` setupMounts and
`daemon/oci_linux.go` withMounts, and the local driver's options
`daemon/volume/local/local_unix.go`.

Pure: no I/O, no clock, no randomness of its own (anonymous names take an `rng`, times
come in as arguments). Whatever needs the host (does a bind source exist, is a volume
there already, what is in the image at a path) is asked by `service.py`/`store.py`.

Invariants:
- A plan never holds two mount points for one destination (the cleaned path); later kinds
  replace earlier ones exactly where moby lets them (`--volumes-from` < `-v` < `--mount`)
  and raise `Duplicate mount point` where moby does.
- Every error is a `VolumeError` carrying Docker's text and HTTP status.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from dockyard.engine.model.container import Conflict, EngineError, InvalidArgument, NotFound
from dockyard.engine.model.filters import FilterArgs
from dockyard.engine.model.oci_spec import _merge_tmpfs_options
from dockyard.engine.security.defaults import Mount

__all__ = [
    "ANONYMOUS_LABEL",
    "DEFAULT_DRIVER",
    "InvalidVolume",
    "LocalOptions",
    "MountPlan",
    "MountPoint",
    "VolumeConflict",
    "VolumeError",
    "VolumeInUse",
    "VolumeNotFound",
    "VolumeRecord",
    "VolumeRequest",
    "check_bind_propagation",
    "format_created_at",
    "inspect_mounts",
    "match_volume",
    "new_volume_name",
    "oci_mounts",
    "parse_bind",
    "parse_local_options",
    "parse_mount",
    "parse_volumes_from",
    "plan_mounts",
    "prune_filters",
    "rootfs_propagation",
    "validate_local_name",
    "volume_json",
]

# moby volume/service: the label every anonymous volume carries (API 1.42+), which prune
# uses to spare named volumes unless `all=true`.
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
DEFAULT_DRIVER = "local"  # moby volume.DefaultDriverName

# linux_parser.go
_RW_MODES = frozenset({"rw", "ro"})
_LABEL_MODES = frozenset({"z", "Z"})
PROPAGATION_MODES = frozenset({"private", "rprivate", "slave", "rslave", "shared", "rshared"})
_CONSISTENCY_MODES = frozenset({"consistent", "cached", "delegated"})
_COPY_MODE = "nocopy"
DEFAULT_PROPAGATION = "rprivate"
_TMPFS_OPTIONS = frozenset({"exec", "noexec"})  # linux_parser.go validTmpfsOptions

# local_unix.go validOpts / mandatoryOpts, in moby's order of checking.
LOCAL_OPTION_KEYS = frozenset({"type", "o", "device", "size"})
_MANDATORY_OPTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("device", ("type",)),
    ("type", ("device",)),
    ("o", ("device", "type")),
)
# moby daemon/names RestrictedNamePattern, which the local driver enforces.
_RESTRICTED_NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
_RESTRICTED_NAME = re.compile(f"^{_RESTRICTED_NAME_CHARS}+$")

# moby volume/service convert.go accepted filters.
LIST_FILTERS = frozenset({"driver", "label", "name", "dangling"})
PRUNE_FILTERS = frozenset({"label", "label!", "all"})


# --- errors -------------------------------------------------------------------------------


class VolumeError(EngineError):
    """A volume operation Docker refuses; `status` is the HTTP status dockerd answers."""

    status = 500


class InvalidVolume(VolumeError, InvalidArgument):
    status = 400


class VolumeNotFound(VolumeError, NotFound):
    status = 404


class VolumeInUse(VolumeError, Conflict):
    status = 409


class VolumeConflict(VolumeError, Conflict):
    status = 409


def _mount_config_error(mount_type: str, detail: str) -> InvalidVolume:
    # validate.go errMountConfig: Go's %q of the type, then the cause.
    return InvalidVolume(f'invalid mount config for type "{mount_type}": {detail}')


def _invalid_spec(raw: str) -> str:
    return f"invalid volume specification: '{raw}'"


def duplicate_mount_point(destination: str) -> InvalidVolume:
    # moby daemon/volumes.go duplicateMountPointError (errdefs.InvalidParameter).
    return InvalidVolume(f"Duplicate mount point: {destination}")


# --- values -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MountPoint:
    """One entry of a container's mounts, stored with the container as JSON.

    `source` is the host path of a bind (cleaned); volumes resolve theirs from the store.
    `mode` is the option text inspect shows; `propagation` is "" for volumes and tmpfs.
    `create_source`: a `-v` bind whose missing source is made a directory at start (moby
    MountPoint.Setup); `--mount` binds must exist (unless BindOptions.CreateMountpoint).
    """

    type: str
    destination: str
    source: str
    name: str
    driver: str
    read_write: bool
    mode: str
    propagation: str
    copy_data: bool
    anonymous: bool
    tmpfs_size_bytes: int = 0
    tmpfs_mode: int = 0
    tmpfs_options: tuple[str, ...] = ()  # TmpfsOptions.Options: exec / noexec
    non_recursive: bool = False  # BindOptions.NonRecursive: "bind" instead of "rbind"
    readonly_non_recursive: bool = False  # BindOptions.ReadOnlyNonRecursive
    create_source: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "destination": self.destination,
            "source": self.source,
            "name": self.name,
            "driver": self.driver,
            "read_write": self.read_write,
            "mode": self.mode,
            "propagation": self.propagation,
            "copy_data": self.copy_data,
            "anonymous": self.anonymous,
            "tmpfs_size_bytes": self.tmpfs_size_bytes,
            "tmpfs_mode": self.tmpfs_mode,
            "tmpfs_options": list(self.tmpfs_options),
            "non_recursive": self.non_recursive,
            "readonly_non_recursive": self.readonly_non_recursive,
            "create_source": self.create_source,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> MountPoint:
        return cls(
            type=str(obj["type"]),
            destination=str(obj["destination"]),
            source=str(obj.get("source", "")),
            name=str(obj.get("name", "")),
            driver=str(obj.get("driver", "")),
            read_write=bool(obj.get("read_write", True)),
            mode=str(obj.get("mode", "")),
            propagation=str(obj.get("propagation", "")),
            copy_data=bool(obj.get("copy_data", False)),
            anonymous=bool(obj.get("anonymous", False)),
            tmpfs_size_bytes=int(obj.get("tmpfs_size_bytes", 0)),
            tmpfs_mode=int(obj.get("tmpfs_mode", 0)),
            tmpfs_options=tuple(str(o) for o in obj.get("tmpfs_options", ())),
            non_recursive=bool(obj.get("non_recursive", False)),
            readonly_non_recursive=bool(obj.get("readonly_non_recursive", False)),
            create_source=bool(obj.get("create_source", False)),
        )

    def tmpfs_data(self) -> str:
        """moby linux_parser.go ConvertTmpfsOptions: `ro`, `mode=`, `size=` with the largest
        unit that divides the size, then the extra options."""
        out: list[str] = []
        if not self.read_write:
            out.append("ro")
        if self.tmpfs_mode:
            out.append(f"mode={self.tmpfs_mode:o}")
        if self.tmpfs_size_bytes:
            size, suffix = self.tmpfs_size_bytes, ""
            for unit, divisor in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
                if size % divisor == 0:
                    size, suffix = size // divisor, unit
                    break
            out.append(f"size={size}{suffix}")
        out.extend(self.tmpfs_options)
        return ",".join(out)


@dataclass(frozen=True)
class VolumeRequest:
    """A volume a plan needs: created if absent (moby creates `-v name:` volumes at
    container create), found otherwise. Options and labels apply only to a creation."""

    name: str
    driver: str
    options: Mapping[str, str] | None = None
    labels: Mapping[str, str] | None = None
    anonymous: bool = False
    # False for another container's volume (`--volumes-from`): moby only looks it up.
    create: bool = True


@dataclass(frozen=True)
class MountPlan:
    """What `plan_mounts` decided: the mount points in the container's record, the
    volumes they need, and the `--mount` bind sources that must exist on the host."""

    points: tuple[MountPoint, ...]
    volumes: tuple[VolumeRequest, ...]
    bind_sources: tuple[str, ...]


@dataclass(frozen=True)
class LocalOptions:
    """The local driver's mount options (moby local_unix.go optsConfig, as in opts.json)."""

    mount_type: str = ""
    mount_opts: str = ""
    mount_device: str = ""

    @property
    def needs_mount(self) -> bool:
        # local_unix.go needsMount: a device or a type makes the volume a mount.
        return bool(self.mount_device or self.mount_type)

    def to_json(self) -> dict[str, Any]:
        # Docker's opts.json field names (localVolume.saveOpts of optsConfig).
        return {
            "MountType": self.mount_type,
            "MountOpts": self.mount_opts,
            "MountDevice": self.mount_device,
            "Quota": {"Size": 0},
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> LocalOptions:
        return cls(
            str(obj.get("MountType") or ""),
            str(obj.get("MountOpts") or ""),
            str(obj.get("MountDevice") or ""),
        )


@dataclass(frozen=True)
class VolumeRecord:
    """A volume of the local driver as its metadata file keeps it.

    `options`/`labels` are None when the request had none: dockerd answers `null` then
    and `{}` for an empty map (the CLI sends empty maps for `docker volume create`).
    """

    name: str
    driver: str
    created_at_s: int
    labels: Mapping[str, str] | None = None
    options: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "Driver": self.driver,
            "CreatedAt": self.created_at_s,
            "Labels": None if self.labels is None else dict(self.labels),
            "Options": None if self.options is None else dict(self.options),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> VolumeRecord:
        labels = obj.get("Labels")
        options = obj.get("Options")
        return cls(
            name=str(obj["Name"]),
            driver=str(obj.get("Driver") or DEFAULT_DRIVER),
            created_at_s=int(obj.get("CreatedAt") or 0),
            labels=None if labels is None else {str(k): str(v) for k, v in labels.items()},
            options=None if options is None else {str(k): str(v) for k, v in options.items()},
        )

    @property
    def anonymous(self) -> bool:
        return self.labels is not None and ANONYMOUS_LABEL in self.labels


class RandomSource(Protocol):
    def getrandbits(self, k: int, /) -> int: ...


def new_volume_name(rng: RandomSource) -> str:
    """moby stringid.GenerateRandomID: 64 hex characters."""
    return f"{rng.getrandbits(256):064x}"


# --- path helpers (Go's path package on Linux) ----------------------------------------------


def _clean(path: str) -> str:
    # Go path.Clean; "" cleans to ".".
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    # normpath keeps a leading "//", path.Clean does not.
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _validate_not_root(target: str) -> str | None:
    if _clean(target.replace("\\", "/")) == "/":
        return "invalid specification: destination can't be '/'"
    return None


def _validate_absolute(path: str) -> str | None:
    path = path.replace("\\", "/")
    if path.startswith("/"):
        return None
    return f"invalid mount path: '{path}' mount path must be absolute"


def _is_local(path: str) -> bool:
    # Go filepath.IsLocal on Unix: relative, non-empty, not escaping by "..".
    if not path or path.startswith("/"):
        return False
    return _clean(path) != ".." and not _clean(path).startswith("../")


# --- -v (HostConfig.Binds) ------------------------------------------------------------------


def _valid_mode(mode: str) -> bool:
    """linux_parser.go linuxValidMountMode: at most one option of each kind."""
    if not mode:
        return True
    counts = {"rw": 0, "label": 0, "propagation": 0, "copy": 0, "consistency": 0}
    for option in mode.split(","):
        if option in _RW_MODES:
            counts["rw"] += 1
        elif option in _LABEL_MODES:
            counts["label"] += 1
        elif option in PROPAGATION_MODES:
            counts["propagation"] += 1
        elif option == _COPY_MODE:
            counts["copy"] += 1
        elif option in _CONSISTENCY_MODES:
            counts["consistency"] += 1
        else:
            return False
    return all(n <= 1 for n in counts.values())


def _read_write(mode: str) -> bool:
    return _valid_mode(mode) and "ro" not in mode.split(",")


def _propagation_of(mode: str) -> str:
    for option in mode.split(","):
        if option in PROPAGATION_MODES:
            return option
    return ""


def parse_bind(raw: str, volume_driver: str = "") -> MountPoint:
    """One `-v` entry (moby linuxParser.ParseMountRaw): `/host:/ctr[:mode]` is a bind,
    `name:/ctr[:mode]` a named volume, `/ctr` an anonymous volume."""
    parts = raw.split(":", 3)
    if parts[0] == "":
        raise InvalidVolume(_invalid_spec(raw))
    source, mode = "", ""
    if len(parts) == 1:
        target = parts[0]
    elif len(parts) == 2:
        if _valid_mode(parts[1]):
            # `/foo:rw`: a destination with a mode is not a volume.
            raise InvalidVolume(_invalid_spec(raw))
        source, target = parts
    elif len(parts) == 3:
        source, target, mode = parts
    else:
        raise InvalidVolume(_invalid_spec(raw))
    if not _valid_mode(mode):
        raise InvalidVolume(f"invalid mode: {mode}")
    options = mode.split(",") if mode else []
    is_bind = source.startswith("/")  # Go path.IsAbs
    spec = _MountSpec(
        type="bind" if is_bind else "volume",
        source=source,
        target=target,
        read_only=not _read_write(mode),
        propagation=_propagation_of(mode),
        has_bind_options=bool(_propagation_of(mode)),
        # ParseMountRaw sets VolumeOptions for `nocopy` and, on volumes, for a driver.
        has_volume_options=_COPY_MODE in options or bool(volume_driver and not is_bind),
        no_copy=_COPY_MODE in options,
        driver="" if is_bind else volume_driver,
    )
    try:
        point = _parse_spec(spec, check_subpath=False)
    except InvalidVolume as e:
        raise InvalidVolume(f"{_invalid_spec(raw)}: {e}") from None
    if point.type == "bind":
        return replace(point, mode=mode, create_source=True)
    # setBindModeIfNull: a local volume shows "z" when no mode was given.
    return replace(point, mode=mode or "z")


@dataclass(frozen=True)
class _MountSpec:
    """The fields of moby's mount.Mount this parser reads (internal)."""

    type: str
    source: str
    target: str
    read_only: bool = False
    propagation: str = ""
    non_recursive: bool = False
    readonly_non_recursive: bool = False
    create_mountpoint: bool = False
    has_bind_options: bool = False
    has_volume_options: bool = False
    has_tmpfs_options: bool = False
    no_copy: bool = False
    driver: str = ""
    subpath: str = ""
    tmpfs_size_bytes: int = 0
    tmpfs_mode: int = 0
    tmpfs_options: tuple[str, ...] = ()
    extra_options: tuple[str, ...] = ()  # ImageOptions / ClusterOptions given


def _parse_spec(spec: _MountSpec, *, check_subpath: bool = True) -> MountPoint:
    """moby validateMountConfigImpl (without the bind source check) + parseMountSpec."""

    def fail(detail: str) -> InvalidVolume:
        return _mount_config_error(spec.type, detail)

    # validate.go validateExclusiveOptions, in its order.
    if spec.type != "bind" and spec.has_bind_options:
        raise fail("field BindOptions must not be specified")
    if spec.type != "volume" and spec.has_volume_options:
        raise fail("field VolumeOptions must not be specified")
    if "ImageOptions" in spec.extra_options:
        raise fail("field ImageOptions must not be specified")
    if spec.type != "tmpfs" and spec.has_tmpfs_options:
        raise fail("field TmpfsOptions must not be specified")
    if "ClusterOptions" in spec.extra_options:
        raise fail("field ClusterOptions must not be specified")
    if spec.target == "":
        raise fail("field Target must not be empty")
    for problem in (_validate_not_root(spec.target), _validate_absolute(spec.target)):
        if problem:
            raise fail(problem)
    destination = _clean(spec.target.replace("\\", "/"))
    if spec.type == "bind":
        if spec.source == "":
            raise fail("field Source must not be empty")
        if spec.propagation and spec.propagation not in PROPAGATION_MODES:
            raise fail(f"invalid propagation mode: {spec.propagation}")
        if problem := _validate_absolute(spec.source):
            raise fail(problem)
        return MountPoint(
            type="bind",
            destination=destination,
            source=_clean(spec.source),
            name="",
            driver="",
            read_write=not spec.read_only,
            mode="",
            propagation=spec.propagation or DEFAULT_PROPAGATION,
            copy_data=False,
            anonymous=False,
            non_recursive=spec.non_recursive,
            readonly_non_recursive=spec.readonly_non_recursive,
            create_source=spec.create_mountpoint,
        )
    if spec.type == "volume":
        if spec.subpath:
            if spec.source == "":
                raise fail("must not set Subpath when using anonymous volumes")
            if check_subpath and not _is_local(spec.subpath):
                raise fail("subpath must be a relative path within the volume")
            # Not yet: dockyard mounts whole volumes only.
            raise fail("VolumeOptions.Subpath is not supported by dockyard yet")
        return MountPoint(
            type="volume",
            destination=destination,
            source="",
            name=spec.source,
            driver=spec.driver or DEFAULT_DRIVER,
            read_write=not spec.read_only,
            mode="",
            propagation="",
            copy_data=not spec.no_copy,
            anonymous=spec.source == "",
        )
    if spec.type == "tmpfs":
        if spec.source != "":
            raise fail("field Source must not be specified")
        for option in spec.tmpfs_options:
            if option.partition("=")[0] not in _TMPFS_OPTIONS:
                raise fail(f"invalid option: {option.partition('=')[0]}")
        return MountPoint(
            type="tmpfs",
            destination=destination,
            source="",
            name="",
            driver="",
            read_write=not spec.read_only,
            mode="",
            propagation="",
            copy_data=False,
            anonymous=False,
            tmpfs_size_bytes=spec.tmpfs_size_bytes,
            tmpfs_mode=spec.tmpfs_mode,
            tmpfs_options=spec.tmpfs_options,
        )
    if spec.type == "image":
        raise fail("image mounts are not supported by dockyard yet")
    raise fail("mount type unknown")


# --- --mount (HostConfig.Mounts) ------------------------------------------------------------


def _opt_map(value: Any, what: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidVolume(f"json: cannot unmarshal {what}: not an object")
    return value


def _str_map(value: Any, what: str) -> dict[str, str] | None:
    mapping = _opt_map(value, what)
    return None if mapping is None else {str(k): str(v) for k, v in mapping.items()}


def parse_mount(obj: Mapping[str, Any]) -> tuple[MountPoint, VolumeRequest | None]:
    """One HostConfig.Mounts entry (moby ParseMountSpec); for a volume, also the request
    that creates it with the entry's labels and driver options."""
    bind_opts = _opt_map(obj.get("BindOptions"), "BindOptions")
    volume_opts = _opt_map(obj.get("VolumeOptions"), "VolumeOptions")
    tmpfs_opts = _opt_map(obj.get("TmpfsOptions"), "TmpfsOptions")
    driver_cfg = _opt_map((volume_opts or {}).get("DriverConfig"), "DriverConfig")
    raw_tmpfs_options = (tmpfs_opts or {}).get("Options") or []
    tmpfs_options: list[str] = []
    for entry in raw_tmpfs_options:
        # linux_parser.go validateTmpfsOptions: [name] or [name, value].
        items = [str(x) for x in entry] if isinstance(entry, list) else []
        if not 1 <= len(items) <= 2:
            raise _mount_config_error(str(obj.get("Type") or ""), "invalid option array length")
        tmpfs_options.append("=".join(items))
    try:
        spec = _MountSpec(
            type=str(obj.get("Type") or ""),
            source=str(obj.get("Source") or ""),
            target=str(obj.get("Target") or ""),
            read_only=bool(obj.get("ReadOnly")),
            propagation=str((bind_opts or {}).get("Propagation") or ""),
            non_recursive=bool((bind_opts or {}).get("NonRecursive")),
            readonly_non_recursive=bool((bind_opts or {}).get("ReadOnlyNonRecursive")),
            create_mountpoint=bool((bind_opts or {}).get("CreateMountpoint")),
            has_bind_options=bind_opts is not None,
            has_volume_options=volume_opts is not None,
            has_tmpfs_options=tmpfs_opts is not None,
            no_copy=bool((volume_opts or {}).get("NoCopy")),
            driver=str((driver_cfg or {}).get("Name") or ""),
            subpath=str((volume_opts or {}).get("Subpath") or ""),
            tmpfs_size_bytes=int((tmpfs_opts or {}).get("SizeBytes") or 0),
            tmpfs_mode=int((tmpfs_opts or {}).get("Mode") or 0),
            tmpfs_options=tuple(tmpfs_options),
            extra_options=tuple(
                k for k in ("ImageOptions", "ClusterOptions") if obj.get(k) is not None
            ),
        )
    except (TypeError, ValueError) as e:
        raise InvalidVolume(f"json: cannot unmarshal mount: {e}") from None
    point = _parse_spec(spec)
    if point.type == "bind" and point.read_write and point.readonly_non_recursive:
        # volumes_unix.go setupMounts
        raise InvalidVolume("mount options conflict: !ReadOnly && BindOptions.ReadOnlyNonRecursive")
    if point.type != "volume":
        return point, None
    request = VolumeRequest(
        name=point.name,
        driver=point.driver,
        options=_str_map((driver_cfg or {}).get("Options"), "DriverConfig.Options"),
        labels=_str_map((volume_opts or {}).get("Labels"), "VolumeOptions.Labels"),
        anonymous=point.anonymous,
    )
    # setBindModeIfNull for the local driver.
    return replace(point, mode="z" if point.driver == DEFAULT_DRIVER else ""), request


# --- --volumes-from -------------------------------------------------------------------------


def parse_volumes_from(spec: str) -> tuple[str, str]:
    """moby linuxParser.ParseVolumesFrom: `container[:mode]`; mode defaults to rw and may
    name neither a propagation nor a copy mode."""
    if spec == "":
        raise InvalidVolume("volumes-from specification cannot be an empty string")
    ref, _, mode = spec.partition(":")
    if mode == "":
        return ref, "rw"
    if not _valid_mode(mode) or _propagation_of(mode) or _COPY_MODE in mode.split(","):
        raise InvalidVolume(f"invalid mode: {mode}")
    return ref, mode


# --- planning -------------------------------------------------------------------------------


def plan_mounts(
    *,
    binds: Sequence[str],
    mounts: Sequence[Mapping[str, Any]],
    config_volumes: Iterable[str],
    image_volumes: Iterable[str],
    volumes_from: Sequence[tuple[Sequence[MountPoint], str]],
    tmpfs_destinations: Iterable[str],
    rng: RandomSource,
    volume_driver: str = "",
) -> MountPlan:
    """A container's mount points, as moby registerMountPoints then
    createContainerVolumesOS decide them.

    Order (later replaces earlier at the same destination): `--volumes-from` containers'
    binds and volumes, `-v` entries (a duplicate among them, or with `--tmpfs`, is an
    error), `--mount` entries (a duplicate of a `-v` or `--mount` is an error), then
    Config.Volumes and the image's VOLUMEs as anonymous volumes where nothing is mounted.
    """
    tmpfs = {_clean(d) for d in tmpfs_destinations}
    points: dict[str, MountPoint] = {}
    taken: set[str] = set()  # destinations of -v and --mount entries
    requests: dict[str, VolumeRequest] = {}
    bind_sources: list[str] = []

    def anonymous_name() -> str:
        name = new_volume_name(rng)
        while name in requests:
            name = new_volume_name(rng)
        return name

    def need(request: VolumeRequest) -> str:
        if request.anonymous:
            name = anonymous_name()
            labels = {**(request.labels or {}), ANONYMOUS_LABEL: ""}
            requests[name] = replace(request, name=name, labels=labels)
            return name
        requests.setdefault(request.name, request)
        return request.name

    for other_points, mode in volumes_from:
        for other in other_points:
            if other.type == "tmpfs":
                continue
            points[other.destination] = replace(
                other,
                read_write=other.read_write and _read_write(mode),
                copy_data=False,
                mode="",
                create_source=False,
            )
            if other.type == "volume":
                need(VolumeRequest(other.name, other.driver or DEFAULT_DRIVER, create=False))
    for raw in binds:
        point = parse_bind(raw, volume_driver)
        if point.destination in taken or point.destination in tmpfs:
            raise duplicate_mount_point(point.destination)
        if point.type == "volume":
            name = need(VolumeRequest(point.name, point.driver, anonymous=point.anonymous))
            point = replace(point, name=name)
        taken.add(point.destination)
        points[point.destination] = point
    for obj in mounts:
        if not isinstance(obj, Mapping):
            raise InvalidVolume("json: cannot unmarshal mount: not an object")
        point, request = parse_mount(obj)
        if point.destination in taken or point.destination in tmpfs:
            raise duplicate_mount_point(str(obj.get("Target") or ""))
        if request is not None:
            point = replace(point, name=need(request))
        if point.type == "bind" and not point.create_source:
            bind_sources.append(point.source)
        taken.add(point.destination)
        points[point.destination] = point
    # createContainerVolumesOS: Config.Volumes (the image's merged in) become anonymous
    # volumes unless a mount point or a --tmpfs already has the path.
    for raw in [*config_volumes, *image_volumes]:
        destination = _clean(raw)
        if destination in points or destination in tmpfs:
            continue
        for problem in (_validate_not_root(raw), _validate_absolute(raw)):
            if problem:
                raise _mount_config_error("volume", problem)
        name = need(VolumeRequest("", volume_driver or DEFAULT_DRIVER, anonymous=True))
        points[destination] = MountPoint(
            type="volume",
            destination=destination,
            source="",
            name=name,
            driver=volume_driver or DEFAULT_DRIVER,
            read_write=True,
            mode="",
            propagation="",
            copy_data=True,
            anonymous=True,
        )
    for request in requests.values():
        if request.driver != DEFAULT_DRIVER:
            # Only the built-in driver exists (no plugins): moby's lookup failure.
            raise VolumeNotFound(
                f"create {request.name}: error looking up volume plugin {request.driver}: "
                f'plugin "{request.driver}" not found'
            )
    return MountPlan(tuple(points.values()), tuple(requests.values()), tuple(bind_sources))


# --- OCI mounts -----------------------------------------------------------------------------


def _depth(destination: str) -> int:
    # moby daemon/volumes.go mountSort: separators in the cleaned path.
    return _clean(destination).count("/")


def oci_mounts(
    points: Sequence[MountPoint],
    sources: Mapping[str, str],
    *,
    recursive_readonly: bool = False,
) -> list[Mount]:
    """The mounts runc applies for `points` (moby setupMounts + withMounts), sorted by
    depth with the caller's order kept among equals.

    `sources` maps a destination to its host path (volumes resolved by the store).
    Binds and volumes are `rbind` (`bind` with NonRecursive), `ro` when read-only (`rro`
    where the runtime and kernel support recursive read-only and the mount did not ask for
    a non-recursive one, API 1.44), and carry their propagation flag when they have one
    (volumes have none). Tmpfs mounts get moby's defaults merged with their data.
    """
    out: list[Mount] = []
    for point in points:
        if point.type == "tmpfs":
            options = ["noexec", "nosuid", "nodev", DEFAULT_PROPAGATION]
            data = point.tmpfs_data()
            if data:
                options.extend(data.split(","))
            merged = tuple(_merge_tmpfs_options(options))
            out.append(Mount(point.destination, "tmpfs", "tmpfs", merged))
            continue
        options = ["bind" if point.non_recursive else "rbind"]
        if not point.read_write:
            rro = recursive_readonly and not point.readonly_non_recursive
            options.append("rro" if rro else "ro")
        if point.propagation:
            options.append(point.propagation)
        out.append(Mount(point.destination, "bind", sources[point.destination], tuple(options)))
    return sorted(out, key=lambda m: _depth(m.destination))


def rootfs_propagation(points: Sequence[MountPoint]) -> str:
    """What withMounts sets as Linux.RootfsPropagation: `shared` when a bind is (r)shared,
    else `rslave` when one is (r)slave, else "" (runc's default)."""
    modes = {p.propagation for p in points if p.type != "tmpfs"}
    if modes & {"shared", "rshared"}:
        return "shared"
    if modes & {"slave", "rslave"}:
        return "rslave"
    return ""


def _unescape_mountinfo(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def check_bind_propagation(source: str, real_source: str, propagation: str, mountinfo: str) -> None:
    """moby oci_linux.go ensureShared / ensureSharedOrSlave: a (r)shared bind needs its
    source on a shared mount, a (r)slave one on a shared or slave mount. `real_source`
    is `source` with symlinks resolved; `mountinfo` the text of /proc/self/mountinfo.
    The source's mount is the longest mount point above it, the later of equals
    (getSourceMount)."""
    if propagation not in ("shared", "rshared", "slave", "rslave"):
        return
    best: tuple[str, tuple[str, ...]] | None = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 7 or "-" not in fields[6:]:
            continue
        point = _unescape_mountinfo(fields[4])
        parent = point == "/" or real_source == point or real_source.startswith(point + "/")
        if parent and (best is None or len(point) >= len(best[0])):
            best = (point, tuple(fields[6 : fields.index("-", 6)]))
    if best is None:
        raise VolumeError(f"Can't find mount point of {source}")
    point, optional = best
    shared = any(o.startswith("shared:") for o in optional)
    slave = any(o.startswith("master:") for o in optional)
    if propagation in ("shared", "rshared") and not shared:
        raise VolumeError(f"path {source} is mounted on {point} but it is not a shared mount")
    if not (shared or slave):
        raise VolumeError(
            f"path {source} is mounted on {point} but it is not a shared or slave mount"
        )


# --- container inspect ----------------------------------------------------------------------


def inspect_mounts(
    points: Sequence[MountPoint], volume_paths: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Container inspect `Mounts` (moby daemon/inspect.go, api container.MountPoint:
    Type, Name and Driver omitted when empty). Ordered by destination (dockerd walks a map).
    """
    out: list[dict[str, Any]] = []
    for point in sorted(points, key=lambda p: p.destination):
        entry: dict[str, Any] = {"Type": point.type}
        if point.name:
            entry["Name"] = point.name
        if point.type == "volume":
            source = volume_paths.get(point.name, "")
        elif point.type == "bind":
            source = point.source
        else:
            source = ""
        entry["Source"] = source
        entry["Destination"] = point.destination
        if point.driver:
            entry["Driver"] = point.driver
        entry["Mode"] = point.mode
        entry["RW"] = point.read_write
        entry["Propagation"] = point.propagation
        out.append(entry)
    return out


# --- the local driver -----------------------------------------------------------------------


def validate_local_name(name: str) -> None:
    """moby local.go validateName, with the store's `create <name>: ` prefix."""
    if len(name) == 1:
        raise InvalidVolume(
            f"create {name}: volume name is too short, names should be at least two "
            "alphanumeric characters"
        )
    if not _RESTRICTED_NAME.match(name):
        raise InvalidVolume(
            f'create {name}: "{name}" includes invalid characters for a local volume name, '
            f'only "{_RESTRICTED_NAME_CHARS}" are allowed. If you intended to pass a host '
            "directory, use absolute path"
        )


def parse_local_options(name: str, opts: Mapping[str, str]) -> LocalOptions:
    """moby local_unix.go validateOpts + setOpts (20.10's `invalid option key` text)."""
    for key in sorted(opts):
        if key not in LOCAL_OPTION_KEYS:
            raise InvalidVolume(f'create {name}: invalid option key: "{key}"')
    for key, required in _MANDATORY_OPTIONS:
        if key in opts:
            for other in required:
                if other not in opts:
                    raise InvalidVolume(f'create {name}: missing required option: "{other}"')
    if "size" in opts:
        # Quotas need an XFS project-quota backing filesystem, which dockyard does not set up.
        raise InvalidVolume(f"create {name}: quota size requested but no quota support")
    return LocalOptions(opts.get("type", ""), opts.get("o", ""), opts.get("device", ""))


def format_created_at(unix_s: int) -> str:
    """Go's time.RFC3339 in UTC (seconds, `Z`), as `docker volume inspect` shows."""
    days, second_of_day = divmod(unix_s, 86_400)
    # Howard Hinnant's civil_from_days.
    z = days + 719_468
    era = (z if z >= 0 else z - 146_096) // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    hour, rest = divmod(second_of_day, 3600)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{rest // 60:02d}:{rest % 60:02d}Z"


def volume_json(
    record: VolumeRecord,
    mountpoint: str,
    *,
    usage: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """A volume as `GET /volumes/{name}` answers it (api/types/volume.Volume);
    `usage` = (size bytes, ref count) adds UsageData, as only `system df` asks."""
    out: dict[str, Any] = {
        "CreatedAt": format_created_at(record.created_at_s),
        "Driver": record.driver,
        "Labels": None if record.labels is None else dict(record.labels),
        "Mountpoint": mountpoint,
        "Name": record.name,
        "Options": None if record.options is None else dict(record.options),
        "Scope": "local",
    }
    if usage is not None:
        out["UsageData"] = {"Size": usage[0], "RefCount": usage[1]}
    return out


# --- list and prune filters -----------------------------------------------------------------


def _parse_bool(text: str) -> bool | None:
    # Go strconv.ParseBool.
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    return None


def match_volume(filters: FilterArgs, record: VolumeRecord, in_use: bool) -> bool:
    """moby volume/service convert.go filtersToBy for `docker volume ls` and prune:
    driver (exact), name (substring or regexp), label (key or key=value, all), label!
    (none), dangling (boolean)."""
    if filters.get("driver") and record.driver not in filters.get("driver"):
        return False
    if filters.contains("name") and not filters.match("name", record.name):
        return False
    labels = dict(record.labels or {})
    if not filters.match_kv_list("label", labels):
        return False
    for value in filters.get("label!"):
        if FilterArgs({"label": frozenset({value})}).match_kv_list("label", labels):
            return False
    if filters.contains("dangling"):
        # filters.Args.GetBoolOrDefault: only 0/1/true/false, not both.
        values = filters.get("dangling")
        is_false = bool(values & {"0", "false"})
        is_true = bool(values & {"1", "true"})
        if is_false == is_true:
            raise InvalidVolume(f"invalid filter 'dangling=[{' '.join(sorted(values))}]'")
        if in_use == is_true:
            return False
    return True


def validate_list_filters(filters: FilterArgs) -> None:
    for key in filters.fields:
        if key not in LIST_FILTERS:
            raise InvalidVolume(f"invalid filter '{key}'")


def prune_filters(filters: FilterArgs, *, anonymous_only_default: bool) -> FilterArgs:
    """moby volume/service withPrune: `all` takes one boolean; unless it is true, only
    anonymous volumes are pruned (API 1.42+; older clients prune all, the router adds
    `all=true`)."""
    for key in filters.fields:
        if key not in PRUNE_FILTERS:
            raise InvalidVolume(f"invalid filter '{key}'")
    values = sorted(filters.get("all"))
    fields = {k: v for k, v in filters.fields.items() if k != "all"}
    if len(values) > 1:
        raise InvalidVolume(
            f"invalid filter 'all=[{' '.join(values)}]': only one value is expected"
        )
    prune_all = not anonymous_only_default
    if len(values) == 1:
        parsed = _parse_bool(values[0])
        if parsed is None:
            raise InvalidVolume(
                f"invalid filter 'all': strconv.ParseBool: parsing \"{values[0]}\": invalid syntax"
            )
        prune_all = prune_all or parsed
    if not prune_all:
        fields["label"] = frozenset({*fields.get("label", frozenset()), ANONYMOUS_LABEL})
    return FilterArgs(fields)
