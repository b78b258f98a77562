"""Metadata steps, their `#(nop)` comments (the cache key) and build args, as dockerd 20.10.

Expected comments were read from `docker history --no-trunc` of dockerd 20.10 builds.
"""

from __future__ import annotations

import pytest

from dockyard.engine.images.build.dockerfile import parse_dockerfile
from dockyard.engine.images.build.instructions import Command, parse_command
from dockyard.engine.images.build.shell_lex import ShellLex, env_map
from dockyard.engine.images.build.state import (
    BuildArgs,
    DispatchError,
    apply_metadata,
    comment_cmd,
    expand_command,
    go_duration,
    merge_config,
    normalize_dest,
    normalize_workdir,
    parse_ports,
    prepend_env_on_cmd,
    with_default_path,
)
from dockyard.engine.images.model import ContainerConfig

pytestmark = pytest.mark.unit

BASE = with_default_path(ContainerConfig())


def command(line: str) -> Command:
    parsed = parse_command(parse_dockerfile(line).nodes[0])
    assert isinstance(parsed, Command)
    return parsed


def step(
    line: str, config: ContainerConfig = BASE, *, cmd_set: bool = False
) -> tuple[ContainerConfig, str]:
    args = BuildArgs({})
    env = env_map(config.env or ())
    result = apply_metadata(
        expand_command(command(line), ShellLex(), env), config, cmd_set=cmd_set, build_args=args
    )
    return result.config, result.comment


@pytest.mark.parametrize(
    ("line", "comment"),
    [
        ('ENV A=1 B="two words"', "ENV A=1 B=two words"),
        ("ENV A 1 2", "ENV A=1 2"),
        ("LABEL x=y", "LABEL x=y"),
        ("WORKDIR /app", "WORKDIR /app"),
        ("USER nobody", "USER nobody"),
        ("EXPOSE 8080/tcp 53/udp", "EXPOSE 8080/tcp 53/udp"),
        ("VOLUME /data /x", "VOLUME [/data /x]"),
        ("STOPSIGNAL SIGTERM", "STOPSIGNAL SIGTERM"),
        ('CMD ["/app/out.txt"]', 'CMD ["/app/out.txt"]'),
        ("CMD echo hi", 'CMD ["/bin/sh" "-c" "echo hi"]'),
        ('ENTRYPOINT ["cat"]', 'ENTRYPOINT ["cat"]'),
        ('SHELL ["/bin/bash", "-c"]', "SHELL [/bin/bash -c]"),
        (
            "HEALTHCHECK --interval=5s CMD true",
            'HEALTHCHECK &{["CMD-SHELL" "true"] "5s" "0s" "0s" \'\\x00\'}',
        ),
        ("HEALTHCHECK NONE", 'HEALTHCHECK &{["NONE"] "0s" "0s" "0s" \'\\x00\'}'),
        ("ONBUILD RUN echo triggered > /trig", "ONBUILD RUN echo triggered > /trig"),
        ("MAINTAINER me", "MAINTAINER me"),
        ("ARG V=1", "ARG V=1"),
        ("ARG V", "ARG V"),
    ],
)
def test_comments_are_dockers(line: str, comment: str) -> None:
    assert step(line)[1] == comment


def test_metadata_cmd_is_split_as_docker_writes_it() -> None:
    assert comment_cmd(BASE, "ENV a=b") == ("/bin/sh", "-c", "#(nop) ", "ENV a=b")
    assert comment_cmd(BASE, "COPY x in / ", split=False) == (
        "/bin/sh",
        "-c",
        "#(nop) COPY x in / ",
    )
    shell = ContainerConfig(shell=("/bin/bash", "-c"))
    assert comment_cmd(shell, "USER x")[:2] == ("/bin/bash", "-c")


