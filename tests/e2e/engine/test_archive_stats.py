"""`docker cp`, `export`, `port` and `stats` with the real docker CLI against `dockyard daemon`.

Reuses the module-scoped daemon fixture of `test_daemon_cli` (a private daemon for this
module, whose teardown fails on leaked shims, runc containers or mounts). Every command
runs on a running and on a stopped container; the copies that would escape the container
through symlinks (`/`, `../../..`, tar members climbing out) are checked against the
host's files; after each operation no temporary mount is left under the daemon's dirs.
Streams (`docker stats`, the stats API) are read until what is expected arrives or a
deadline passes, never for a fixed time.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import secrets
import select
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.engine import test_daemon_cli
from tests.e2e.engine.test_daemon_cli import (
    COMMAND_TIMEOUT_S,
    DOCKER,
    DaemonProcess,
    UnixHTTPConnection,
)

pytestmark = pytest.mark.e2e

daemon = test_daemon_cli.daemon  # this module's own daemon (module scope)

STAT_HEADER = "X-Docker-Container-Path-Stat"
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_STICKY = 1 << 20


# -- helpers ---------------------------------------------------------------------------------


def docker_bytes(
    daemon: DaemonProcess, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """The CLI with binary stdin/stdout (tar streams)."""
    return subprocess.run(
        [DOCKER, *args],
        env=daemon.env,
        input=stdin,
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def request(
    daemon: DaemonProcess, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = UnixHTTPConnection(daemon.sock)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def path_stat(headers: dict[str, str]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.b64decode(headers[STAT_HEADER]))
    return decoded


def tar_bytes(*members: tuple[str, str, bytes | str]) -> bytes:
    """(name, kind, data or link target): kind f (file), d (dir), l (symlink), h (hard link)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if kind == "f":
                assert isinstance(data, bytes)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
                continue
            if kind == "d":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            else:
                assert isinstance(data, str)
                info.type = tarfile.SYMTYPE if kind == "l" else tarfile.LNKTYPE
                info.linkname = data
            tar.addfile(info)
    return out.getvalue()


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name + ("/" if m.isdir() else ""): m for m in tar.getmembers()}


