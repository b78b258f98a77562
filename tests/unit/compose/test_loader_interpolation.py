"""Interpolation: every form compose-go supports, its errors and warnings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.compose.loader import ComposeFileError, LoadOptions, load_config
from dockyard.compose.loader.interpolation import (
    InvalidTemplate,
    MissingRequired,
    Substitution,
    interpolate_tree,
    substitute,
)

pytestmark = pytest.mark.unit

ENV = {"SET": "value", "EMPTY": "", "PORT": "8080", "OTHER": "o"}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$SET", "value"),
        ("${SET}", "value"),
        ("pre-${SET}-post", "pre-value-post"),
        ("$SET$OTHER", "valueo"),
        ("$SET-x", "value-x"),
        ("$$SET", "$SET"),
        ("$${SET}", "${SET}"),
        ("a $ b", "a $ b"),  # a lone "$" is literal
        ("cost: 5$", "cost: 5$"),
        ("${UNSET:-def}", "def"),
        ("${EMPTY:-def}", "def"),
        ("${SET:-def}", "value"),
        ("${UNSET-def}", "def"),
        ("${EMPTY-def}", ""),
        ("${SET:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${UNSET:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("${SET:?must}", "value"),
        ("${EMPTY?must}", ""),
        ("${UNSET:-${OTHER}}", "o"),
        ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
        ("${UNSET:-a:b-c}", "a:b-c"),
        ("${UNSET:-$PORT}/x", "8080/x"),
        ("${SET}}", "value}"),
        ("${UNSET:-}", ""),
    ],
)
def test_substitution_forms(template: str, expected: str) -> None:
    result = substitute(template, ENV)
    assert result.value == expected
    assert result.unset_names == ()


def test_unset_variables_are_empty_and_reported() -> None:
    result = substitute("$NOPE:${NOPE}:${ALSO}", ENV)
    assert result.value == "::"
    assert result.unset_names == ("NOPE", "ALSO")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("${UNSET:?need it}", "required variable UNSET is missing a value: need it"),
        ("${EMPTY:?need it}", "required variable EMPTY is missing a value: need it"),
        ("${UNSET?}", "required variable UNSET is missing a value"),
        ("${UNSET?port ${PORT}}", "required variable UNSET is missing a value: port 8080"),
    ],
)
def test_required_forms(template: str, message: str) -> None:
    with pytest.raises(MissingRequired) as err:
        substitute(template, ENV)
    assert str(err.value) == message


@pytest.mark.parametrize("template", ["${", "${SET", "${}", "${1A}", "${SET!x}", "${ SET}"])
def test_invalid_templates(template: str) -> None:
    with pytest.raises(InvalidTemplate):
        substitute(template, ENV)


def test_tree_interpolates_values_not_keys() -> None:
    tree = {"services": {"$SET": {"image": "img:${SET}", "ports": ["${PORT}:80"], "n": 1}}}
    result = interpolate_tree(tree, ENV, "/p/c.yml")
    assert result.value == {
        "services": {"$SET": {"image": "img:value", "ports": ["8080:80"], "n": 1}}
    }


def load(text: str, environ: dict[str, str]) -> tuple[dict[str, object], tuple[str, ...]]:
    loaded = load_config(["/p/compose.yml"], {"/p/compose.yml": text}, LoadOptions("/p", environ))
    return loaded.config, loaded.warnings


def test_loading_interpolates_and_warns_once_per_variable() -> None:
    config, warnings = load(
        "services:\n"
        "  web:\n"
        "    image: ${REGISTRY}app:${TAG:-latest}\n"
        "    command: echo $$HOME $REGISTRY\n"
        "    ports: ['${PORT}:80']\n",
        {"PORT": "8000"},
    )
    web = config["services"]["web"]  # type: ignore[index]
    assert web == {"command": "echo $HOME ", "image": "app:latest", "ports": ["8000:80"]}
    assert warnings == ('The "REGISTRY" variable is not set. Defaulting to a blank string.',)


def test_required_error_names_variable_file_service_and_key() -> None:
    with pytest.raises(ComposeFileError) as err:
        load("services:\n  web:\n    image: ${IMAGE:?set IMAGE}\n", {})
    assert (err.value.file, err.value.service, err.value.key) == (
        "/p/compose.yml",
        "web",
        "services.web.image",
    )
    assert str(err.value) == (
        "/p/compose.yml: error while interpolating services.web.image: "
        "required variable IMAGE is missing a value: set IMAGE"
    )


def test_invalid_format_error_names_the_key_path_with_list_index() -> None:
    with pytest.raises(ComposeFileError) as err:
        load("services:\n  web:\n    image: x\n    ports: ['80', '${P']\n", {})
    assert err.value.key == "services.web.ports.1"
    assert "invalid interpolation format for services.web.ports.1" in str(err.value)
    assert "escape any $ with another $" in str(err.value)


def test_interpolation_happens_before_validation() -> None:
    # "${CPUS:-0.5}" is a string when validated: "cpus" takes a number or a string.
    config, _ = load("services:\n  web:\n    image: x\n    cpus: ${CPUS:-0.5}\n", {})
    assert config["services"] == {"web": {"cpus": "0.5", "image": "x"}}


@given(st.text())
def test_escaped_text_comes_back_verbatim(text: str) -> None:
    # "$$" is the escape for "$": any text, escaped, survives substitution unchanged.
    assert substitute(text.replace("$", "$$"), ENV).value == text


@given(st.text(alphabet=st.characters(blacklist_characters="$")))
def test_text_without_dollar_is_untouched(text: str) -> None:
    assert substitute(text, {}) == Substitution(text, ())
