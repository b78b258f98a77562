"""`dockyard image bootstrap debian` against a running `dockyard daemon` and the docker CLI.

One mmdebstrap run of plain `debian:bookworm` per session (`debian_cache`, usable by other
modules), through the real CLI into a scratch data root; its rootfs cache is hard-linked
into this module's daemon data root, so the daemon's bootstrap is a re-import with no
mmdebstrap. Cache hits are proven by behaviour: the command says so, the image ID is the
same, and it succeeds in a network namespace with no network at all (a build or a mirror
request would fail there). The `--include` test and the failure test run mmdebstrap once
more each (another recipe; a build that apt aborts). The daemon keeps running throughout:
the store is shared across processes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.engine import test_daemon_cli
from tests.e2e.engine.test_daemon_cli import DaemonProcess

pytestmark = pytest.mark.e2e

daemon = test_daemon_cli.daemon  # this module's own daemon (module scope)

BUILD_TIMEOUT_S = 600.0
IMPORT_TIMEOUT_S = 120.0
CACHE_SUBDIR = Path("cache") / "bootstrap" / "debian"
KEY_LABEL = "org.dockyard.bootstrap.key"


def bootstrap(
    data_root: Path, *args: str, offline: bool = False, timeout_s: float = BUILD_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """The CLI; `offline` runs it in a new network namespace that has only a down lo."""
    argv = [sys.executable, "-m", "dockyard", "image", "bootstrap", *args]
    argv += ["--data-root", str(data_root)]
    if offline:
        argv = ["unshare", "--net", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)


def succeeded(result: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    """(image ID, status line) of a successful bootstrap."""
    assert result.returncode == 0, f"stdout: {result.stdout}\nstderr: {result.stderr}"
    image_id = result.stdout.strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image_id), result.stdout
    return image_id, result.stderr.strip().splitlines()[-1]


def seed_cache(cache: Path, data_root: Path) -> None:
    """Share the session's rootfs tarballs with another data root (hard links, no copy)."""
    for entry in cache.iterdir():
        dest = data_root / CACHE_SUBDIR / entry.name
        if entry.is_dir() and entry.name != "tmp" and not dest.exists():
            shutil.copytree(entry, dest, copy_function=os.link)


@pytest.fixture(scope="session")
def debian_cache() -> Iterator[Path]:
    """`<data-root>/cache/bootstrap/debian` holding plain debian:bookworm, built once."""
    base = Path(tempfile.mkdtemp(prefix="dy-debian-"))
    try:
        _, status = succeeded(bootstrap(base / "root", "debian", "bookworm"))
        assert status.startswith("debian:bookworm, debian:12: built"), status
        yield base / "root" / CACHE_SUBDIR
    finally:
        shutil.rmtree(base)


def ensure_debian(daemon: DaemonProcess, cache: Path) -> str:
    """debian:bookworm in the daemon from the session's cache, offline; its image ID."""
    seed_cache(cache, daemon.data_root)
    image_id, _ = succeeded(
        bootstrap(daemon.data_root, "debian:bookworm", offline=True, timeout_s=IMPORT_TIMEOUT_S)
    )
    return image_id


def in_container(daemon: DaemonProcess, image: str, script: str) -> str:
    return daemon.docker("run", "--rm", "--network", "none", image, "sh", "-c", script).stdout


