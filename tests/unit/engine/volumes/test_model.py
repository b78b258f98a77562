"""volumes/model.py against moby's parser, planner and messages
(daemon/volume/mounts/linux_parser.go, daemon/volumes.go, volume/local/local_unix.go)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from dockyard.engine.model.container import Conflict, InvalidArgument, NotFound
from dockyard.engine.model.filters import FilterArgs
from dockyard.engine.security.defaults import Mount
from dockyard.engine.volumes.model import (
    ANONYMOUS_LABEL,
    InvalidVolume,
    LocalOptions,
    MountPoint,
    VolumeError,
    VolumeInUse,
    VolumeNotFound,
    VolumeRecord,
    check_bind_propagation,
    format_created_at,
    inspect_mounts,
    match_volume,
    new_volume_name,
    oci_mounts,
    parse_bind,
    parse_local_options,
    parse_mount,
    parse_volumes_from,
    plan_mounts,
    prune_filters,
    rootfs_propagation,
    validate_list_filters,
    validate_local_name,
    volume_json,
)

pytestmark = pytest.mark.unit


def _plan(
    *,
    binds: Sequence[str] = (),
    mounts: Sequence[Mapping[str, Any]] = (),
    config_volumes: Sequence[str] = (),
    image_volumes: Sequence[str] = (),
    volumes_from: Sequence[tuple[Sequence[MountPoint], str]] = (),
    tmpfs: Sequence[str] = (),
    seed: int = 1,
) -> Any:
    return plan_mounts(
        binds=binds,
        mounts=mounts,
        config_volumes=config_volumes,
        image_volumes=image_volumes,
        volumes_from=volumes_from,
        tmpfs_destinations=tmpfs,
        rng=random.Random(seed),
    )


# --- -v -------------------------------------------------------------------------------------


def test_bind_defaults() -> None:
    p = parse_bind("/host/dir/:/data")
    assert (p.type, p.source, p.destination) == ("bind", "/host/dir", "/data")
    assert p.read_write and p.mode == "" and p.propagation == "rprivate"
    assert p.create_source and not p.copy_data and p.name == "" and p.driver == ""


@pytest.mark.parametrize(
    ("raw", "rw", "mode", "propagation"),
    [
        ("/h:/c:ro", False, "ro", "rprivate"),
        ("/h:/c:rw", True, "rw", "rprivate"),
        ("/h:/c:z", True, "z", "rprivate"),
        ("/h:/c:Z,ro", False, "Z,ro", "rprivate"),
        ("/h:/c:rshared", True, "rshared", "rshared"),
        ("/h:/c:ro,slave", False, "ro,slave", "slave"),
        ("/h:/c:cached", True, "cached", "rprivate"),
    ],
)
def test_bind_modes(raw: str, rw: bool, mode: str, propagation: str) -> None:
    p = parse_bind(raw)
    assert (p.read_write, p.mode, p.propagation) == (rw, mode, propagation)


def test_named_volume_from_v() -> None:
    p = parse_bind("data:/srv/data")
    assert (p.type, p.name, p.driver, p.source) == ("volume", "data", "local", "")
    # setBindModeIfNull: the local driver shows "z" when no mode was given.
    assert p.mode == "z" and p.propagation == "" and p.copy_data and not p.anonymous


def test_named_volume_modes() -> None:
    p = parse_bind("data:/d:ro,nocopy")
    assert not p.read_write and not p.copy_data and p.mode == "ro,nocopy"


def test_anonymous_from_v() -> None:
    p = parse_bind("/ctr")
    assert p.type == "volume" and p.anonymous and p.name == "" and p.destination == "/ctr"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "invalid volume specification: ''"),
        (":/c", "invalid volume specification: ':/c'"),
        ("/c:rw", "invalid volume specification: '/c:rw'"),
        ("/a:/b:ro:x", "invalid volume specification: '/a:/b:ro:x'"),
        ("/a:/b:bogus", "invalid mode: bogus"),
        ("/a:/b:ro,rw", "invalid mode: ro,rw"),
        ("/a:/b:z,Z", "invalid mode: z,Z"),
        (
            "/a:x",
            "invalid volume specification: '/a:x': invalid mount config for type \"bind\": "
            "invalid mount path: 'x' mount path must be absolute",
        ),
        (
            "/a:/",
            "invalid volume specification: '/a:/': invalid mount config for type \"bind\": "
            "invalid specification: destination can't be '/'",
        ),
        (
            "v:/d:rshared",
            "invalid volume specification: 'v:/d:rshared': invalid mount config for type "
            '"volume": field BindOptions must not be specified',
        ),
        (
            "/h:/d:nocopy",
            "invalid volume specification: '/h:/d:nocopy': invalid mount config for type "
            '"bind": field VolumeOptions must not be specified',
        ),
        (
            "x",
            "invalid volume specification: 'x': invalid mount config for type \"volume\": "
            "invalid mount path: 'x' mount path must be absolute",
        ),
    ],
)
def test_bind_errors(raw: str, message: str) -> None:
    with pytest.raises(InvalidVolume) as e:
        parse_bind(raw)
    assert str(e.value) == message
    assert e.value.status == 400 and isinstance(e.value, InvalidArgument)


# --- --mount --------------------------------------------------------------------------------


def test_mount_bind() -> None:
    p, request = parse_mount(
        {
            "Type": "bind",
            "Source": "/srv//x/",
            "Target": "/x/",
            "ReadOnly": True,
            "BindOptions": {"Propagation": "rslave", "NonRecursive": True},
        }
    )
    assert request is None
    assert (p.source, p.destination, p.read_write, p.propagation) == (
        "/srv/x",
        "/x",
        False,
        "rslave",
    )
    assert p.non_recursive and not p.create_source and p.mode == ""


def test_mount_volume_with_options() -> None:
    p, request = parse_mount(
        {
            "Type": "volume",
            "Source": "cache",
            "Target": "/cache",
            "VolumeOptions": {
                "NoCopy": True,
                "Labels": {"a": "b"},
                "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs"}},
            },
        }
    )
    assert (p.name, p.mode, p.copy_data, p.propagation) == ("cache", "z", False, "")
    assert request is not None
    assert request.labels == {"a": "b"} and request.options == {"type": "tmpfs"}


def test_mount_anonymous_volume() -> None:
    p, request = parse_mount({"Type": "volume", "Target": "/v"})
    assert p.anonymous and request is not None and request.anonymous


def test_mount_tmpfs() -> None:
    p, request = parse_mount(
        {
            "Type": "tmpfs",
            "Target": "/t",
            "ReadOnly": True,
            "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1770, "Options": [["exec"]]},
        }
    )
    assert request is None
    assert p.tmpfs_data() == "ro,mode=1770,size=64m,exec"


@pytest.mark.parametrize(
    ("size", "text"),
    [(1 << 30, "size=1g"), (3 << 10, "size=3k"), (1000, "size=1000"), (1 << 20, "size=1m")],
)
def test_tmpfs_size_units(size: int, text: str) -> None:
    p, _ = parse_mount({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": size}})
    assert p.tmpfs_data() == text


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"Type": "bind", "Source": "/a"}, 'type "bind": field Target must not be empty'),
        ({"Type": "bind", "Target": "/a"}, 'type "bind": field Source must not be empty'),
        (
            {"Type": "bind", "Source": "a", "Target": "/a"},
            "type \"bind\": invalid mount path: 'a' mount path must be absolute",
        ),
        (
            {"Type": "bind", "Source": "/a", "Target": "/a", "BindOptions": {"Propagation": "x"}},
            'type "bind": invalid propagation mode: x',
        ),
        (
            {"Type": "volume", "Target": "/a", "BindOptions": {}},
            'type "volume": field BindOptions must not be specified',
        ),
        (
            {"Type": "bind", "Source": "/a", "Target": "/a", "VolumeOptions": {}},
            'type "bind": field VolumeOptions must not be specified',
        ),
        (
            {"Type": "volume", "Target": "/a", "TmpfsOptions": {}},
            'type "volume": field TmpfsOptions must not be specified',
        ),
        (
            {"Type": "tmpfs", "Source": "x", "Target": "/a"},
            'type "tmpfs": field Source must not be specified',
        ),
        (
            {"Type": "tmpfs", "Target": "/a", "TmpfsOptions": {"Options": [["nosuid"]]}},
            'type "tmpfs": invalid option: nosuid',
        ),
        ({"Type": "npipe", "Target": "/a"}, 'type "npipe": mount type unknown'),
        ({"Target": "/a"}, 'type "": mount type unknown'),
        (
            {"Type": "volume", "Target": "/", "Source": "v"},
            "type \"volume\": invalid specification: destination can't be '/'",
        ),
        (
            {"Type": "volume", "Target": "/a", "VolumeOptions": {"Subpath": "x"}},
            'type "volume": must not set Subpath when using anonymous volumes',
        ),
        (
            {"Type": "volume", "Source": "v", "Target": "/a", "VolumeOptions": {"Subpath": "../x"}},
            'type "volume": subpath must be a relative path within the volume',
        ),
    ],
)
def test_mount_errors(obj: Mapping[str, Any], message: str) -> None:
    with pytest.raises(InvalidVolume) as e:
        parse_mount(obj)
    assert str(e.value) == "invalid mount config for " + message


def test_mount_readonly_non_recursive_needs_readonly() -> None:
    with pytest.raises(InvalidVolume, match=r"!ReadOnly && BindOptions.ReadOnlyNonRecursive"):
        parse_mount(
            {
                "Type": "bind",
                "Source": "/a",
                "Target": "/a",
                "BindOptions": {"ReadOnlyNonRecursive": True},
            }
        )


# --- --volumes-from -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "result"), [("web", ("web", "rw")), ("web:ro", ("web", "ro")), ("w:z", ("w", "z"))]
)
def test_volumes_from(spec: str, result: tuple[str, str]) -> None:
    assert parse_volumes_from(spec) == result


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "volumes-from specification cannot be an empty string"),
        ("web:shared", "invalid mode: shared"),
        ("web:nocopy", "invalid mode: nocopy"),
        ("web:bad", "invalid mode: bad"),
    ],
)
def test_volumes_from_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidVolume) as e:
        parse_volumes_from(spec)
    assert str(e.value) == message


# --- planning -------------------------------------------------------------------------------


def test_plan_binds_volumes_and_requests() -> None:
    plan = _plan(binds=["/h:/a", "named:/b:ro", "/c"])
    kinds = [(p.type, p.destination) for p in plan.points]
    assert kinds == [("bind", "/a"), ("volume", "/b"), ("volume", "/c")]
    named, anonymous = plan.volumes
    assert named.name == "named" and not named.anonymous and named.labels is None
    assert anonymous.anonymous and len(anonymous.name) == 64
    assert anonymous.labels == {ANONYMOUS_LABEL: ""}
    assert plan.points[2].name == anonymous.name
    assert plan.bind_sources == ()  # -v sources are created, not checked


def test_plan_anonymous_names_come_from_rng() -> None:
    a = _plan(config_volumes=["/x"], seed=7)
    b = _plan(config_volumes=["/x"], seed=7)
    assert a.points[0].name == b.points[0].name == new_volume_name(random.Random(7))


def test_plan_duplicate_binds() -> None:
    with pytest.raises(InvalidVolume, match=r"^Duplicate mount point: /data$"):
        _plan(binds=["/a:/data", "v:/data/"])


def test_plan_bind_duplicates_tmpfs() -> None:
    with pytest.raises(InvalidVolume, match=r"^Duplicate mount point: /t$"):
        _plan(binds=["/a:/t"], tmpfs=["/t"])


def test_plan_mount_duplicates_bind_with_raw_target() -> None:
    with pytest.raises(InvalidVolume) as e:
        _plan(binds=["/a:/data"], mounts=[{"Type": "volume", "Target": "/data/"}])
    assert str(e.value) == "Duplicate mount point: /data/"


def test_plan_mount_bind_source_is_checked() -> None:
    plan = _plan(mounts=[{"Type": "bind", "Source": "/nope", "Target": "/x"}])
    assert plan.bind_sources == ("/nope",)
    created = _plan(
        mounts=[
            {
                "Type": "bind",
                "Source": "/n",
                "Target": "/x",
                "BindOptions": {"CreateMountpoint": True},
            }
        ]
    )
    assert created.bind_sources == () and created.points[0].create_source


def test_plan_image_volumes_skip_mounted_paths() -> None:
    plan = _plan(
        binds=["/h:/data"],
        config_volumes=["/cfg"],
        image_volumes=["/data", "/cache/", "/t", "/cfg"],
        tmpfs=["/t"],
    )
    assert [(p.type, p.destination) for p in plan.points] == [
        ("bind", "/data"),
        ("volume", "/cfg"),
        ("volume", "/cache"),
    ]
    image_point = plan.points[2]
    assert image_point.anonymous and image_point.copy_data and image_point.mode == ""
    assert image_point.read_write and image_point.driver == "local"


def test_plan_volumes_from() -> None:
    source = _plan(binds=["/h:/a", "shared:/b", "/anon"]).points
    tmpfs, _ = parse_mount({"Type": "tmpfs", "Target": "/t"})
    plan = _plan(volumes_from=[([*source, tmpfs], "ro")], binds=["/other:/a"])
    by_dest = {p.destination: p for p in plan.points}
    assert set(by_dest) == {"/a", "/b", "/anon"}  # no tmpfs; -v /a replaces the copied /a
    assert by_dest["/a"].source == "/other" and by_dest["/a"].read_write
    assert not by_dest["/b"].read_write and not by_dest["/b"].copy_data
    assert by_dest["/b"].mode == "" and by_dest["/anon"].anonymous
    # the other container's volumes are looked up, not created
    assert [(v.name, v.create) for v in plan.volumes][:1] == [("shared", False)]


def test_plan_unknown_driver() -> None:
    with pytest.raises(VolumeNotFound) as e:
        _plan(
            mounts=[
                {
                    "Type": "volume",
                    "Source": "v",
                    "Target": "/v",
                    "VolumeOptions": {"DriverConfig": {"Name": "nfs"}},
                }
            ]
        )
    assert str(e.value) == 'create v: error looking up volume plugin nfs: plugin "nfs" not found'
    assert isinstance(e.value, NotFound)


def test_plan_rejects_relative_image_volume() -> None:
    with pytest.raises(InvalidVolume, match="mount path must be absolute"):
        _plan(config_volumes=["rel"])


# --- OCI mounts and inspect -----------------------------------------------------------------


def test_oci_mounts_options_and_order() -> None:
    points = [
        parse_bind("/h/deep:/a/b/c:ro"),
        parse_bind("vol:/a"),
        parse_bind("/h/s:/s:rshared"),
        parse_mount({"Type": "tmpfs", "Target": "/a/b", "TmpfsOptions": {"SizeBytes": 1 << 20}})[0],
        parse_mount(
            {"Type": "bind", "Source": "/n", "Target": "/n", "BindOptions": {"NonRecursive": True}}
        )[0],
    ]
    sources = {"/a/b/c": "/h/deep", "/a": "/vols/vol/_data", "/s": "/h/s", "/n": "/n"}
    assert oci_mounts(points, sources) == [
        Mount("/a", "bind", "/vols/vol/_data", ("rbind",)),
        Mount("/s", "bind", "/h/s", ("rbind", "rshared")),
        Mount("/n", "bind", "/n", ("bind", "rprivate")),
        Mount("/a/b", "tmpfs", "tmpfs", ("noexec", "nosuid", "nodev", "rprivate", "size=1m")),
        Mount("/a/b/c", "bind", "/h/deep", ("rbind", "ro", "rprivate")),
    ]
    rro = oci_mounts(points[:1], sources, recursive_readonly=True)
    assert rro[0].options == ("rbind", "rro", "rprivate")


def test_rootfs_propagation() -> None:
    assert rootfs_propagation([parse_bind("/a:/a")]) == ""
    assert rootfs_propagation([parse_bind("/a:/a:rslave")]) == "rslave"
    assert rootfs_propagation([parse_bind("/a:/a:slave"), parse_bind("/b:/b:shared")]) == "shared"


def test_inspect_mounts_shapes() -> None:
    points = [
        parse_bind("/h:/b:ro"),
        parse_bind("vol:/v"),
        parse_mount({"Type": "tmpfs", "Target": "/t"})[0],
    ]
    assert inspect_mounts(points, {"vol": "/root/volumes/vol/_data"}) == [
        {
            "Type": "bind",
            "Source": "/h",
            "Destination": "/b",
            "Mode": "ro",
            "RW": False,
            "Propagation": "rprivate",
        },
        {
            "Type": "tmpfs",
            "Source": "",
            "Destination": "/t",
            "Mode": "",
            "RW": True,
            "Propagation": "",
        },
        {
            "Type": "volume",
            "Name": "vol",
            "Source": "/root/volumes/vol/_data",
            "Destination": "/v",
            "Driver": "local",
            "Mode": "z",
            "RW": True,
            "Propagation": "",
        },
    ]


def test_mount_point_json_round_trip() -> None:
    for point in [
        parse_bind("/h:/b:ro,rslave"),
        parse_bind("vol:/v:nocopy"),
        parse_mount({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Mode": 0o700}})[0],
    ]:
        assert MountPoint.from_json(point.to_json()) == point


# --- the local driver -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "a",
            "create a: volume name is too short, names should be at least two alphanumeric "
            "characters",
        ),
        (
            "a/b",
            'create a/b: "a/b" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
            "use absolute path",
        ),
        ("_x", None),
    ],
)
def test_local_names(name: str, message: str | None) -> None:
    with pytest.raises(InvalidVolume) as e:
        validate_local_name(name)
    if message is not None:
        assert str(e.value) == message


def test_local_names_accepted() -> None:
    for name in ("ab", "my.vol_1-x", "0" * 64):
        validate_local_name(name)


def test_local_options() -> None:
    assert parse_local_options("v", {}) == LocalOptions()
    opts = parse_local_options("v", {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    assert opts == LocalOptions("tmpfs", "size=1m", "tmpfs") and opts.needs_mount
    assert LocalOptions.from_json(opts.to_json()) == opts
    assert opts.to_json() == {
        "MountType": "tmpfs",
        "MountOpts": "size=1m",
        "MountDevice": "tmpfs",
        "Quota": {"Size": 0},
    }


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"x": "1"}, 'create v: invalid option key: "x"'),
        ({"type": "tmpfs"}, 'create v: missing required option: "device"'),
        ({"device": "/d"}, 'create v: missing required option: "type"'),
        ({"o": "bind"}, 'create v: missing required option: "device"'),
        ({"size": "1g"}, "create v: quota size requested but no quota support"),
    ],
)
def test_local_option_errors(opts: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidVolume) as e:
        parse_local_options("v", opts)
    assert str(e.value) == message


def test_created_at_format() -> None:
    assert format_created_at(0) == "1970-01-01T00:00:00Z"
    assert format_created_at(1_796_000_000) == "2026-11-30T00:53:20Z"
    assert format_created_at(951_782_400) == "2000-02-29T00:00:00Z"


def test_volume_json() -> None:
    record = VolumeRecord("v", "local", 0, labels={"a": "b"}, options=None)
    assert volume_json(record, "/r/v/_data") == {
        "CreatedAt": "1970-01-01T00:00:00Z",
        "Driver": "local",
        "Labels": {"a": "b"},
        "Mountpoint": "/r/v/_data",
        "Name": "v",
        "Options": None,
        "Scope": "local",
    }
    assert volume_json(record, "/p", usage=(12, 2))["UsageData"] == {"Size": 12, "RefCount": 2}
    assert VolumeRecord.from_json(record.to_json()) == record


def test_errors_carry_statuses() -> None:
    assert VolumeInUse("x").status == 409 and isinstance(VolumeInUse("x"), Conflict)
    assert VolumeNotFound("x").status == 404


# --- filters --------------------------------------------------------------------------------


def _rec(name: str, labels: dict[str, str] | None = None) -> VolumeRecord:
    return VolumeRecord(name, "local", 0, labels=labels)


def test_list_filters() -> None:
    rec = _rec("webdata", {"env": "prod", "tier": ""})

    def match(in_use: bool = False, **fields: list[str]) -> bool:
        return match_volume(FilterArgs.of(**fields), rec, in_use)

    assert match()
    assert match(name=["web"]) and match(name=["^web.*a$"]) and not match(name=["db"])
    assert match(driver=["local"]) and not match(driver=["nfs"])
    assert match(label=["env"]) and match(label=["env=prod", "tier"])
    assert not match(label=["env=dev"]) and not match(label=["other"])
    assert match(dangling=["true"]) and not match(in_use=True, dangling=["true"])
    assert match(in_use=True, dangling=["0"]) and not match(dangling=["false"])
    with pytest.raises(InvalidVolume, match=r"^invalid filter 'dangling=\[maybe\]'$"):
        match(dangling=["maybe"])
    with pytest.raises(InvalidVolume, match=r"^invalid filter 'nope'$"):
        validate_list_filters(FilterArgs.of(nope=["x"]))


def test_prune_filters() -> None:
    anon = _rec("a" * 64, {ANONYMOUS_LABEL: ""})
    named = _rec("named")
    default = prune_filters(FilterArgs(), anonymous_only_default=True)
    assert match_volume(default, anon, False) and not match_volume(default, named, False)
    everything = prune_filters(FilterArgs.of(all=["true"]), anonymous_only_default=True)
    assert match_volume(everything, named, False)
    old_api = prune_filters(FilterArgs(), anonymous_only_default=False)
    assert match_volume(old_api, named, False)
    not_all = prune_filters(FilterArgs.of(all=["0"]), anonymous_only_default=True)
    assert not match_volume(not_all, named, False)
    keep = prune_filters(
        FilterArgs.of(**{"label!": [ANONYMOUS_LABEL]}), anonymous_only_default=False
    )
    assert not match_volume(keep, anon, False) and match_volume(keep, named, False)
    with pytest.raises(InvalidVolume, match=r"^invalid filter 'dangling'$"):
        prune_filters(FilterArgs.of(dangling=["1"]), anonymous_only_default=True)
    with pytest.raises(InvalidVolume, match=r"^invalid filter 'all=\[0 1\]': only one value"):
        prune_filters(FilterArgs.of(all=["1", "0"]), anonymous_only_default=True)
    with pytest.raises(InvalidVolume) as e:
        prune_filters(FilterArgs.of(all=["yes"]), anonymous_only_default=True)
    assert str(e.value) == (
        "invalid filter 'all': strconv.ParseBool: parsing \"yes\": invalid syntax"
    )


# --- bind propagation -----------------------------------------------------------------------

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:40 / /srv rw,relatime - tmpfs tmpfs rw
31 30 0:41 / /srv/shared rw,relatime shared:7 - tmpfs tmpfs rw
32 30 0:42 / /srv/sl\\040ave rw,relatime master:7 - tmpfs tmpfs rw
33 30 0:43 / /srv/over rw shared:9 - tmpfs tmpfs rw
34 30 0:44 / /srv/over rw - tmpfs tmpfs rw
"""


