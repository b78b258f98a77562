"""Typed instructions and stages: flags, validation and Docker 20.10's messages."""

from __future__ import annotations

import pytest

from dockyard.engine.images.build.dockerfile import parse_dockerfile
from dockyard.engine.images.build.instructions import (
    ArgCommand,
    CopyCommand,
    HealthcheckCommand,
    InstructionError,
    OnbuildCommand,
    RunCommand,
    find_stage,
    parse_duration_ns,
    parse_stages,
)

pytestmark = pytest.mark.unit


def stages(text: str) -> tuple[list, list]:  # type: ignore[type-arg]
    return parse_stages(parse_dockerfile(text).nodes)


def error(text: str) -> str:
    with pytest.raises(InstructionError) as caught:
        stages(text)
    return f"line {caught.value.line}: {caught.value}"


def test_stages_names_and_global_args() -> None:
    built, meta = stages("ARG V=1\nFROM busybox AS Build\nRUN x\nFROM build\nCOPY --from=0 /a /b\n")
    assert [(s.base_name, s.name) for s in built] == [("busybox", "build"), ("build", "")]
    assert isinstance(meta[0], ArgCommand) and meta[0].args == (("V", "1"),)
    assert isinstance(built[0].commands[0], RunCommand)
    copy = built[1].commands[0]
    assert isinstance(copy, CopyCommand)
    assert (copy.sources, copy.dest, copy.from_stage) == (("/a",), "/b", "0")
    assert find_stage(built, "BUILD") == 0
    assert find_stage(built, "nope") is None


def test_run_forms() -> None:
    built, _ = stages('FROM x\nRUN echo hi\nRUN ["a", "b"]\n')
    shell, exec_form = built[0].commands
    assert (shell.cmd_line, shell.prepend_shell) == (("echo hi",), True)
    assert (exec_form.cmd_line, exec_form.prepend_shell) == (("a", "b"), False)


def test_healthcheck_options_and_none() -> None:
    built, _ = stages(
        "FROM x\nHEALTHCHECK --interval=1m30s --timeout=3s --retries=2 CMD curl x\n"
        "HEALTHCHECK NONE\n"
    )
    check, none = built[0].commands
    assert isinstance(check, HealthcheckCommand)
    assert check.test == ("CMD-SHELL", "curl x")
    assert (check.interval_ns, check.timeout_ns, check.retries) == (
        90_000_000_000,
        3_000_000_000,
        2,
    )
    assert none.test == ("NONE",)


def test_onbuild_expression_is_the_rest_of_the_line() -> None:
    built, _ = stages("FROM x\nonbuild RUN echo hi\n")
    (command,) = built[0].commands
    assert isinstance(command, OnbuildCommand)
    assert command.expression == "RUN echo hi"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM x\nFOO bar\n", "line 2: unknown instruction: FOO"),
        ("RUN x\n", "line 1: no build stage in current context"),
        ("FROM a b\n", "line 1: FROM requires either one or three arguments"),
        (
            "FROM a AS 1x\n",
            'line 1: invalid name for build stage: "1x", name can\'t start with a number '
            "or contain symbols",
        ),
        (
            "FROM x\nCOPY a\n",
            "line 2: COPY requires at least two arguments, but only one was provided. "
            "Destination could not be determined.",
        ),
        ("FROM x\nCOPY --foo=1 a b\n", "line 2: Unknown flag: foo"),
        ("FROM x\nCOPY --from a b\n", "line 2: Missing a value on flag: from"),
        ("FROM x\nCOPY --from=a --from=b a b\n", "line 2: Duplicate flag specified: from"),
        ("FROM x\nADD --from=a a b\n", "line 2: Unknown flag: from"),
        ("FROM x\nRUN --mount=type=cache x\n", "line 2: Unknown flag: mount"),
        ("FROM x\nWORKDIR\n", "line 2: WORKDIR requires exactly one argument"),
        ("FROM x\nENV\n", "line 2: ENV requires at least one argument"),
        ("FROM x\nEXPOSE\n", "line 2: EXPOSE requires at least one argument"),
        ("FROM x\nSHELL sh -c\n", "line 2: SHELL requires the arguments to be in JSON form"),
        ("FROM x\nHEALTHCHECK NONE x\n", "line 2: HEALTHCHECK NONE takes no arguments"),
        ("FROM x\nHEALTHCHECK FOO x\n", 'line 2: Unknown type "FOO" in HEALTHCHECK (try CMD)'),
        ("FROM x\nHEALTHCHECK CMD\n", "line 2: Missing command after HEALTHCHECK CMD"),
        ("FROM x\nHEALTHCHECK --retries=0 CMD x\n", "line 2: --retries must be at least 1 (not 0)"),
        (
            "FROM x\nHEALTHCHECK --interval=1ns CMD x\n",
            'line 2: Interval "interval" cannot be less than 1ms',
        ),
        ("FROM x\nHEALTHCHECK --timeout=5 CMD x\n", 'line 2: time: invalid duration "5"'),
        (
            "FROM x\nONBUILD ONBUILD RUN x\n",
            "line 2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        ("FROM x\nONBUILD FROM y\n", "line 2: FROM isn't allowed as an ONBUILD trigger"),
    ],
)
def test_errors(text: str, message: str) -> None:
    assert error(text) == message


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("5s", 5_000_000_000),
        ("1.5m", 90_000_000_000),
        ("1h2m", 3_720_000_000_000),
        ("300ms", 300_000_000),
    ],
)
def test_go_durations(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns
