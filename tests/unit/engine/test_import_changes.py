"""`--change` parsing for `docker import`: results and messages as dockerd 20.10 gave them.

Each expected value below was observed with `docker import --change …` against dockerd
20.10 and `docker image inspect` (STOPSIGNAL excepted: 20.10 refuses it, newer engines
accept it).
"""

from __future__ import annotations

import pytest

from dockyard.engine.images.changes import (
    InvalidChange,
    apply_changes,
    expand_word,
    expose_ports,
    parse_go_duration_ns,
    split_words,
)
from dockyard.engine.images.model import ContainerConfig, HealthConfig

EMPTY = ContainerConfig()


def changed(*changes: str) -> ContainerConfig:
    return apply_changes(changes, EMPTY)


def test_no_changes_leave_the_config_alone() -> None:
    assert changed() == EMPTY
    assert changed("", "# a comment") == EMPTY


def test_cmd_and_entrypoint_exec_and_shell_forms() -> None:
    assert changed("CMD echo hi").cmd == ("/bin/sh", "-c", "echo hi")
    assert changed('cmd ["x"]').cmd == ("x",)
    assert changed("CMD").cmd == ("/bin/sh", "-c")
    assert changed('ENTRYPOINT ["a","b"]').entrypoint == ("a", "b")
    assert changed("ENTRYPOINT a b").entrypoint == ("/bin/sh", "-c", "a b")
    # Not expanded, unlike ENV.
    assert changed("ENV A=1", "CMD echo $A").cmd == ("/bin/sh", "-c", "echo $A")
    # Invalid JSON falls back to the shell form.
    assert changed("CMD [not json").cmd == ("/bin/sh", "-c", "[not json")


def test_entrypoint_resets_cmd_unless_cmd_came_first() -> None:
    base = ContainerConfig(cmd=("sh",))
    assert apply_changes(["ENTRYPOINT x"], base).cmd is None
    both = apply_changes(['CMD ["y"]', "ENTRYPOINT x"], base)
    assert (both.cmd, both.entrypoint) == (("y",), ("/bin/sh", "-c", "x"))


def test_env_forms_quotes_and_expansion() -> None:
    assert changed('ENV A=1 B="x y"', "ENV C $A-${B}").env == ("A=1", "B=x y", "C=1-x y")
    assert changed("ENV K V W").env == ("K=V W",)
    assert changed("ENV A=\\$B").env == ("A=$B",)
    assert changed("ENV A='single $X'").env == ("A=single $X",)
    # The pairs of one instruction see the environment before it.
    assert changed("ENV A=1", "ENV A=2 B=$A").env == ("A=2", "B=1")
    base = ContainerConfig(env=("PATH=/bin",))
    assert apply_changes(["ENV PATH=$PATH:/x"], base).env == ("PATH=/bin:/x",)


def test_label_user_workdir() -> None:
    assert changed('LABEL a=b c="d e"').labels == (("a", "b"), ("c", "d e"))
    assert changed("USER nobody:nogroup").user == "nobody:nogroup"
    assert changed("WORKDIR /a", "WORKDIR b").working_dir == "/a/b"
    assert changed("WORKDIR rel").working_dir == "/rel"
    assert changed("ENV D=/data", "WORKDIR $D/x").working_dir == "/data/x"


def test_expose_and_volume() -> None:
    assert changed("EXPOSE 80 443/udp 8000-8002").exposed_ports == (
        "443/udp",
        "80/tcp",
        "8000/tcp",
        "8001/tcp",
        "8002/tcp",
    )
    assert changed('ENV P="1 2"', "EXPOSE $P").exposed_ports == ("1/tcp", "2/tcp")
    assert changed("VOLUME /v1 /v2").volumes == ("/v1", "/v2")
    assert changed('VOLUME ["/j"]').volumes == ("/j",)


def test_onbuild_stopsignal_healthcheck() -> None:
    assert changed("ONBUILD RUN echo").on_build == ("RUN echo",)
    assert changed("STOPSIGNAL SIGUSR1").stop_signal == "SIGUSR1"
    assert changed("STOPSIGNAL 9").stop_signal == "9"
    assert changed("HEALTHCHECK --interval=5s CMD true").healthcheck == HealthConfig(
        test=("CMD-SHELL", "true"), interval_ns=5_000_000_000
    )
    assert changed("HEALTHCHECK NONE").healthcheck == HealthConfig(test=("NONE",))
    exec_form = changed('HEALTHCHECK --retries=3 --timeout=1m30s CMD ["a", "b"]').healthcheck
    assert exec_form == HealthConfig(test=("CMD", "a", "b"), timeout_ns=90_000_000_000, retries=3)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (["RUN true"], "run is not a valid change command"),
        (["FROM x"], "from is not a valid change command"),
        (["ARG x=1"], "arg is not a valid change command"),
        (['SHELL ["/bin/bash","-c"]', "CMD x"], "shell is not a valid change command"),
        (["MAINTAINER me"], "maintainer is not a valid change command"),
        (["bogus x"], "bogus is not a valid change command"),
        (["EXPOSE abc"], "Invalid containerPort: abc"),
        (["ENV"], "ENV requires at least one argument"),
        (["LABEL"], "LABEL requires at least one argument"),
        (["WORKDIR"], "WORKDIR requires exactly one argument"),
        (
            ['CMD ["a", 1]'],
            "when using JSON array syntax, arrays must be comprised of strings only",
        ),
        (["STOPSIGNAL BOGUS"], "Invalid signal: BOGUS"),
        (["HEALTHCHECK"], 'Unknown type "" in HEALTHCHECK (try CMD)'),
        (["HEALTHCHECK NONE x"], "HEALTHCHECK NONE takes no arguments"),
    ],
)
def test_refusals_in_dockerds_words(changes: list[str], message: str) -> None:
    with pytest.raises(InvalidChange) as caught:
        apply_changes(changes, EMPTY)
    assert str(caught.value) == message


def test_an_invalid_keyword_refuses_the_whole_set_before_applying_any() -> None:
    with pytest.raises(InvalidChange, match="run is not a valid change command"):
        apply_changes(["ENV A=1", "RUN x"], EMPTY)


def test_lexer_pieces() -> None:
    env = {"A": "1", "E": ""}
    assert expand_word("${A:-x}${E:-y}${E:+z}${A:+w}${N-n}", env) == "1yw" + "n"
    assert expand_word('"a $A \\" b"', env) == 'a 1 " b'
    assert expand_word("$ 5$", env) == "$ 5$"
    assert split_words('a="b c" d\\ e  f') == ['a="b c"', "d\\ e", "f"]
    assert expose_ports("8080/UDP") == ["8080/udp"]
    assert expose_ports("127.0.0.1:80:81") == ["81/tcp"]
    assert parse_go_duration_ns("1.5s") == 1_500_000_000
    assert parse_go_duration_ns("0") == 0
    with pytest.raises(InvalidChange, match="invalid duration"):
        parse_go_duration_ns("5")
