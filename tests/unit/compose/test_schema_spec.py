"""The declarative schema table's own invariants (schema_spec.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dockyard.compose.loader import schema_spec as spec
from dockyard.compose.loader.schema import SERVICE_KEY_TYPES

pytestmark = pytest.mark.unit


def _nodes(node: spec.Node) -> Iterator[spec.Node]:
    yield node
    if isinstance(node, spec.Array):
        yield from _nodes(node.items)
    elif isinstance(node, spec.Object):
        for sub in node.properties.values():
            yield from _nodes(sub)
        if node.entries is not None:
            yield from _nodes(node.entries)
    elif isinstance(node, spec.OneOf):
        for option in node.options:
            yield from _nodes(option)


ROOTS = [spec.SERVICE, *(node for node, _ in spec.SECTIONS.values())]


def _widened(kinds: tuple[str, ...]) -> set[str]:
    # JSON schema: an integer is a number, so "number" covers "integer" too.
    out = set(kinds)
    if spec.NUMBER in out:
        out.add(spec.INTEGER)
    return out


def test_one_of_options_are_told_apart_by_json_type() -> None:
    for root in ROOTS:
        for node in _nodes(root):
            if isinstance(node, spec.OneOf):
                seen: set[str] = set()
                for option in node.options:
                    kinds = _widened(spec.accepted_types(option))
                    assert not seen & kinds, f"ambiguous oneOf: {node}"
                    seen |= kinds


def test_enums_and_bounds_sit_on_matching_types() -> None:
    for root in ROOTS:
        for node in _nodes(root):
            if isinstance(node, spec.Scalar) and (node.enum or node.pattern is not None):
                assert node.types == (spec.STRING,)
            if isinstance(node, spec.Scalar) and (node.minimum, node.maximum) != (None, None):
                assert node.types == (spec.INTEGER,)


def test_required_keys_are_known_properties() -> None:
    for root in ROOTS:
        for node in _nodes(root):
            if isinstance(node, spec.Object):
                assert set(node.required) <= set(node.properties), node


def test_service_key_types_follow_the_table() -> None:
    assert set(SERVICE_KEY_TYPES) == set(spec.SERVICE_PROPERTIES)
    assert SERVICE_KEY_TYPES["command"] == (spec.NULL, spec.STRING, spec.ARRAY)
    assert SERVICE_KEY_TYPES["depends_on"] == (spec.ARRAY, spec.OBJECT)
    assert SERVICE_KEY_TYPES["deploy"] == (spec.OBJECT, spec.NULL)
