"""etcd v2 wire JSON: events, nodes and errors rendered byte-for-byte as etcd 3.4 does.

Go's `encoding/json` decides the details: field order as declared, `omitempty` everywhere,
`<`, `>`, `&`, U+2028 and U+2029 escaped, control characters other than \\n \\r \\t as \\u00XX,
and `json.Encoder` adds a trailing newline. Wire names (camelCase) live only here and in the
HTTP layer. Pure: no I/O.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from dockyard.store.errors import StoreError
from dockyard.store.tree import Event, Node, NodeValue, is_hidden_name, ttl_seconds

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_GO_SPECIAL = re.compile("[<>&\u2028\u2029]")
# Python writes \b and \f as short escapes; Go writes \u0008 and \u000c. Match only escapes
# that are not themselves an escaped backslash followed by a letter.
_SHORT_BF = re.compile(r"(?<!\\)((?:\\\\)*)\\([bf])")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


_SURROGATE = re.compile("[\ud800-\udfff]")


def go_json(obj: Any) -> str:
    text = _encode(obj)
    if not text.isascii() and _SURROGATE.search(text):
        text = _SURROGATE.sub("\ufffd", text)  # invalid UTF-8 comes out as U+FFFD in Go
    if _GO_SPECIAL.search(text):
        text = _GO_SPECIAL.sub(lambda m: _GO_ESCAPES[m.group(0)], text)
    if "\\b" in text or "\\f" in text:
        text = _SHORT_BF.sub(
            lambda m: m.group(1) + ("\\u0008" if m.group(2) == "b" else "\\u000c"), text
        )
    return text


def rfc3339_nano(unix_ns: int) -> str:
    """Go's time.RFC3339Nano in UTC: fractional seconds with trailing zeros trimmed."""
    seconds, nanos = divmod(unix_ns, 1_000_000_000)
    stamp = (_EPOCH + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        stamp += "." + f"{nanos:09d}".rstrip("0")
    return stamp + "Z"


def _strip_root(key: str) -> str:
    return "" if key == "/" else key


def _node_text(n: NodeValue) -> str:
    """An event's node as etcd writes it (fields in Go's order, omitempty), the text built
    directly: every write's answer renders one or two nodes, and the generic encoder walking
    dicts cost more than the rest of the answer. Go's escapes are local to each string
    literal, so escaping the two strings alone gives what escaping the whole document
    would (tests/unit/store/test_v2json.py checks it against that)."""
    parts = []
    if n.key != "/":
        parts.append('"key":' + go_json(n.key))
    if n.value is not None:
        parts.append('"value":' + go_json(n.value))
    if n.dir:
        parts.append('"dir":true')
    if n.expire_ns is not None:
        parts.append(f'"expiration":"{rfc3339_nano(n.expire_ns)}"')
        if n.ttl:
            parts.append(f'"ttl":{n.ttl}')
    if n.modified_index:
        parts.append(f'"modifiedIndex":{n.modified_index}')
    if n.created_index:
        parts.append(f'"createdIndex":{n.created_index}')
    return "{" + ",".join(parts) + "}"


def event_body(event: Event, no_value: bool = False) -> bytes:
    if no_value and event.action in ("set", "compareAndSwap", "create", "update"):
        return f'{{"action":"{event.action}"}}\n'.encode()
    cached = event.rendered.get("json")
    if cached is None:
        text = f'{{"action":{go_json(event.action)},"node":{_node_text(event.node)}'
        if event.prev_node is not None:
            text += f',"prevNode":{_node_text(event.prev_node)}'
        cached = event.rendered["json"] = (text + "}\n").encode()
    return cached


def live_node_json(
    node: Node, recursive: bool, sorted_: bool, now_ns: int, top: bool
) -> dict[str, Any]:
    """A node as GET shows it; `top` lists a dir's direct children even when not recursive."""
    out: dict[str, Any] = {}
    key = _strip_root(node.key)
    if key:
        out["key"] = key
    children = node.children
    if children is None:
        out["value"] = node.value
    else:
        out["dir"] = True
    if node.expire_ns is not None:
        out["expiration"] = rfc3339_nano(node.expire_ns)
        ttl = ttl_seconds(node.expire_ns, now_ns)
        if ttl:
            out["ttl"] = ttl
    if children and (top or recursive):
        items = [child for name, child in children.items() if not is_hidden_name(name)]
        if items:
            if sorted_:
                items.sort(key=lambda child: child.key.encode())
            out["nodes"] = [
                live_node_json(child, recursive, sorted_, now_ns, False) for child in items
            ]
    if node.modified_index:
        out["modifiedIndex"] = node.modified_index
    if node.created_index:
        out["createdIndex"] = node.created_index
    return out


def get_body(node: Node, recursive: bool, sorted_: bool, now_ns: int) -> bytes:
    if node.children is None:
        if node.expire_ns is None:
            # The most common read: a permanent file. Its body only changes when the node
            # does, and the tree resets the cache then.
            cached = node.render_cache
            if cached is None:
                out = live_node_json(node, False, False, now_ns, True)
                cached = node.render_cache = (
                    go_json({"action": "get", "node": out}) + "\n"
                ).encode()
            return cached
        out = live_node_json(node, False, False, now_ns, True)
    else:
        out = live_node_json(node, recursive, sorted_, now_ns, True)
    return (go_json({"action": "get", "node": out}) + "\n").encode()


def error_body(error: StoreError) -> bytes:
    out: dict[str, Any] = {"errorCode": error.code, "message": error.message}
    if error.cause:
        out["cause"] = error.cause
    out["index"] = error.index
    return (go_json(out) + "\n").encode()