@pytest.mark.parametrize(
    ("source", "propagation", "message"),
    [
        ("/home/x", "rshared", None),  # on / (shared:1)
        ("/srv/shared/a", "shared", None),
        ("/srv/sl ave", "rslave", None),
        ("/srv/shared", "slave", None),
        ("/srv/data", "private", None),  # no check for private modes
        ("/srv/data", "rshared", "path /srv/data is mounted on /srv but it is not a shared mount"),
        (
            "/srv/sl ave/d",
            "shared",
            "path /srv/sl ave/d is mounted on /srv/sl ave but it is not a shared mount",
        ),
        (
            "/srv/data",
            "rslave",
            "path /srv/data is mounted on /srv but it is not a shared or slave mount",
        ),
        # the later of two mounts on one point (the one on top) decides
        (
            "/srv/over",
            "rshared",
            "path /srv/over is mounted on /srv/over but it is not a shared mount",
        ),
        (
            "/srv/sharedx",
            "rshared",
            "path /srv/sharedx is mounted on /srv but it is not a shared mount",
        ),
    ],
)
def test_bind_propagation_needs_a_shared_source(
    source: str, propagation: str, message: str | None
) -> None:
    if message is None:
        check_bind_propagation(source, source, propagation, MOUNTINFO)
        return
    with pytest.raises(VolumeError) as e:
        check_bind_propagation(source, source, propagation, MOUNTINFO)
    assert str(e.value) == message