def file_in(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        extracted = tar.extractfile(name)
        assert extracted is not None, name
        return extracted.read()


def temporary_mounts(daemon: DaemonProcess) -> list[str]:
    """Mounts the archive code made (a running container's own rootfs is not one)."""
    return [m for m in daemon.mounts() if "/mounts/" in m]


def container_mounts(daemon: DaemonProcess, cid: str) -> list[str]:
    return [m for m in daemon.mounts() if cid in m]


@contextlib.contextmanager
def containers(daemon: DaemonProcess, *names: str) -> Iterator[None]:
    try:
        yield
    finally:
        daemon.docker("rm", "-f", *names, check=False)


def run_detached(daemon: DaemonProcess, name: str, *args: str) -> str:
    return daemon.docker("run", "-d", "--name", name, "--network", "none", *args).stdout.strip()


# The tree the copy tests use: files, a nested directory, an inner symlink, and the links a
# breakout would plant (to `/`, to `../../..`, to the host's /etc, dangling).
SEED = (
    "mkdir -p /data/sub /d && echo one > /data/a.txt && echo two > /data/sub/b.txt"
    " && ln -s a.txt /data/link && chmod 4755 /data/a.txt"
    " && ln -s / /d/root && ln -s ../../.. /d/up && ln -s /etc /d/etc"
    " && ln -s /nonexist /d/dangling"
)


def seeded(daemon: DaemonProcess, name: str, *, running: bool) -> str:
    """A container with the SEED tree, running or exited; started again, it sleeps."""
    script = f"if [ -e /seeded ]; then exec sleep 1000; fi; {SEED} && touch /seeded && " + (
        "exec sleep 1000" if running else "exit 0"
    )
    cid = daemon.docker(
        "create", "--name", name, "--network", "none", "busybox", "sh", "-c", script
    ).stdout.strip()
    if not running:
        daemon.docker("start", "-a", name)
        return cid
    daemon.docker("start", name)
    deadline = time.monotonic() + COMMAND_TIMEOUT_S
    while daemon.docker("exec", name, "test", "-e", "/seeded", check=False).returncode:
        assert time.monotonic() < deadline, "the SEED tree never appeared"
        time.sleep(0.05)  # polling exec is the only signal that the tree is there
    return cid


# -- docker cp -----------------------------------------------------------------------------


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_cp_in_and_out_with_the_cli(daemon: DaemonProcess, tmp_path: Path, running: bool) -> None:
    name = f"cp-{'run' if running else 'stop'}"
    with containers(daemon, name):
        cid = seeded(daemon, name, running=running)

        # docker cp host/file c:/tmp/
        host_file = tmp_path / "in.txt"
        host_file.write_text("from the host\n")
        daemon.docker("cp", str(host_file), f"{name}:/tmp/")

        # docker cp c:/file - (a tar with one member named after the file)
        out = docker_bytes(daemon, "cp", f"{name}:/tmp/in.txt", "-")
        assert out.returncode == 0, out.stderr
        assert list(members(out.stdout)) == ["in.txt"]
        assert file_in(out.stdout, "in.txt") == b"from the host\n"
        passwd = docker_bytes(daemon, "cp", f"{name}:/etc/passwd", "-")
        assert list(members(passwd.stdout)) == ["passwd"]
        assert file_in(passwd.stdout, "passwd").startswith(b"root:")

        # docker cp c:/dir ./out: the tree, its symlink kept as a symlink, the setuid bit
        daemon.docker("cp", f"{name}:/data", str(tmp_path / "out"))
        copied = tmp_path / "out"
        assert (copied / "a.txt").read_text() == "one\n"
        assert (copied / "sub" / "b.txt").read_text() == "two\n"
        assert os.readlink(copied / "link") == "a.txt"
        assert (copied / "a.txt").stat().st_mode & 0o7777 == 0o4755
        # ... and c:/dir/. copies the contents only
        daemon.docker("cp", f"{name}:/data/.", str(tmp_path / "contents"))
        assert sorted(os.listdir(tmp_path / "contents")) == ["a.txt", "link", "sub"]

        # a stdin tar: docker cp - c:/tmp
        archive = tar_bytes(("x/y.txt", "f", b"from stdin\n"), ("z", "l", "x/y.txt"))
        put = docker_bytes(daemon, "cp", "-", f"{name}:/tmp", stdin=archive)
        assert put.returncode == 0, put.stderr
        back = docker_bytes(daemon, "cp", f"{name}:/tmp/x/y.txt", "-")
        assert file_in(back.stdout, "y.txt") == b"from stdin\n"

        assert temporary_mounts(daemon) == []
        if not running:
            assert container_mounts(daemon, cid) == [], "a stopped container stays unmounted"
            daemon.docker("start", name)  # what was copied in is there when it runs
        result = daemon.docker("exec", name, "cat", "/tmp/in.txt", "/tmp/x/y.txt")
        assert result.stdout == "from the host\nfrom stdin\n"


def test_cp_archive_mode_and_a_paused_container(daemon: DaemonProcess, tmp_path: Path) -> None:
    with containers(daemon, "cp-user"):
        run_detached(daemon, "cp-user", "-u", "nobody", "busybox", "sleep", "1000")
        host_file = tmp_path / "owned.txt"
        host_file.write_text("x\n")
        # -a (copyUIDGID): the container user's ids; without it, the tar's (the host file's).
        daemon.docker("cp", "-a", str(host_file), "cp-user:/tmp/a.txt")
        daemon.docker("cp", str(host_file), "cp-user:/tmp/plain.txt")
        owners = daemon.docker("exec", "cp-user", "stat", "-c", "%n %u:%g", "/tmp/a.txt",
                               "/tmp/plain.txt")  # fmt: skip
        uid, gid = host_file.stat().st_uid, host_file.stat().st_gid
        assert owners.stdout.splitlines() == [
            "/tmp/a.txt 65534:65534",
            f"/tmp/plain.txt {uid}:{gid}",
        ]
        daemon.docker("pause", "cp-user")
        try:
            out = docker_bytes(daemon, "cp", "cp-user:/tmp/a.txt", "-")
            assert out.returncode == 0 and file_in(out.stdout, "a.txt") == b"x\n"
        finally:
            daemon.docker("unpause", "cp-user")
        assert temporary_mounts(daemon) == []


def test_cp_errors_in_dockers_words(daemon: DaemonProcess, tmp_path: Path) -> None:
    with containers(daemon, "cp-err", "cp-ro"):
        run_detached(daemon, "cp-err", "busybox", "sleep", "1000")
        missing = daemon.docker("cp", "cp-err:/nonexist", str(tmp_path / "o"), check=False)
        assert missing.returncode == 1
        assert "Could not find the file /nonexist in container cp-err" in missing.stderr
        nosuch = daemon.docker("cp", "nosuch:/etc/passwd", "-", check=False)
        assert (nosuch.returncode, nosuch.stderr.strip()) == (
            1,
            "Error response from daemon: No such container: nosuch",
        )
        host_file = tmp_path / "f"
        host_file.write_text("x")
        no_dir = daemon.docker("cp", str(host_file), "cp-err:/nonexist/", check=False)
        assert no_dir.returncode == 1

        run_detached(daemon, "cp-ro", "--read-only", "busybox", "sleep", "1000")
        refused = daemon.docker("cp", str(host_file), "cp-ro:/tmp/", check=False)
        assert (refused.returncode, refused.stderr.strip()) == (
            1,
            "Error response from daemon: container rootfs is marked read-only",
        )
        readable = docker_bytes(daemon, "cp", "cp-ro:/etc/group", "-")
        assert list(members(readable.stdout)) == ["group"]
        daemon.docker("stop", "-t", "0", "cp-ro")
        refused = daemon.docker("cp", str(host_file), "cp-ro:/tmp/", check=False)
        assert "container rootfs is marked read-only" in refused.stderr
        assert temporary_mounts(daemon) == []


def test_archive_api_stat_and_errors(daemon: DaemonProcess) -> None:
    with containers(daemon, "arc"):
        seeded(daemon, "arc", running=True)
        base = "/v1.41/containers/arc/archive"

        status, headers, body = request(daemon, "HEAD", f"{base}?path=/tmp/")
        assert (status, body) == (200, b"")
        tmp = path_stat(headers)
        assert (tmp["name"], tmp["mode"]) == ("tmp", GO_MODE_DIR | GO_MODE_STICKY | 0o777)
        assert tmp["linkTarget"] == ""

        status, headers, _ = request(daemon, "HEAD", f"{base}?path=/d/up")
        up = path_stat(headers)
        assert (status, up["name"], up["linkTarget"]) == (200, "up", "/")
        assert up["mode"] == GO_MODE_SYMLINK | 0o777
        _, headers, _ = request(daemon, "HEAD", f"{base}?path=/d/dangling")
        assert path_stat(headers)["linkTarget"] == "/nonexist"
        _, headers, _ = request(daemon, "HEAD", f"{base}?path=/data/a.txt")
        assert path_stat(headers)["mode"] == (1 << 23) | 0o755  # Go's ModeSetuid
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", path_stat(headers)["mtime"])

        status, headers, body = request(daemon, "GET", f"{base}?path=/data/a.txt")
        assert (status, headers["Content-Type"]) == (200, "application/x-tar")
        assert path_stat(headers)["size"] == 4
        assert file_in(body, "a.txt") == b"one\n"

        status, _, body = request(daemon, "HEAD", f"{base}?path=/nonexist")
        assert status == 404
        status, _, body = request(daemon, "GET", f"{base}?path=/nonexist")
        assert (status, json.loads(body)) == (
            404,
            {"message": "Could not find the file /nonexist in container arc"},
        )
        status, _, body = request(daemon, "GET", base)
        assert (status, json.loads(body)) == (
            400,
            {"message": "bad parameter: pathcannot be empty"},
        )
        status, _, body = request(daemon, "GET", f"{base}?path=/data/a.txt/")
        assert status == 500 and b"not a directory" in body
        status, _, body = request(daemon, "PUT", f"{base}?path=/data/a.txt", tar_bytes())
        assert (status, json.loads(body)) == (
            500,
            {"message": "extraction point is not a directory"},
        )
        status, _, body = request(
            daemon,
            "PUT",
            f"{base}?path=/data&noOverwriteDirNonDir=true",
            tar_bytes(("sub", "f", b"x")),
        )
        assert status == 500
        assert json.loads(body)["message"] == (
            "Error processing tar file(exit status 1): "
            'cannot overwrite directory "/data/sub" with non-directory "/data"'
        )
        status, _, body = request(daemon, "PUT", f"{base}?path=/tmp", b"garbage" * 100)
        assert status == 500 and b"invalid tar header" in body
        assert temporary_mounts(daemon) == []


# -- breakouts -------------------------------------------------------------------------------


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_symlinks_never_reach_the_hosts_files(
    daemon: DaemonProcess, tmp_path: Path, running: bool
) -> None:
    name = f"esc-{'run' if running else 'stop'}"
    token = secrets.token_hex(6)
    host_only = Path("/etc/debian_version")  # a host file the busybox rootfs does not have
    assert host_only.exists(), "the host check needs /etc/debian_version"
    with containers(daemon, name):
        seeded(daemon, name, running=running)
        base = f"/v1.41/containers/{name}/archive"
        # Reading through links to / and ../../.. reaches the container's root only.
        for link in ("/d/root", "/d/up"):
            status, _, body = request(daemon, "GET", f"{base}?path={link}/etc/passwd")
            assert status == 200
            assert file_in(body, "passwd") == file_in(
                request(daemon, "GET", f"{base}?path=/etc/passwd")[2], "passwd"
            )
            status, _, _ = request(daemon, "GET", f"{base}?path={link}{host_only}")
            assert status == 404, f"{link}{host_only} reached the host"
        status, _, body = request(daemon, "GET", f"{base}?path=/d/up/")
        names = members(body)
        assert "up/data/a.txt" in names and "up/etc/passwd" in names
        assert not any(n.startswith("up/" + str(host_only)[1:]) for n in names)

        # Writing through them lands in the container, never on the host.
        target = f"escape-{token}"
        host_file = tmp_path / target
        host_file.write_text("x")
        for link in ("/d/root/tmp/", "/d/up/tmp/", "/d/etc/"):
            daemon.docker("cp", str(host_file), f"{name}:{link}")
        assert not Path("/tmp", target).exists() and not Path("/etc", target).exists()
        # A tar that plants a link to / and then writes through it.
        planted = tar_bytes(("ln", "l", "/"), (f"ln/{target}-2", "f", b"y"))
        status, _, body = request(daemon, "PUT", f"{base}?path=/tmp", planted)
        assert status == 200, body
        assert not Path("/", f"{target}-2").exists()
        # Members that climb out are refused in dockerd's words.
        for member, message in (
            (f"../../{target}-3", f'"../../{target}-3" is outside of "/tmp"'),
            ("../../../../etc/passwd", '"../../../../etc/passwd" is outside of "/tmp"'),
        ):
            status, _, body = request(
                daemon, "PUT", f"{base}?path=/tmp", tar_bytes((member, "f", b"z"))
            )
            assert (status, json.loads(body)["message"]) == (
                500,
                "Error processing tar file(exit status 1): " + message,
            )
        relative = tar_bytes((f"up-{token}", "l", "../../.."))
        status, _, body = request(daemon, "PUT", f"{base}?path=/tmp", relative)
        assert status == 500 and b"invalid symlink" in body
        hardlink = tar_bytes((f"hl-{token}", "h", "../../etc/shadow"))
        status, _, body = request(daemon, "PUT", f"{base}?path=/tmp", hardlink)
        assert status == 500 and b"invalid hardlink" in body
        assert not Path("/tmp", f"{target}-3").exists()

        # Everything that went in is inside the container.
        listing = docker_bytes(daemon, "cp", f"{name}:/", "-")
        inside = members(listing.stdout)
        for expected in (f"/tmp/{target}", f"/etc/{target}", f"/{target}-2"):
            assert expected in inside, sorted(n for n in inside if token in n)
        assert temporary_mounts(daemon) == []


# -- docker export ----------------------------------------------------------------------------


def test_export_running_and_stopped(daemon: DaemonProcess, tmp_path: Path) -> None:
    with containers(daemon, "exp-run", "exp-new"):
        run_detached(daemon, "exp-run", "busybox", "sh", "-c", "echo hi > /marker; exec sleep 1000")
        cid = daemon.docker("create", "--name", "exp-new", "busybox", "true").stdout.strip()
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while daemon.docker("exec", "exp-run", "test", "-f", "/marker", check=False).returncode:
            assert time.monotonic() < deadline
            time.sleep(0.05)  # polling exec is the only signal that the file is there

        # docker export c | tar t
        export = docker_bytes(daemon, "export", "exp-run")
        assert export.returncode == 0, export.stderr
        listing = subprocess.run(
            ["tar", "t"], input=export.stdout, capture_output=True, timeout=COMMAND_TIMEOUT_S
        )
        assert listing.returncode == 0, listing.stderr
        names = listing.stdout.decode().splitlines()
        assert "bin/busybox" in names and "etc/passwd" in names and "marker" in names
        assert "bin/" in names and not any(n.startswith(("/", "./")) for n in names)

        # docker export -o f.tar on a container that never ran
        out = tmp_path / "new.tar"
        daemon.docker("export", "-o", str(out), "exp-new")
        with tarfile.open(out) as tar:
            exported = {m.name for m in tar.getmembers()}
        assert {"bin/busybox", "etc/passwd"} <= exported and "marker" not in exported
        assert container_mounts(daemon, cid) == []

        missing = daemon.docker("export", "nosuch", check=False)
        assert (missing.returncode, missing.stderr.strip()) == (
            1,
            "Error response from daemon: No such container: nosuch",
        )
        assert temporary_mounts(daemon) == []


def test_a_daemon_killed_mid_export_leaves_no_mount_once_restarted(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    with containers(daemon, "exp-kill"):
        daemon.docker("create", "--name", "exp-kill", "busybox", "true")
        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(16 << 20))  # more than the socket buffers hold
        daemon.docker("cp", str(big), "exp-kill:/")
        conn = UnixHTTPConnection(daemon.sock)
        try:
            conn.request("GET", "/v1.41/containers/exp-kill/export")
            response = conn.getresponse()
            assert response.status == 200
            response.read(512)  # the stream is under way, on its temporary mount
            assert len(temporary_mounts(daemon)) == 1
            assert daemon.proc is not None
            daemon.proc.kill()
            daemon.proc.wait()
            daemon.proc = None
        finally:
            conn.close()
        assert len(temporary_mounts(daemon)) == 1  # nobody could unmount it
        daemon.start()
        assert temporary_mounts(daemon) == []
        export = docker_bytes(daemon, "export", "exp-kill")
        assert export.returncode == 0 and "big.bin" in members(export.stdout)
        assert temporary_mounts(daemon) == []


# -- docker port -----------------------------------------------------------------------------


def test_port_prints_nothing_without_published_ports(daemon: DaemonProcess) -> None:
    with containers(daemon, "port1", "port2"):
        run_detached(daemon, "port1", "busybox", "sleep", "1000")
        # dockerd accepts -p with --network none and publishes nothing.
        run_detached(daemon, "port2", "-p", "8080:80", "busybox", "sleep", "1000")
        for name in ("port1", "port2"):
            result = daemon.docker("port", name)
            assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
            ports = daemon.docker("inspect", "-f", "{{json .NetworkSettings.Ports}}", name)
            assert ports.stdout.strip() == "{}"
        one = daemon.docker("port", "port2", "80", check=False)
        assert (one.returncode, one.stderr.strip()) == (
            1,
            "Error: No public port '80' published for port2",
        )


# -- docker stats ----------------------------------------------------------------------------

STATS_FORMAT = "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}"


def _host_memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


def test_stats_no_stream_shows_cpu_and_memory(daemon: DaemonProcess) -> None:
    with containers(daemon, "st-busy", "st-idle", "st-new"):
        run_detached(daemon, "st-busy", "-m", "64m", "busybox", "sh", "-c", "while :; do :; done")
        run_detached(daemon, "st-idle", "busybox", "sleep", "1000")
        daemon.docker("create", "--name", "st-new", "busybox", "true")
        result = daemon.docker(
            "stats", "--no-stream", "--format", STATS_FORMAT, "st-busy", "st-idle", "st-new"
        )
        rows = {line.split("|")[0]: line.split("|") for line in result.stdout.splitlines()}
        _, busy_cpu, busy_mem, busy_pids = rows["st-busy"]
        assert float(busy_cpu.rstrip("%")) > 20.0, rows  # a busy loop, sampled a second apart
        used, limit = busy_mem.split(" / ")
        assert limit == "64MiB" and used != "0B"
        assert busy_pids == "1"
        _, idle_cpu, idle_mem, _ = rows["st-idle"]
        assert float(idle_cpu.rstrip("%")) < 20.0
        assert idle_mem.split(" / ")[1].endswith("GiB")  # the host's memory: no limit set
        assert rows["st-new"][1:] == ["0.00%", "0B / 0B", "0"]

        status, stats = daemon.api("GET", "/containers/st-idle/stats?stream=0")
        assert status == 200
        assert stats["name"] == "/st-idle" and "networks" not in stats
        assert stats["memory_stats"]["limit"] == _host_memory_bytes()
        assert stats["precpu_stats"]["system_cpu_usage"] < stats["cpu_stats"]["system_cpu_usage"]
        assert stats["cpu_stats"]["online_cpus"] == os.cpu_count()
        status, one_shot = daemon.api("GET", "/containers/st-idle/stats?stream=0&one-shot=1")
        assert one_shot["preread"] == "0001-01-01T00:00:00Z"
        assert one_shot["precpu_stats"]["cpu_usage"]["total_usage"] == 0
        status, zeroed = daemon.api("GET", "/containers/st-new/stats?stream=0")
        assert (zeroed["read"], zeroed["memory_stats"], zeroed["pids_stats"]) == (
            "0001-01-01T00:00:00Z",
            {},
            {},
        )
        status, missing = daemon.api("GET", "/containers/nosuch/stats?stream=0")
        assert (status, missing) == (404, {"message": "No such container: nosuch"})


def test_stats_stream_until_the_container_stops(daemon: DaemonProcess) -> None:
    with containers(daemon, "st-stream"):
        run_detached(daemon, "st-stream", "busybox", "sh", "-c", "while :; do :; done")
        conn = UnixHTTPConnection(daemon.sock)
        try:
            conn.request("GET", "/v1.41/containers/st-stream/stats")
            response = conn.getresponse()
            assert response.status == 200
            first = json.loads(response.readline())
            second = json.loads(response.readline())
            assert first["precpu_stats"]["cpu_usage"]["total_usage"] == 0
            assert second["preread"] == first["read"]
            assert second["precpu_stats"] == first["cpu_stats"]
            daemon.docker("stop", "-t", "0", "st-stream")
            rest = [json.loads(line) for line in response.read().splitlines() if line.strip()]
        finally:
            conn.close()
        # the stream ends after dockerd's zeroed object for the stopped container
        assert rest and rest[-1]["read"] == "0001-01-01T00:00:00Z"
        assert rest[-1]["memory_stats"] == {}


def test_streaming_docker_stats_shows_rows(daemon: DaemonProcess) -> None:
    with containers(daemon, "st-cli"):
        run_detached(daemon, "st-cli", "-m", "32m", "busybox", "sh", "-c", "while :; do :; done")
        proc = subprocess.Popen(
            [DOCKER, "stats", "--format", STATS_FORMAT, "st-cli"],
            env=daemon.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        seen = b""
        row: list[str] = []
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + 20.0
            while not row:
                left = deadline - time.monotonic()
                assert left > 0, f"no busy row in {seen!r}"
                readable, _, _ = select.select([proc.stdout], [], [], left)
                if not readable:
                    continue
                data = os.read(proc.stdout.fileno(), 4096)
                assert data, f"docker stats exited: {seen!r}"
                seen += data
                # The CLI clears the screen before each refresh.
                text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "\n", seen.decode(errors="replace"))
                for line in text.splitlines():
                    parts = [p.strip() for p in line.split("|")]
                    if len(parts) == 4 and parts[0] == "st-cli" and parts[1] != "0.00%":
                        row = parts
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=COMMAND_TIMEOUT_S)  # reaps it and closes the pipes
        assert float(row[1].rstrip("%")) > 20.0
        assert row[2].endswith(" / 32MiB") and row[3] == "1"