def test_env_replaces_in_place_and_expands_with_the_previous_env() -> None:
    config, _ = step("ENV A=1")
    config, _ = step("ENV B=$A A=2", config)
    assert config.env == (f"PATH={BASE.env[0][5:]}", "A=2", "B=1")  # type: ignore[index]


def test_entrypoint_clears_an_inherited_cmd_unless_the_stage_set_one() -> None:
    base = ContainerConfig(cmd=("sh",))
    assert step('ENTRYPOINT ["x"]', base)[0].cmd is None
    assert step('ENTRYPOINT ["x"]', base, cmd_set=True)[0].cmd == ("sh",)


def test_workdir_is_relative_to_the_previous_one() -> None:
    config, _ = step("WORKDIR /a")
    config, comment = step("WORKDIR b/../c", config)
    assert (config.working_dir, comment) == ("/a/c", "WORKDIR /a/c")
    assert normalize_workdir("/", "x/") == "/x"
    assert normalize_dest("/app", "./") == "/app/"
    assert normalize_dest("/app", "f") == "/app/f"
    assert normalize_dest("/app", "/abs") == "/abs"


def test_expose_expands_word_to_words_and_validates() -> None:
    config, _ = step("EXPOSE 80 1000-1001/udp")
    assert config.exposed_ports == ("1000/udp", "1001/udp", "80/tcp")
    with pytest.raises(DispatchError, match="invalid containerPort: abc"):
        parse_ports(["abc"])


def test_stopsignal_is_validated() -> None:
    with pytest.raises(DispatchError, match="Invalid signal: SIGNOPE"):
        step("STOPSIGNAL SIGNOPE")


def test_build_args_visibility_and_overrides() -> None:
    args = BuildArgs({"V": "7", "UNUSED": "1", "HTTP_PROXY": "http://p"})
    args.add_meta_arg("G", "global")
    stage = args.for_stage()
    assert stage.filter_allowed([]) == ["HTTP_PROXY=http://p"]
    stage.add_arg("V", "1")
    stage.add_arg("G", None)
    assert stage.all_allowed() == {"G": "global", "HTTP_PROXY": "http://p", "V": "7"}
    # ENV shadows an ARG of the same name.
    assert stage.filter_allowed(["V=env"]) == ["G=global", "HTTP_PROXY=http://p"]
    assert args.unused() == ["UNUSED"]
    # Declared args go into the RUN's key; the undeclared proxy built-in does not.
    cmd = prepend_env_on_cmd(stage, stage.filter_allowed([]), ("/bin/sh", "-c", "x"))
    assert cmd == ("|2", "G=global", "V=7", "/bin/sh", "-c", "x")


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (5_000_000_000, "5s"),
        (90_000_000_000, "1m30s"),
        (300_000_000, "300ms"),
        (3_600_000_000_000, "1h0m0s"),
        (1_500_000_000, "1.5s"),
    ],
)
def test_go_duration_strings(ns: int, text: str) -> None:
    assert go_duration(ns) == text


def test_commit_merge_fills_what_the_request_left_empty() -> None:
    container = ContainerConfig(
        env=("X=1", "PATH=/bin"),
        cmd=("sh",),
        labels=(("a", "1"),),
        exposed_ports=("80/tcp",),
        working_dir="/w",
        user="u",
    )
    user = ContainerConfig(env=("X=2", "Y=3"), labels=(("b", "2"),), exposed_ports=("81/tcp",))
    merged = merge_config(user, container)
    assert merged.env == ("X=2", "Y=3", "PATH=/bin")
    assert dict(merged.labels or ()) == {"a": "1", "b": "2"}
    assert merged.exposed_ports == ("80/tcp", "81/tcp")
    assert (merged.cmd, merged.working_dir, merged.user) == (("sh",), "/w", "u")
    # An entrypoint in the request keeps the container's Cmd out.
    with_entrypoint = merge_config(ContainerConfig(entrypoint=("e",)), container)
    assert (with_entrypoint.entrypoint, with_entrypoint.cmd) == (("e",), None)
