"""Commands: the entries of the store's ordered log.

Every change to the store, whether a client write, a TTL expiry or an auth change, is a
command appended to one ordered log (the WAL today, the Raft log later) and then applied,
in log order, to the pure state machines (`tree.KeyTree`, `auth.AuthState`). Applying a
command must depend only on the state and the command, never on a clock or randomness, so
every command carries the times it needs (absolute expiry deadlines in Unix nanoseconds,
the leader's clock for expiry).

Encoding is JSON with a `"t"` tag naming the command class; other modules register their
command classes with `register` (auth does). Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import json
import json.encoder
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

_REGISTRY: dict[str, type[Any]] = {}

T = TypeVar("T")


def register(cls: type[T]) -> type[T]:
    """Class decorator: make a frozen dataclass encodable as a log command."""
    _REGISTRY[cls.__name__] = cls
    return cls


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}
# The C scanner `json.loads` ends in (an attribute typeshed does not declare).
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _not_json(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# What `JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode` runs for a dict, made
# once: `encode` builds this C encoder on every call, which cost a third of encoding a
# command. No cycle check (commands are flat). Not in typeshed, hence the ignore.
_encode_chunks: Callable[[Any, int], Sequence[str]] = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, _not_json, json.encoder.encode_basestring, None, ":", ",", False, False, True
)


def _encode_dict(fields: dict[str, Any]) -> str:
    return "".join(_encode_chunks(fields, 0))


def encode_command(command: object) -> bytes:
    cls = type(command)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    fields = {name: getattr(command, name) for name in names}
    fields["t"] = cls.__name__
    return _encode_dict(fields).encode()


def decode_command(payload: bytes) -> object:
    """The command `encode_command` made; ValueError, KeyError or TypeError for anything
    else. Every member decodes every replicated entry, so this is a hot path: the C scanner
    on the text directly (`json.loads` on bytes first sniffs the encoding in Python, which
    cost more than the parse)."""
    text = payload.decode()
    try:
        fields, end = _scan(text, 0)
    except StopIteration:
        raise ValueError("a command is not JSON") from None
    if end != len(text) or type(fields) is not dict:
        raise ValueError("a command is not one JSON object")
    cls = _REGISTRY[fields.pop("t")]
    for name, value in fields.items():
        if type(value) is list:
            fields[name] = tuple(value)
    return cls(**fields)


# --- key tree commands -------------------------------------------------------------------
# `expire_ns` is an absolute deadline in Unix nanoseconds, or None for a permanent key. It is
# computed when the request is parsed (etcd measures ttl from then), so apply is deterministic.


@register
@dataclass(frozen=True, slots=True)
class SetKey:
    """PUT without conditions: create or replace (a replace is a new node: new createdIndex)."""

    key: str
    value: str
    dir: bool = False
    expire_ns: int | None = None
    refresh: bool = False


@register
@dataclass(frozen=True, slots=True)
class CreateKey:
    """PUT prevExist=false: create; fails with 105 if the key exists."""

    key: str
    value: str
    dir: bool = False
    expire_ns: int | None = None
    refresh: bool = False


@register
@dataclass(frozen=True, slots=True)
class CreateInOrderKey:
    """POST: create `<key>/<new index, %020d>`."""

    dir_key: str
    value: str
    dir: bool = False
    expire_ns: int | None = None


@register
@dataclass(frozen=True, slots=True)
class UpdateKey:
    """PUT prevExist=true: update an existing key; fails with 100 if missing."""

    key: str
    value: str
    expire_ns: int | None = None
    refresh: bool = False


@register
@dataclass(frozen=True, slots=True)
class CompareAndSwap:
    """PUT with prevValue and/or prevIndex (prev_index 0 means not given)."""

    key: str
    value: str
    prev_value: str | None
    prev_index: int
    expire_ns: int | None = None
    refresh: bool = False


@register
@dataclass(frozen=True, slots=True)
class DeleteKey:
    key: str
    dir: bool = False
    recursive: bool = False


@register
@dataclass(frozen=True, slots=True)
class CompareAndDelete:
    key: str
    prev_value: str | None
    prev_index: int


@register
@dataclass(frozen=True, slots=True)
class ExpireKeys:
    """The leader's clock reading: delete every key whose deadline is at or before it."""

    now_ns: int


@register
@dataclass(frozen=True, slots=True)
class Bootstrap:
    """First entry of a new store: the internal membership writes etcd keeps in its v2 store
    (raftAttributes, attributes, cluster version), so that indexes match etcd's."""

    member_id: str
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    cluster_version: str = "3.4.0"


@register
@dataclass(frozen=True, slots=True)
class AddMember:
    """A member added at runtime (a conf-change entry): etcd writes its raftAttributes; it
    publishes its name and client URLs (`Bootstrap`) once it runs."""

    member_id: str
    peer_urls: tuple[str, ...]


@register
@dataclass(frozen=True, slots=True)
class RemoveMember:
    """A member removed at runtime: etcd deletes its member keys and records the ID under
    removed_members, so that it can never rejoin under the same ID."""

    member_id: str


@register
@dataclass(frozen=True, slots=True)
class UpdateMember:
    """New peer URLs for a member (etcd's UpdateMember: its raftAttributes rewritten)."""

    member_id: str
    peer_urls: tuple[str, ...]


@register
@dataclass(frozen=True, slots=True)
class Noop:
    """An entry that changes nothing: a read barrier for linearizable (quorum) reads."""
