"""Word expansion as buildkit's shell/lex.go: every expansion form, quoting, escapes."""

from __future__ import annotations

import pytest

from dockyard.engine.images.build.shell_lex import LexError, ShellLex, env_map

pytestmark = pytest.mark.unit

LEX = ShellLex()
ENV = env_map(["A=alpha", "EMPTY=", "SP=two words", "PATH=/bin"])


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("$A", "alpha"),
        ("${A}", "alpha"),
        ("x${A}y", "xalphay"),
        ("$NOPE", ""),
        ("$", "$"),
        ("a$", "a$"),
        ("${A:-w}", "alpha"),
        ("${NOPE:-w}", "w"),
        ("${EMPTY:-w}", "w"),
        ("${EMPTY-w}", ""),
        ("${NOPE-w}", "w"),
        ("${A:+w}", "w"),
        ("${EMPTY:+w}", ""),
        ("${EMPTY+w}", "w"),
        ("${NOPE+w}", ""),
        ("${A:?msg}", "alpha"),
        ("${NOPE:-$A}", "alpha"),
        ("'$A'", "$A"),
        ('"$A"', "alpha"),
        ('"a \\"q\\" \\$A \\x"', 'a "q" $A \\x'),
        ("\\$A", "$A"),
        ("a\\ b", "a b"),
        ("trailing\\", "trailing"),
        ("$1x", "x"),
        ("${SP}", "two words"),
    ],
)
def test_process_word(word: str, expected: str) -> None:
    assert LEX.process_word(word, ENV) == expected


def test_process_words_splits_after_expansion_but_not_inside_quotes() -> None:
    assert LEX.process_words("$SP 'x y' \"$SP\"", ENV) == ["two", "words", "x y", "two words"]
    assert LEX.process_words("80 443", ENV) == ["80", "443"]


def test_backtick_escape_token() -> None:
    lex = ShellLex("`")
    assert lex.process_word("a`$A", ENV) == "a$A"
    assert lex.process_word("c:\\dir", ENV) == "c:\\dir"


def test_the_last_definition_wins() -> None:
    assert LEX.process_word("$X", env_map(["X=1", "X=2"])) == "2"


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("${NOPE:?}", 'failed to process "${NOPE:?}": NOPE: is not allowed to be unset'),
        ("${EMPTY:?}", 'failed to process "${EMPTY:?}": EMPTY: is not allowed to be empty'),
        ("${NOPE?custom}", 'failed to process "${NOPE?custom}": NOPE: custom'),
        ("${A", "failed to process \"${A\": syntax error: missing '}'"),
        ("${}", 'failed to process "${}": syntax error: bad substitution'),
        ("${A:x}", 'failed to process "${A:x}": unsupported modifier (:x) in substitution'),
        ("'open", "unexpected end of statement while looking for matching single-quote"),
        ('"open', "unexpected end of statement while looking for matching double-quote"),
    ],
)
def test_errors_carry_buildkits_messages(word: str, message: str) -> None:
    with pytest.raises(LexError) as caught:
        LEX.process_word(word, ENV)
    assert message in str(caught.value)
