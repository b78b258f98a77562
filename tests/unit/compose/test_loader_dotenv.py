"""``.env``/``env_file`` syntax (compose-go dotenv) and the interpolation environment."""

from __future__ import annotations

import pytest

from dockyard.compose.loader import ComposeFileError, project_environment
from dockyard.compose.loader.dotenv import parse_dotenv

pytestmark = pytest.mark.unit


def parse(text: str, lookup: dict[str, str] | None = None) -> dict[str, str]:
    return parse_dotenv(text, "/p/.env", lookup or {})


def test_basic_lines_comments_and_blank_lines() -> None:
    text = "# a comment\n\nA=1\n   # indented comment\nB = 2\nexport C=3\nD: yaml style\n"
    assert parse(text) == {"A": "1", "B": "2", "C": "3", "D": "yaml style"}


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("V=a=b=c", "a=b=c"),
        ("V=", ""),
        ("V=  spaced  ", "spaced"),
        ("V=value # comment", "value"),
        ("V=value#not-a-comment", "value#not-a-comment"),
        ("V='single $HOME \\n # kept'", "single $HOME \\n # kept"),
        ("V='it\\'s'", "it's"),
        ('V="double\\nline\\t\\"q\\" \\\\"', 'double\nline\t"q" \\'),
        ('V="# not a comment"', "# not a comment"),
        ('V="a" # trailing comment', "a"),
        ('V="\\$HOME"', "$HOME"),
        ("V=$$HOME", "$HOME"),
        ("V=${HOME}/x", "/home/u/x"),
        ('V="${HOME}/x"', "/home/u/x"),
        ("V=${NOPE:-fallback}", "fallback"),
        ("V=\\n", "\\n"),  # escapes are a double-quote feature only
        ("export   V=exported", "exported"),
        ("V.dotted-key=1", None),
    ],
)
def test_values(line: str, value: str | None) -> None:
    result = parse(line + "\n", {"HOME": "/home/u"})
    if value is None:
        assert result == {"V.dotted-key": "1"}
    else:
        assert result == {"V": value}


def test_multi_line_double_quoted_value() -> None:
    assert parse('CERT="line1\nline2"\nNEXT=1\n') == {"CERT": "line1\nline2", "NEXT": "1"}


def test_variables_refer_to_earlier_keys_but_the_environment_wins() -> None:
    text = "A=from-file\nB=${A}-b\nC=${SHELL_VAR}\nSHELL_VAR=file\nD=$SHELL_VAR\n"
    assert parse(text, {"A": "from-env", "SHELL_VAR": "env"}) == {
        "A": "from-file",
        "B": "from-env-b",
        "C": "env",
        "SHELL_VAR": "file",
        "D": "env",
    }


def test_bare_key_is_inherited_or_dropped() -> None:
    assert parse("PRESENT\nABSENT\nX=1\n", {"PRESENT": "p"}) == {"PRESENT": "p", "X": "1"}


def test_utf8_bom_is_ignored() -> None:
    assert parse("\ufeffA=1\n") == {"A": "1"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("OK=1\nBAD KEY=1\n", "line 2: key cannot contain a space"),
        ("OK=1\n\nA$B=1\n", "line 3: unexpected character '$' in variable name 'A$B=1'"),
        ('A="unterminated\nB=2\n', 'line 1: unterminated quoted value "unterminated'),
        ("A=${B\n", "line 1: "),
        ("A=${B:?B is required}\n", "line 1: required variable B is missing a value"),
    ],
)
def test_bad_lines_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ComposeFileError) as err:
        parse(text)
    assert err.value.file == "/p/.env"
    assert message in str(err.value)
    assert str(err.value).startswith("/p/.env: line ")


def test_process_environment_overrides_env_files() -> None:
    environ = project_environment(
        {"SHELL": "shell", "BOTH": "shell"},
        [("/p/.env", "BOTH=file\nONLY_FILE=f\nUSES=${SHELL}\n")],
    )
    assert environ == {"SHELL": "shell", "BOTH": "shell", "ONLY_FILE": "f", "USES": "shell"}


def test_later_env_file_wins_and_sees_earlier_ones() -> None:
    environ = project_environment({}, [("/p/a.env", "A=1\nB=1\n"), ("/p/b.env", "B=2\nC=${A}\n")])
    assert environ == {"A": "1", "B": "2", "C": "1"}
