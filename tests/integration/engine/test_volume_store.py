"""The local volume driver with real mounts (volumes/store.py through volumes/service.py).

Runs as root: option volumes are tmpfs and bind mounts made with mount(8). Covers the
tmpfs and `o=bind` options, copy-up of an image's content (owners, modes, xattrs,
symlinks, hard links), the per-container reference count, `docker rm -v`, and recovery
after a daemon that died with volumes mounted. The `env` fixture unmounts everything
below the test's directory at the end and fails the test if anything was still mounted.
"""

from __future__ import annotations

import os
import random
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dockyard.engine.images.snapshotter import is_mountpoint, mounts_under, unmount
from dockyard.engine.volumes.model import (
    ANONYMOUS_LABEL,
    InvalidVolume,
    MountPoint,
    VolumeError,
    VolumeInUse,
    VolumeNotFound,
)
from dockyard.engine.volumes.service import VolumeService

pytestmark = pytest.mark.integration

A = "a" * 64
B = "b" * 64


@dataclass
class Env:
    root: Path
    events: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def service(self, seed: int = 0) -> VolumeService:
        return VolumeService(
            self.root / "engine",
            emit=lambda action, name, attrs: self.events.append((action, name, attrs)),
            rng=random.Random(seed),
        )

    def actions(self, name: str) -> list[str]:
        return [action for action, n, _ in self.events if n == name]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    if os.geteuid() != 0:
        pytest.fail("the volume store tests need root (mount(8))")
    env = Env(tmp_path)
    try:
        yield env
    finally:
        leaked = mounts_under(tmp_path)
        for point in leaked:
            unmount(point)
    assert not leaked, f"test left mounts behind: {leaked}"


def _fstype(path: Path) -> str:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as info:
        for line in info:
            fields = line.split()
            if fields[4] == real:
                return fields[fields.index("-") + 1]
    return ""


def _plan(service: VolumeService, **kwargs: object) -> list[MountPoint]:
    args: dict[str, object] = {
        "binds": (),
        "mounts": (),
        "config_volumes": (),
        "image_volumes": (),
        "volumes_from": (),
        "tmpfs_destinations": (),
    }
    args.update(kwargs)
    return service.plan(**args)  # type: ignore[arg-type]


def test_tmpfs_option_volume_is_refcounted(env: Env) -> None:
    service = env.service()
    service.create(
        "scratch", "local", {"type": "tmpfs", "device": "tmpfs", "o": "size=1m,uid=1000"}, {}
    )
    data = service.store.data_path("scratch")
    assert (data.parent / "opts.json").is_file()
    points = _plan(service, binds=["scratch:/scratch"])
    assert not is_mountpoint(data)  # only a start mounts it
    rootfs = env.root / "rootfs"
    rootfs.mkdir()

    mounts = service.attach(A, points, rootfs)
    assert [(m.destination, m.source, m.options) for m in mounts] == [
        ("/scratch", str(data), ("rbind",))
    ]
    assert is_mountpoint(data) and _fstype(data) == "tmpfs"
    assert os.stat(data).st_uid == 1000
    (data / "file").write_text("kept while mounted")

    service.attach(B, points, rootfs)
    with pytest.raises(VolumeInUse) as e:
        service.remove("scratch", force=True, users=[])
    assert str(e.value) == f"remove scratch: volume is in use - [{A}, {B}]"
    service.detach(A)
    assert is_mountpoint(data) and (data / "file").read_text() == "kept while mounted"
    service.detach(B)
    assert not is_mountpoint(data) and not (data / "file").exists()
    assert env.actions("scratch") == ["create", "mount", "mount", "unmount", "unmount"]
    mount_attrs = next(a for action, _, a in env.events if action == "mount")
    assert mount_attrs == {
        "driver": "local",
        "container": A,
        "destination": "/scratch",
        "read/write": "true",
        "propagation": "",
    }
    service.remove("scratch", force=False, users=[])
    assert not data.parent.exists()
    assert env.actions("scratch")[-1] == "destroy"


def test_bind_option_volume_never_deletes_the_device(env: Env) -> None:
    device = env.root / "srv-data"
    device.mkdir()
    (device / "existing").write_text("host data")
    service = env.service()
    service.create("hostdata", "", {"type": "none", "o": "bind", "device": str(device)}, None)
    points = _plan(service, mounts=[{"Type": "volume", "Source": "hostdata", "Target": "/d"}])
    rootfs = env.root / "rootfs"
    (rootfs / "d").mkdir(parents=True)
    (rootfs / "d" / "from-image").write_text("image")
    service.attach(A, points, rootfs)
    data = service.store.data_path("hostdata")
    assert is_mountpoint(data)
    # Not empty (the host's file): nothing is copied from the image.
    assert sorted(os.listdir(data)) == ["existing"]
    (data / "written").write_text("through the volume")
    service.detach(A)
    assert not is_mountpoint(data)
    service.remove("hostdata", force=False, users=[])
    assert sorted(os.listdir(device)) == ["existing", "written"]


