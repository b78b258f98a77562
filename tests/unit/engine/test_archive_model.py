"""`docker cp`/`export` decisions (model/archive.py): container paths resolved in scope,
Go file modes, the stat header, member names, and the tar members dockerd refuses.

The file system is a dict of container paths to symlink targets (`None` for other files);
dockerd's answers for the same paths were captured from dockerd 20.10 on this host.
"""

from __future__ import annotations

import base64
import io
import json
import stat
import tarfile

import pytest

from dockyard.engine.model import archive as am

# A container tree with the symlinks a breakout attempt would plant.
LINKS: dict[str, str] = {
    "/d/root": "/",
    "/d/up": "../../..",
    "/d/etc": "/etc",
    "/d/dangling": "/nonexist",
    "/d/deep": "../../../../../../etc/../..",
    "/loop/a": "/loop/b",
    "/loop/b": "/loop/a",
    "/rel": "d/etc",
}
FILES = {"/d", "/d/f", "/d/sub", "/etc", "/etc/passwd", "/tmp", "/loop"}


def readlink(path: str) -> str | None:
    if path in LINKS:
        return LINKS[path]
    if path in FILES:
        return None
    if any(path.startswith(f + "/") for f in ("/d/f", "/etc/passwd")):
        raise NotADirectoryError(path)
    return None  # missing: accepted as is


@pytest.mark.parametrize(
    ("path", "resolved"),
    [
        ("/d/root", "/"),
        ("/d/root/etc/passwd", "/etc/passwd"),
        ("/d/up", "/"),
        ("/d/up/etc", "/etc"),
        ("/d/up/../../..", "/"),
        ("/../../../etc", "/etc"),
        ("/d/deep/x", "/x"),
        ("/d/etc/passwd", "/etc/passwd"),
        ("/d/dangling/x", "/nonexist/x"),
        ("/rel/passwd", "/etc/passwd"),  # relative to its directory, then /etc
        ("d/./sub//", "/d/sub"),
    ],
)
def test_symlinks_resolve_inside_the_container_root(path: str, resolved: str) -> None:
    assert am.resolve_in_scope(path, readlink) == resolved


def test_no_path_ever_leaves_the_root() -> None:
    for link in LINKS:
        for tail in ("", "/..", "/../..", "/x/../../.."):
            try:
                result = am.resolve_in_scope(link + tail, readlink)
            except am.TooManyLinks:
                continue
            assert result.startswith("/") and ".." not in result.split("/")


def test_symlink_loops_are_an_error() -> None:
    with pytest.raises(am.TooManyLinks, match="too many links"):
        am.resolve_in_scope("/loop/a/x", readlink)


def test_a_file_used_as_a_directory_is_enotdir() -> None:
    with pytest.raises(NotADirectoryError):
        am.resolve_in_scope("/d/f/x/y", readlink)


@pytest.mark.parametrize(
    ("path", "abs_path", "resolved", "name", "wants_dir"),
    [
        ("/etc/passwd", "/etc/passwd", "/etc/passwd", "passwd", False),
        ("etc/", "/etc/", "/etc", "etc", True),
        ("/d/root", "/d/root", "/d/root", "root", False),  # the last link is not followed
        ("/d/root/", "/d/root/", "/", "root", True),  # unless the path ends in /
        ("/d/root/.", "/d/root/.", "/", ".", True),
        ("/", "/", "/", "/", False),
        ("/d/sub/..", "/d", "/d", "d", False),  # .. is lexical, before any link
        ("/d/up/..", "/d", "/d", "d", False),
    ],
)
def test_resolve_path_as_moby(
    path: str, abs_path: str, resolved: str, name: str, wants_dir: bool
) -> None:
    got = am.resolve_path(path, readlink)
    assert (got.abs_path, got.resolved, got.name, got.wants_dir) == (
        abs_path,
        resolved,
        name,
        wants_dir,
    )


