"""`.dockerignore` as moby's patternmatcher: the documented examples and exceptions."""

from __future__ import annotations

import pytest

from dockyard.engine.images.build.dockerignore import (
    IgnoreMatcher,
    PatternError,
    read_dockerignore,
)

pytestmark = pytest.mark.unit


def matcher(text: str) -> IgnoreMatcher:
    return IgnoreMatcher.from_patterns(read_dockerignore(text))


def test_reading_trims_skips_comments_and_cleans() -> None:
    text = "# comment\n\n  *.md  \n/abs/path\n!  keep.md\n./a/../b\n"
    assert read_dockerignore(text) == ["*.md", "abs/path", "!keep.md", "b"]


@pytest.mark.parametrize(
    ("pattern", "path", "excluded"),
    [
        # docs.docker.com "dockerignore" examples.
        ("*/temp*", "somedir/temporary.txt", True),
        ("*/temp*", "somedir/temp", True),
        ("*/temp*", "temp", False),
        ("*/*/temp*", "somedir/subdir/temporary.txt", True),
        ("*/*/temp*", "somedir/temporary.txt", False),
        ("temp?", "tempa", True),
        ("temp?", "tempab", False),
        ("**/*.go", "a/b/c.go", True),
        ("**/*.go", "c.go", True),
        ("**", "anything/at/all", True),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("node_modules", "node_modules/pkg/index.js", True),
        ("*.log", "dir/app.log", False),
        ("[ab].txt", "a.txt", True),
        ("[ab].txt", "c.txt", False),
        ("file.txt", "fileatxt", False),
    ],
)
def test_patterns(pattern: str, path: str, excluded: bool) -> None:
    assert matcher(pattern).excluded(path) is excluded


def test_exceptions_reinclude_and_order_matters() -> None:
    m = matcher("*.md\n!README*.md\nREADME-secret.md\n")
    assert m.excluded("CHANGES.md")
    assert not m.excluded("README.md")
    assert m.excluded("README-secret.md")
    m2 = matcher("*.md\nREADME-secret.md\n!README*.md\n")
    assert not m2.excluded("README-secret.md")


def test_descend_only_into_directories_an_exception_reaches() -> None:
    m = matcher("docs\n!docs/keep.txt\n")
    assert m.excluded("docs")
    assert m.should_descend("docs")
    assert not m.excluded("docs/keep.txt")
    assert m.excluded("docs/other.txt")
    assert not matcher("build\n").should_descend("build")


def test_a_lone_exclamation_mark_is_refused() -> None:
    with pytest.raises(PatternError, match="illegal exclusion pattern"):
        IgnoreMatcher.from_patterns(["!"])
