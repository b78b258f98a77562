"""YAML 1.2 parsing of Compose files into plain Python values.

Rules (compose-go parses with a YAML 1.2 parser; docker-compose 1.29.2 with PyYAML 1.1, whose
surprises are exactly what users hit: ``22:22`` a sexagesimal int, ``yes`` a bool, ``0777`` an
octal):

- YAML 1.2 core schema: ``22:22`` and ``yes``/``on`` stay strings, ``0777`` is decimal 777,
  ``0o17`` is octal; only ``true``/``false`` are booleans.
- Timestamps are not a type in YAML 1.2 core: ``2001-01-01`` stays the string written.
- Anchors, aliases and merge keys ``<<`` are resolved here, so ``x-*`` extension fields can be
  dropped afterwards without losing what they anchored.
- A duplicate key in a mapping is an error (YAML forbids it; compose-go refuses it too).
- Mapping keys are the text written: ``TRUE: x`` and ``1: x`` have the keys ``"TRUE"`` and
  ``"1"`` (compose-go decodes into ``map[string]any``; an environment variable named TRUE
  must not become the bool True).
- The result holds only ``dict``/``list``/``str``/``int``/``float``/``bool``/``None``.

Pure: takes text, returns values; never opens the file it names.
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode

from dockyard.compose.loader.errors import ComposeFileError

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Compose12Constructor(SafeConstructor):
    """The safe constructor, with timestamps and mapping keys kept as the text written."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, MappingNode):
            self.flatten_mapping(node)  # resolves "<<" first, so no merge key is retagged
            for key_node, _ in node.value:
                if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG:
                    key_node.tag = _STR_TAG
        return super().construct_mapping(node, deep)

    def construct_yaml_timestamp(self, node: Any, values: Any = None) -> Any:
        if isinstance(node, ScalarNode):
            return self.construct_scalar(node)
        return super().construct_yaml_timestamp(node, values)


_Compose12Constructor.add_constructor(
    "tag:yaml.org,2002:timestamp", _Compose12Constructor.construct_yaml_timestamp
)


def _parser() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.version = (1, 2)
    yaml.allow_duplicate_keys = False
    yaml.Constructor = _Compose12Constructor
    return yaml


def parse_yaml(text: str, file: str) -> Any:
    """Parse one YAML document; a syntax error or duplicate key names ``file`` and the line."""
    try:
        return _parser().load(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = err.problem or err.context or "invalid YAML"
        raise ComposeFileError(f"yaml: {where}{problem}", file=file) from None
    except YAMLError as err:
        raise ComposeFileError(f"yaml: {err}", file=file) from None