def test_go_path_helpers() -> None:
    assert am.go_clean("//a//b/../c/") == "/a/c"
    assert am.go_clean("") == "."
    assert am.go_join("/tmp", "/abs") == "/tmp/abs"
    assert am.go_join("/tmp", "../../x") == "/x"
    assert am.go_base("/a/b/") == "b"
    assert am.go_base("///") == "/"
    assert am.go_base("") == "."
    assert am.go_split("/a/b") == ("/a/", "b")
    assert am.container_abs_path("a/b/.") == "/a/b/."
    assert am.container_abs_path("/a/b/") == "/a/b/"
    assert am.container_abs_path("/") == "/"


@pytest.mark.parametrize(
    ("st_mode", "go_mode"),
    [
        # Values from dockerd's X-Docker-Container-Path-Stat for the same files.
        (stat.S_IFREG | 0o644, 420),
        (stat.S_IFDIR | 0o755, 2147484141),
        (stat.S_IFDIR | stat.S_ISVTX | 0o777, 2148532735),  # /tmp
        (stat.S_IFLNK | 0o777, 134218239),
        (stat.S_IFIFO | 0o644, 33554852),
        (stat.S_IFREG | stat.S_ISUID | 0o755, 8389101),
        (stat.S_IFREG | stat.S_ISGID | 0o755, am.MODE_SETGID | 0o755),
        (stat.S_IFCHR | 0o666, am.MODE_DEVICE | am.MODE_CHAR_DEVICE | 0o666),
        (stat.S_IFBLK | 0o660, am.MODE_DEVICE | 0o660),
        (stat.S_IFSOCK | 0o755, am.MODE_SOCKET | 0o755),
    ],
)
def test_go_file_mode_bits(st_mode: int, go_mode: int) -> None:
    assert am.go_file_mode(st_mode) == go_mode


def test_the_stat_header_is_base64_json_as_dockerd_sends_it() -> None:
    stat_ = am.PathStat("hostname", 13, 420, 1_795_917_688_007_795_627)
    captured = (
        "eyJuYW1lIjoiaG9zdG5hbWUiLCJzaXplIjoxMywibW9kZSI6NDIwLCJtdGltZSI6IjIwMjYtMTEtMjlU"
        "MDI6MDE6MjguMDA3Nzk1NjI3WiIsImxpbmtUYXJnZXQiOiIifQ=="
    )
    assert stat_.header_value() == captured
    whole = am.PathStat("tmp", 4096, 2148532735, 0)
    assert json.loads(base64.b64decode(whole.header_value()))["mtime"] == "1970-01-01T00:00:00Z"
    assert whole.is_dir and not whole.is_symlink


def test_go_time_trims_the_fraction() -> None:
    assert am.go_time_utc(1_500_000_000) == "1970-01-01T00:00:01.5Z"
    assert am.go_time_utc(0) == "1970-01-01T00:00:00Z"


def test_member_names_follow_the_path_asked_for() -> None:
    def names(path: str, *children: tuple[str, bool]) -> list[str]:
        prefix = am.rebase_prefix(am.resolve_path(path, readlink))
        return [am.member_name(prefix, rel, is_dir) for rel, is_dir in children]

    assert names("/etc/passwd", ("", False)) == ["passwd"]
    assert names("/d/root/", ("", True), ("bin", True)) == ["root/", "root/bin/"]
    assert names("/d/.", ("", True), ("f", False)) == ["./", "./f"]
    assert names("/", ("", True), ("bin", True), ("bin/sh", False)) == ["/", "/bin/", "/bin/sh"]
    # export: no prefix, the root itself is not a member
    assert am.member_name(None, "bin", True) == "bin/"
    assert am.member_name(None, "bin/sh", False) == "bin/sh"


def test_member_header_round_trips_through_tarfile() -> None:
    member = am.Member(
        name="d/" + "x" * 120,
        kind=tarfile.REGTYPE,
        mode=0o4755,
        uid=1000,
        gid=1000,
        size=3,
        mtime_s=1_700_000_000,
        uname="u",
        gname="g",
    )
    data = am.member_header(member) + b"abc" + am.padding(3) + am.TAR_END
    assert len(data) % am.BLOCK_BYTES == 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        (info,) = tar.getmembers()
        assert (info.name, info.mode, info.uid, info.size, info.mtime) == (
            member.name,
            0o4755,
            1000,
            3,
            1_700_000_000,
        )
        extracted = tar.extractfile(info)
        assert extracted is not None and extracted.read() == b"abc"


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("f", "/tmp/f"),
        ("/abs1", "/tmp/abs1"),  # absolute names are relative to the destination
        ("./a/../b", "/tmp/b"),
        (".", "/tmp"),
    ],
)
def test_extract_targets(name: str, target: str) -> None:
    assert am.extract_target("/tmp", name) == target


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../../escape1", '"../../escape1" is outside of "/tmp"'),
        ("sub/../../up1", '"../up1" is outside of "/tmp"'),
    ],
)
def test_members_outside_the_destination_are_refused(name: str, message: str) -> None:
    with pytest.raises(am.Breakout) as caught:
        am.extract_target("/tmp", name)
    assert str(caught.value) == am.EXTRACT_ERROR_PREFIX + message