def test_mount_failure_releases_the_reference(env: Env) -> None:
    service = env.service()
    missing = env.root / "missing"
    service.create("broken", "local", {"type": "none", "o": "bind", "device": str(missing)}, None)
    points = _plan(service, binds=["broken:/b", "/c"])
    with pytest.raises(Exception, match="failed to mount local volume"):
        service.attach(A, points, env.root)
    assert service.held(A) == () and service.store.refs("broken") == frozenset()


def test_copy_up_preserves_the_image_content(env: Env) -> None:
    rootfs = env.root / "rootfs"
    src = rootfs / "var" / "lib" / "app"
    (src / "sub").mkdir(parents=True)
    os.chown(src, 1234, 5678)
    os.chmod(src, 0o750)
    (src / "conf").write_text("config")
    os.chown(src / "conf", 1001, 1002)
    os.chmod(src / "conf", 0o640)
    os.setxattr(src / "conf", "user.origin", b"image")
    (src / "tool").write_text("#!/bin/sh\n")
    os.chmod(src / "tool", 0o4755)
    os.link(src / "conf", src / "sub" / "conf-link")
    (src / "sub" / "rel").symlink_to("../conf")
    os.lchown(src / "sub" / "rel", 42, 43)
    (src / "abs").symlink_to("/etc/passwd")
    os.mkfifo(src / "pipe", 0o620)
    os.chmod(src / "sub", 0o1777)
    os.utime(src / "conf", ns=(1_000_000_000, 2_000_000_000))
    # The image reaches it through a symlink that is absolute inside the container.
    (rootfs / "data").symlink_to("/var/lib/app")

    service = env.service()
    points = _plan(service, image_volumes=["/data"], binds=["nocopy:/nc:nocopy"])
    (rootfs / "nc").mkdir()
    (rootfs / "nc" / "x").write_text("not copied")
    anonymous = next(p for p in points if p.destination == "/data")
    assert anonymous.anonymous
    assert service.store.get(anonymous.name).labels == {ANONYMOUS_LABEL: ""}
    service.attach(A, points, rootfs)
    service.detach(A)

    vol = service.store.data_path(anonymous.name)
    st = os.stat(vol)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o750)
    conf = os.stat(vol / "conf")
    assert (conf.st_uid, conf.st_gid, stat.S_IMODE(conf.st_mode)) == (1001, 1002, 0o640)
    assert conf.st_mtime_ns == 2_000_000_000 and conf.st_nlink == 2
    assert os.getxattr(vol / "conf", "user.origin") == b"image"
    assert os.stat(vol / "sub" / "conf-link").st_ino == conf.st_ino
    assert stat.S_IMODE(os.stat(vol / "tool").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(vol / "sub").st_mode) == 0o1777
    assert os.readlink(vol / "sub" / "rel") == "../conf"
    assert os.lstat(vol / "sub" / "rel").st_uid == 42
    assert os.readlink(vol / "abs") == "/etc/passwd"
    assert stat.S_ISFIFO(os.lstat(vol / "pipe").st_mode)
    assert os.listdir(service.store.data_path("nocopy")) == []

    # A volume with content is not copied into again.
    (src / "new").write_text("later")
    service.attach(B, points, rootfs)
    service.detach(B)
    assert not (vol / "new").exists()


def test_binds_create_missing_v_sources_only(env: Env) -> None:
    service = env.service()
    with pytest.raises(InvalidVolume) as e:
        _plan(service, mounts=[{"Type": "bind", "Source": "/nope-dockyard", "Target": "/x"}])
    assert str(e.value) == (
        'invalid mount config for type "bind": bind source path does not exist: /nope-dockyard'
    )
    source = env.root / "made" / "by" / "start"
    points = _plan(service, binds=[f"{source}:/m:ro"])
    mounts = service.attach(A, points, env.root)
    assert source.is_dir() and stat.S_IMODE(os.stat(source).st_mode) == 0o755
    assert mounts[0].options == ("rbind", "ro", "rprivate")
    service.detach(A)


def test_failed_plan_removes_what_it_created(env: Env) -> None:
    service = env.service()
    with pytest.raises(InvalidVolume, match="volume name is too short"):
        _plan(service, binds=["fine:/a", "x:/b"])
    assert service.store.names() == []
    assert env.actions("fine") == ["create", "destroy"]


