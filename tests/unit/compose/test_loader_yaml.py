"""YAML 1.2 parsing: scalars keep their 1.2 meaning, anchors resolve, duplicates are errors."""

from __future__ import annotations

import pytest

from dockyard.compose.loader import ComposeFileError
from dockyard.compose.loader.yaml12 import parse_yaml

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("22:22", "22:22"),  # YAML 1.1 reads a sexagesimal 1342
        ("yes", "yes"),  # YAML 1.1 reads True
        ("on", "on"),
        ("0777", 777),  # YAML 1.2 core: decimal, not octal
        ("0o17", 15),
        ("true", True),
        ("1.5", 1.5),
        ("~", None),
        ("2001-01-01", "2001-01-01"),  # no timestamp type in the 1.2 core schema
        ("'0777'", "0777"),
    ],
)
def test_scalars_have_yaml_1_2_meanings(text: str, value: object) -> None:
    assert parse_yaml(f"a: {text}\n", "f.yml") == {"a": value}


def test_mapping_keys_are_the_text_written() -> None:
    assert parse_yaml("TRUE: 1\n1: 2\nnull: 3\n0777: 4\n", "f.yml") == {
        "TRUE": 1,
        "1": 2,
        "null": 3,
        "0777": 4,
    }


def test_anchors_aliases_and_merge_keys() -> None:
    text = (
        "base: &base {image: x, environment: {A: '1'}}\n"
        "web:\n"
        "  <<: *base\n"
        "  image: y\n"
        "list: [&item one, *item]\n"
    )
    assert parse_yaml(text, "f.yml") == {
        "base": {"image": "x", "environment": {"A": "1"}},
        "web": {"image": "y", "environment": {"A": "1"}},
        "list": ["one", "one"],
    }


def test_duplicate_key_is_an_error_naming_file_and_line() -> None:
    with pytest.raises(ComposeFileError) as err:
        parse_yaml("services:\n  web: {}\n  web: {}\n", "/p/compose.yml")
    assert err.value.file == "/p/compose.yml"
    assert "line 3" in str(err.value)
    assert 'duplicate key "web"' in str(err.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("a: [1\n", "expected ',' or ']'"), ("a: *nope\n", "undefined alias"), ("a: b: c\n", "")],
)
def test_syntax_errors_name_the_file(text: str, problem: str) -> None:
    with pytest.raises(ComposeFileError) as err:
        parse_yaml(text, "/p/compose.yml")
    assert str(err.value).startswith("/p/compose.yml: yaml: line ")
    assert problem in str(err.value)
