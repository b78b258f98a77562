"""The OCI process of `docker exec` (model/exec_process.py)."""

from __future__ import annotations

import pytest

from dockyard.engine.model import exec_process as xp
from dockyard.engine.security import capabilities as caps

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
PASSWD += "app:x:1000:1000::/home/app:/bin/sh\n"
GROUP = "root:x:0:\nnobody:x:65534:\napp:x:1000:\nwheel:x:10:app\n"
BASE = {
    "terminal": True,
    "consoleSize": {"height": 24, "width": 80},
    "user": {"uid": 0, "gid": 0, "additionalGids": [0]},
    "args": ["sleep", "1000"],
    "env": ["PATH=/bin", "HOSTNAME=abc", "A=1"],
    "cwd": "/srv",
    "capabilities": {"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"]},
    "noNewPrivileges": True,
    "oomScoreAdj": 0,
}


def process(**kw: object) -> dict[str, object]:
    config = xp.ExecConfig(**{"cmd": ("id",), **kw})  # type: ignore[arg-type]
    return xp.exec_process(BASE, config, passwd=PASSWD, group=GROUP)


def test_the_containers_process_with_the_execs_command() -> None:
    p = process(cmd=("sh", "-c", "echo $A"))
    assert p["args"] == ["sh", "-c", "echo $A"]
    assert p["cwd"] == "/srv" and p["user"] == BASE["user"]
    assert p["terminal"] is False and "consoleSize" not in p
    assert p["capabilities"] == BASE["capabilities"] and p["noNewPrivileges"] is True
    assert BASE["args"] == ["sleep", "1000"]  # the base is not modified


def test_env_is_replaced_or_appended_per_key_and_a_tty_gets_term() -> None:
    assert process(env=("A=2", "B=3"))["env"] == ["PATH=/bin", "HOSTNAME=abc", "A=2", "B=3"]
    assert process(tty=True)["env"][-1] == "TERM=xterm"
    assert process(tty=True, env=("TERM=vt100",))["env"][-1] == "TERM=vt100"


def test_working_dir() -> None:
    assert process(working_dir="/tmp")["cwd"] == "/tmp"


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("65534", {"uid": 65534, "gid": 65534, "additionalGids": [65534]}),
        ("nobody", {"uid": 65534, "gid": 65534, "additionalGids": [65534]}),
        ("4242", {"uid": 4242, "gid": 0, "additionalGids": [0]}),
        ("app", {"uid": 1000, "gid": 1000, "additionalGids": [1000, 10]}),
        ("app:wheel", {"uid": 1000, "gid": 10, "additionalGids": [10]}),
        ("1000:77", {"uid": 1000, "gid": 77, "additionalGids": [77, 10]}),
    ],
)
def test_user_resolution(user: str, expected: dict[str, object]) -> None:
    assert process(user=user)["user"] == expected


def test_unknown_user_and_group() -> None:
    with pytest.raises(xp.ExecUserError, match="unable to find user ghost"):
        process(user="ghost")
    with pytest.raises(xp.ExecUserError, match="unable to find group ghosts"):
        process(user="app:ghosts")


def test_privileged_gets_every_capability_the_daemon_holds() -> None:
    p = process(privileged=True)
    assert p["capabilities"]["bounding"] == list(caps.ALL_CAPABILITIES)  # type: ignore[index]
    mask = xp.parse_cap_bounding("Name:\tx\nCapBnd:\t000001fffeffffff\n")
    config = xp.ExecConfig(cmd=("id",), privileged=True)
    limited = xp.exec_process(BASE, config, passwd="", group="", bounding_mask=mask)
    held = limited["capabilities"]["inheritable"]
    assert "CAP_SYS_RESOURCE" not in held and "CAP_SYS_ADMIN" in held
    assert len(held) == len(caps.ALL_CAPABILITIES) - 1


def test_start_errors() -> None:
    assert xp.start_error_exit_code("exec: x: executable file not found in $PATH") == 126
    assert xp.docker_exec_error("boom") == "OCI runtime exec failed: boom: unknown"