def test_rm_v_removes_only_unused_anonymous_volumes(env: Env) -> None:
    service = env.service()
    points = _plan(service, binds=["named:/n"], config_volumes=["/anon", "/shared"])
    anon = next(p.name for p in points if p.destination == "/anon")
    shared = next(p.name for p in points if p.destination == "/shared")
    service.attach(A, points, env.root)
    service.remove_container(
        A, points, remove_anonymous=True, users={anon: [A], shared: [A, B], "named": [A]}
    )
    assert service.held(A) == ()
    assert sorted(service.store.names()) == sorted(["named", shared])
    with pytest.raises(VolumeNotFound, match=f"^get {anon}: no such volume$"):
        service.inspect(anon)


def test_recover_after_a_crash(env: Env) -> None:
    service = env.service()
    service.create("t1", "local", {"type": "tmpfs", "device": "tmpfs"}, None)
    service.create("t2", "local", {"type": "tmpfs", "device": "tmpfs"}, None)
    points_a = _plan(service, binds=["t1:/t1"])
    points_b = _plan(service, binds=["t2:/t2"])
    service.attach(A, points_a, env.root)
    service.attach(B, points_b, env.root)
    t1, t2 = service.store.data_path("t1"), service.store.data_path("t2")
    (t1 / "state").write_text("A's")
    # The daemon dies: nothing is detached. Meanwhile A exited and B kept running; a
    # create and a remove were cut short too.
    (service.store.root / ".creating-half-1234").mkdir()
    (service.store.root / ".removing-gone-5678" / "_data").mkdir(parents=True)
    unmount(t2)  # and something unmounted B's volume behind our back

    restarted = env.service()
    restarted.recover({B: points_b})
    assert not is_mountpoint(t1)
    assert is_mountpoint(t2) and restarted.held(B) == ("t2",)
    assert sorted(os.listdir(restarted.store.root)) == ["t1", "t2"]
    restarted.detach(B)
    assert not is_mountpoint(t2)
    restarted.remove("t1", force=False, users=[])
    restarted.remove("t2", force=False, users=[])


def test_api_operations(env: Env) -> None:
    service = env.service(seed=3)
    record = service.create(None, "", None, None)
    assert len(record.name) == 64 and record.labels == {ANONYMOUS_LABEL: ""}
    again = service.create("named", "local", {}, {"team": "a"})
    assert service.create("named", "local", {"type": "tmpfs"}, None) == again
    view = service.inspect("named")
    assert view["Labels"] == {"team": "a"} and view["Options"] == {}
    assert view["Mountpoint"] == str(env.root / "engine" / "volumes" / "named" / "_data")
    assert [v["Name"] for v in service.list({"label": ["team=a"]}, {})] == ["named"]
    assert [v["Name"] for v in service.list({"dangling": ["false"]}, {"named": [A]})] == ["named"]
    with pytest.raises(VolumeNotFound, match=r"^get nope: no such volume$"):
        service.remove("nope", force=False, users=[])
    service.remove("nope", force=True, users=[])
    with pytest.raises(VolumeInUse, match=rf"^remove named: volume is in use - \[{A}\]$"):
        service.remove("named", force=True, users=[A])
    (service.store.data_path(record.name) / "blob").write_bytes(b"x" * 1000)
    deleted, reclaimed = service.prune({}, {})
    assert deleted == [record.name] and reclaimed == 1000
    deleted, _ = service.prune({"all": ["true"]}, {"named": [A]})
    assert deleted == []
    deleted, _ = service.prune({"all": ["1"]}, {})
    assert deleted == ["named"] and service.store.names() == []
    assert ("prune", "", {"reclaimed": "1000"}) in env.events


def test_shared_bind_needs_a_shared_source_mount(env: Env) -> None:
    source = env.root / "propagation"
    source.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(source)], check=True)
    subprocess.run(["mount", "--make-private", str(source)], check=True)
    service = env.service()
    shared = _plan(service, binds=[f"{source}/dir:/s:rshared"])
    slave = _plan(service, binds=[f"{source}:/s:rslave"])
    with pytest.raises(VolumeError) as e:
        service.attach(A, shared, env.root)
    assert str(e.value) == (
        f"path {source}/dir is mounted on {source} but it is not a shared mount"
    )
    with pytest.raises(VolumeError, match="not a shared or slave mount"):
        service.attach(A, slave, env.root)
    subprocess.run(["mount", "--make-shared", str(source)], check=True)
    mounts = service.attach(A, shared, env.root)
    assert mounts[0].options == ("rbind", "rshared")
    service.detach(A)
    unmount(source)


def test_volumes_from_needs_the_volume_to_exist(env: Env) -> None:
    service = env.service()
    source = _plan(service, binds=["data:/d"])
    copied = _plan(service, volumes_from=[(source, "rw")])
    assert [(p.name, p.destination) for p in copied] == [("data", "/d")]
    service.remove("data", force=False, users=[])
    with pytest.raises(VolumeNotFound, match=r"^get data: no such volume$"):
        _plan(service, volumes_from=[(source, "rw")])
    assert service.store.names() == []