def test_links_may_not_point_out_of_the_destination() -> None:
    with pytest.raises(am.Breakout, match=r'invalid hardlink "/etc/passwd" -> "../../etc/passwd"'):
        am.hardlink_source("/tmp", "../../etc/passwd")
    assert am.hardlink_source("/tmp", "/etc/passwd") == "/tmp/etc/passwd"
    with pytest.raises(am.Breakout, match=r'invalid symlink "/tmp/lnup" -> "../../.."'):
        am.check_symlink("/tmp", "/tmp/lnup", "../../..")
    with pytest.raises(am.Breakout, match=r'invalid symlink "/tmp/lnrel" -> "../etc"'):
        am.check_symlink("/tmp", "/tmp/lnrel", "../etc")
    am.check_symlink("/tmp", "/tmp/ln", "/")  # absolute: resolved in the root when used
    am.check_symlink("/tmp", "/tmp/a/ln", "../b")
    am.check_symlink("/", "/ln", "../../..")  # nothing is above the root


def test_overwrite_errors_in_dockerds_words() -> None:
    assert am.overwrite_error("/d/sub", "/d", True, False).endswith(
        'cannot overwrite directory "/d/sub" with non-directory "/d"'
    )
    assert am.overwrite_error("/d/f", "/d", False, True).endswith(
        'cannot overwrite non-directory "/d/f" with directory "/d"'
    )
    assert am.overwrite_error("/d/f", "/d", False, False) == ""
    assert am.overwrite_error("/d/sub", "/d", True, True) == ""


PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\nbad:x:z:1::/:\n"
GROUP = "root:x:0:\nstaff:x:50:\n"


def test_lookup_user() -> None:
    assert am.lookup_user("nobody", PASSWD, GROUP) == (65534, 65534)
    assert am.lookup_user("65534", PASSWD, GROUP) == (65534, 65534)
    assert am.lookup_user("1234", PASSWD, GROUP) == (1234, 0)
    assert am.lookup_user("nobody:staff", PASSWD, GROUP) == (65534, 50)
    assert am.lookup_user("1:2", PASSWD, GROUP) == (1, 2)
    with pytest.raises(am.ArchiveError, match="unable to find user bad"):
        am.lookup_user("bad", PASSWD, GROUP)
    with pytest.raises(am.ArchiveError, match="unable to find group nogroup"):
        am.lookup_user("root:nogroup", PASSWD, GROUP)


def _one_file_tar(content: bytes) -> bytes:
    header = am.member_header(am.Member("f", tarfile.REGTYPE, 0o644, 0, 0, len(content), 0))
    return header + content + am.padding(len(content)) + am.TAR_END


def test_tar_truncation_as_gos_reader_sees_it() -> None:
    whole = _one_file_tar(b"x")
    assert am.tar_prefix(whole) == (whole, False)
    # Cut in the last member's padding: complete for Go, the padding is restored.
    assert am.tar_prefix(whole[:700]) == (whole[:1024], False)
    # Cut in a header or in the data: what precedes is whole, then `unexpected EOF`.
    empty = _one_file_tar(b"")
    assert am.tar_prefix(empty[:700]) == (empty[:512], True)
    big = _one_file_tar(b"y" * 2000)
    assert am.tar_prefix(big[:1500]) == (b"", True)
    assert am.tar_prefix(b"garbage" * 100)[1] is False  # an invalid header, not a short one
    assert am.tar_prefix(b"") == (b"", False)