def test_bootstrap_into_the_daemons_root_then_run(
    daemon: DaemonProcess, debian_cache: Path
) -> None:
    seed_cache(debian_cache, daemon.data_root)
    # No network: only the cached rootfs can make this image.
    image_id, status = succeeded(
        bootstrap(daemon.data_root, "debian:bookworm", offline=True, timeout_s=IMPORT_TIMEOUT_S)
    )
    assert status.startswith("debian:bookworm, debian:12: imported from the cached rootfs")

    listed = daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
    assert f"debian:bookworm {image_id[7:19]}" in listed.splitlines()
    assert f"debian:12 {image_id[7:19]}" in listed.splitlines()
    inspect = json.loads(daemon.docker("image", "inspect", "debian:bookworm").stdout)[0]
    assert inspect["Id"] == image_id
    assert inspect["Config"]["Cmd"] == ["bash"]
    assert inspect["Config"]["Env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    ]
    assert inspect["Os"] == "linux"
    assert inspect["Architecture"] == {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]
    assert re.fullmatch(r"[0-9a-f]{64}", inspect["Config"]["Labels"][KEY_LABEL])
    assert len(inspect["RootFS"]["Layers"]) == 1

    release = daemon.docker(
        "run", "--rm", "--network", "none", "debian:bookworm", "cat", "/etc/debian_version"
    )
    assert re.fullmatch(r"12\.\d+\n", release.stdout), release.stdout
    apt = daemon.docker("run", "--rm", "--network", "none", "debian:12", "apt-get", "--version")
    assert re.match(r"apt 2\.6\.\d+ \((amd64|arm64)\)", apt.stdout), apt.stdout


def test_the_image_is_configured_like_docker_hubs(
    daemon: DaemonProcess, debian_cache: Path
) -> None:
    ensure_debian(daemon, debian_cache)
    lists = in_container(daemon, "debian:bookworm", "find /var/lib/apt/lists -type f")
    assert lists.split() == ["/var/lib/apt/lists/lock"]
    sources = in_container(
        daemon, "debian:bookworm", "ls /etc/apt/sources.list; cat /etc/apt/sources.list.d/*"
    )
    assert "Suites: bookworm bookworm-updates\n" in sources
    assert "Suites: bookworm-security\n" in sources
    assert "/etc/apt/sources.list\n" not in sources
    config = in_container(
        daemon,
        "debian:bookworm",
        "cat /etc/apt/apt.conf.d/docker-clean /etc/dpkg/dpkg.cfg.d/docker-apt-speedup;"
        " /usr/sbin/policy-rc.d; echo policy=$?; ls /var/cache/apt; ls -A /dev | wc -l",
    )
    assert 'Dir::Cache::pkgcache "";' in config
    assert "force-unsafe-io" in config
    assert "policy=101" in config
    assert ".bin" not in config
    # No perl (merged /usr without the usrmerge package), as in Docker Hub's image.
    perl = in_container(daemon, "debian:bookworm", "dpkg -s perl 2>&1; echo status=$?")
    assert "package 'perl' is not installed" in perl and "status=1" in perl


def test_a_second_bootstrap_is_a_cache_hit(daemon: DaemonProcess, debian_cache: Path) -> None:
    first = ensure_debian(daemon, debian_cache)
    again, status = succeeded(bootstrap(daemon.data_root, "debian", "bookworm", offline=True))
    assert again == first
    assert status.startswith("debian:bookworm, debian:12: cached"), status

    # A tag moved away comes back to the same image.
    daemon.docker("tag", "busybox:latest", "debian:bookworm")
    moved, status = succeeded(bootstrap(daemon.data_root, "debian", "bookworm", offline=True))
    assert moved == first
    assert status.startswith("debian:bookworm, debian:12: cached"), status
    inspect = json.loads(daemon.docker("image", "inspect", "debian:bookworm").stdout)[0]
    assert inspect["Id"] == first

    # After `docker rmi` the cached rootfs gives the same image again, still offline.
    removed = daemon.docker("rmi", "debian:bookworm", "debian:12")
    assert f"Deleted: {first}" in removed.stdout
    back, status = succeeded(
        bootstrap(daemon.data_root, "debian", "bookworm", offline=True, timeout_s=IMPORT_TIMEOUT_S)
    )
    assert back == first
    assert "imported from the cached rootfs" in status


def test_an_image_built_from_it_is_never_taken_for_it(
    daemon: DaemonProcess, debian_cache: Path, tmp_path: Path
) -> None:
    """Images built FROM the bootstrap image inherit its key label; a cache hit must still
    tag the bootstrap image itself (it once tagged such a child `debian:bookworm`, and the
    next build's base became an app image)."""
    first = ensure_debian(daemon, debian_cache)
    context = tmp_path / "child"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM debian:bookworm\nRUN true\nEXPOSE 6379\n")
    daemon.docker("build", "-t", "dy-child:1", str(context))
    try:
        child = json.loads(daemon.docker("image", "inspect", "dy-child:1").stdout)[0]
        assert child["Config"]["Labels"][KEY_LABEL]  # inherited, as Docker's LABELs are
        # Both tags moved away: the store holds the base (untagged) and its child.
        daemon.docker("tag", "busybox:latest", "debian:bookworm")
        daemon.docker("tag", "busybox:latest", "debian:12")
        again, status = succeeded(bootstrap(daemon.data_root, "debian", "bookworm", offline=True))
        assert again == first != child["Id"]
        assert status.startswith("debian:bookworm, debian:12: cached"), status
        base = json.loads(daemon.docker("image", "inspect", "debian:bookworm").stdout)[0]
        assert base["Id"] == first and len(base["RootFS"]["Layers"]) == 1
        assert "6379/tcp" not in (base["Config"].get("ExposedPorts") or {})
    finally:
        daemon.docker("rmi", "dy-child:1")


def test_include_installs_packages(daemon: DaemonProcess, debian_cache: Path) -> None:
    plain_id = ensure_debian(daemon, debian_cache)
    image_id, status = succeeded(
        bootstrap(
            daemon.data_root, "debian", "bookworm", "--include", "hello", "--tag", "deb-hello:1"
        )
    )
    assert status.startswith("deb-hello:1: built"), status
    hello = daemon.docker("run", "--rm", "--network", "none", "deb-hello:1", "hello")
    assert hello.stdout == "Hello, world!\n"
    # Only the named tag: debian:bookworm still names the plain image.
    plain = json.loads(daemon.docker("image", "inspect", "debian:bookworm").stdout)[0]
    inspect = json.loads(daemon.docker("image", "inspect", "deb-hello:1").stdout)[0]
    assert (inspect["Id"], plain["Id"]) == (image_id, plain_id)
    assert inspect["Config"]["Labels"][KEY_LABEL] != plain["Config"]["Labels"][KEY_LABEL]
    assert inspect["RepoTags"] == ["deb-hello:1"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _leftovers(data_root: Path) -> list[str]:
    staging = [data_root / CACHE_SUBDIR / "tmp", data_root / "images" / "tmp"]
    return sorted(str(p) for d in staging if d.exists() for p in d.iterdir())


def test_failures_are_clear_and_leave_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    down = bootstrap(
        root, "debian", "bookworm", "--mirror", f"http://127.0.0.1:{_closed_port()}/debian"
    )
    assert down.returncode == 1
    assert "Error: cannot reach the Debian mirror: GET http://127.0.0.1:" in down.stderr
    assert "Traceback" not in down.stderr

    unknown = bootstrap(root, "debian", "nosuchsuite")
    assert unknown.returncode == 1
    assert "Error: the mirror has no suite 'nosuchsuite'" in unknown.stderr

    bad = bootstrap(root, "debian", "bookworm", "--include", "curl;reboot")
    assert (bad.returncode, bad.stderr) == (
        1,
        "Error: invalid package names in --include: curl;reboot\n",
    )

    tag = bootstrap(root, "debian", "bookworm", "--tag", "Debian:12")
    assert tag.returncode == 1
    assert "Error: invalid tag 'Debian:12': invalid reference format" in tag.stderr

    # mmdebstrap itself fails (apt knows no such package) after it has set up its chroot.
    failed = bootstrap(root, "debian", "bookworm", "--include", "no-such-package-dockyard")
    assert failed.returncode == 1
    assert "Error: mmdebstrap failed (exit status" in failed.stderr
    assert "Unable to locate package no-such-package-dockyard" in failed.stderr
    assert _leftovers(root) == []
    assert not [e for e in (root / CACHE_SUBDIR).iterdir() if e.is_dir() and e.name != "tmp"]
    assert list((root / "images" / "images" / "sha256").iterdir()) == []
    assert list((root / "images" / "layers" / "sha256").iterdir()) == []
    with open("/proc/self/mountinfo") as info:
        assert str(tmp_path) not in info.read()
