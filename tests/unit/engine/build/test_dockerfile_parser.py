"""The Dockerfile parser: forms, continuations, directives and errors as buildkit's parser."""

from __future__ import annotations

import pytest

from dockyard.engine.images.build.dockerfile import (
    NOT_STRING_ARRAY,
    ParserError,
    parse_dockerfile,
    parse_words,
)

pytestmark = pytest.mark.unit


def nodes(text: str) -> list[tuple[str, tuple[str | None, ...], bool]]:
    return [(n.instruction, n.args, n.json) for n in parse_dockerfile(text).nodes]


def test_each_instruction_gets_its_own_argument_form() -> None:
    text = "\n".join(
        [
            "FROM busybox AS build",
            'RUN ["echo", "hi"]',
            "RUN echo  hi there",
            "CMD echo $HOME",
            'ENTRYPOINT ["sh", "-c"]',
            'SHELL ["/bin/bash", "-c"]',
            "COPY a b /dest/",
            'ADD ["x y", "/z"]',
            "EXPOSE 80 443/udp",
            "VOLUME /a /b",
            'VOLUME ["/c"]',
            "WORKDIR /app dir",
            "USER nobody",
            "STOPSIGNAL SIGKILL",
            "MAINTAINER Jane <jane@example.com>",
        ]
    )
    assert nodes(text) == [
        ("from", ("busybox", "AS", "build"), False),
        ("run", ("echo", "hi"), True),
        ("run", ("echo  hi there",), False),
        ("cmd", ("echo $HOME",), False),
        ("entrypoint", ("sh", "-c"), True),
        ("shell", ("/bin/bash", "-c"), True),
        ("copy", ("a", "b", "/dest/"), False),
        ("add", ("x y", "/z"), True),
        ("expose", ("80", "443/udp"), False),
        ("volume", ("/a", "/b"), False),
        ("volume", ("/c",), True),
        ("workdir", ("/app dir",), False),
        ("user", ("nobody",), False),
        ("stopsignal", ("SIGKILL",), False),
        ("maintainer", ("Jane <jane@example.com>",), False),
    ]


def test_env_and_label_take_both_forms_keeping_quotes_for_the_lexer() -> None:
    assert nodes('ENV A=1 B="two words" C=3') == [
        ("env", ("A", "1", "B", '"two words"', "C", "3"), False)
    ]
    assert nodes("ENV PATH /usr/bin:/bin  x") == [("env", ("PATH", "/usr/bin:/bin  x"), False)]
    assert nodes('LABEL "k 1"=v') == [("label", ('"k 1"', "v"), False)]


def test_arg_with_and_without_default() -> None:
    assert nodes("ARG A B=2") == [("arg", ("A", None, "B", "2"), False)]


def test_flags_are_split_off_before_the_arguments() -> None:
    (node,) = parse_dockerfile("COPY --from=build --chown=1:2 /a /b\n").nodes
    assert node.flags == ("--from=build", "--chown=1:2")
    assert node.args == ("/a", "/b")


def test_healthcheck_keeps_its_type_and_command() -> None:
    (node,) = parse_dockerfile("HEALTHCHECK --interval=5s CMD curl -f x || exit 1").nodes
    assert node.flags == ("--interval=5s",)
    assert node.args == ("CMD", "curl -f x || exit 1")
    (none,) = parse_dockerfile("HEALTHCHECK NONE").nodes
    assert none.args == ("NONE",)


def test_onbuild_parses_its_trigger() -> None:
    (node,) = parse_dockerfile("ONBUILD RUN echo hi").nodes
    assert node.sub is not None
    assert (node.sub.instruction, node.sub.args) == ("run", ("echo hi",))


def test_continuations_comments_and_line_numbers() -> None:
    text = "# a comment\nFROM busybox\n\nRUN echo a \\\n  # inside\n  b \\\n\n  c\nUSER x\n"
    result = parse_dockerfile(text)
    run = result.nodes[1]
    assert run.args == ("echo a   b   c",)
    assert (run.start_line, run.end_line) == (4, 8)
    assert result.nodes[2].start_line == 9
    # Docker warns about the empty line inside the continuation.
    assert result.warnings[0].startswith("[WARNING]: Empty continuation line found in:")
    assert result.warnings[-1] == (
        "[WARNING]: Empty continuation lines will become errors in a future release."
    )


def test_escape_directive_changes_the_continuation_character() -> None:
    text = "# escape=`\nFROM busybox\nRUN dir c:\\ `\n  && echo done\n"
    result = parse_dockerfile(text)
    assert result.escape_token == "`"
    assert result.nodes[1].args == ("dir c:\\   && echo done",)


def test_directives_end_at_the_first_other_line() -> None:
    result = parse_dockerfile("# hello\n# escape=`\nFROM busybox\n")
    assert result.escape_token == "\\"


def test_invalid_escape_directive_is_refused() -> None:
    with pytest.raises(ParserError, match=r"invalid ESCAPE 'x'\. Must be ` or \\"):
        parse_dockerfile("# escape=x\nFROM busybox\n")


def test_json_arrays_must_hold_strings_only() -> None:
    with pytest.raises(ParserError, match=NOT_STRING_ARRAY):
        parse_dockerfile('FROM busybox\nCMD ["a", 1]\n')


def test_a_broken_json_array_is_the_shell_form() -> None:
    assert nodes('CMD ["a", "b"')[0] == ("cmd", ('["a", "b"',), False)


def test_env_old_form_needs_a_value() -> None:
    with pytest.raises(ParserError, match="ENV must have two arguments"):
        parse_dockerfile("ENV A\n")


def test_env_new_form_needs_equals_everywhere() -> None:
    with pytest.raises(ParserError, match='can\'t find = in "b"'):
        parse_dockerfile("ENV a=1 b\n")


def test_an_unknown_instruction_parses_and_keeps_its_line() -> None:
    (node,) = parse_dockerfile("\n\nFOO bar\n").nodes
    assert (node.instruction, node.start_line) == ("foo", 3)


def test_parse_words_keeps_quotes_and_escapes() -> None:
    assert parse_words('a \'b c\' "d \\" e" f\\ g', "\\") == ["a", "'b c'", '"d \\" e"', "f\\ g"]
