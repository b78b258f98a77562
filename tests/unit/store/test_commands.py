"""The log command codec: its bytes are the WAL's and the raft log's, so the fast paths must
write exactly what the generic JSON encoder wrote (entries on disk and from older members
decode alike), read it back, and refuse anything else with the errors the appliers catch."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from dockyard.store import commands as c

SEED = 20261129
_ALPHABET = ["a", "/", '"', "\\", "\x00", "\x1f", "é", "\u2028", "日", "\U0001f600", "<", " "]
_GENERIC = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 10)))


def _commands(rng: random.Random) -> list[object]:
    expire = rng.choice([None, 0, 1_700_000_000_123_456_789])
    return [
        c.SetKey("/" + _text(rng), _text(rng), rng.random() < 0.5, expire, rng.random() < 0.5),
        c.CreateKey("/" + _text(rng), _text(rng), False, expire),
        c.CreateInOrderKey("/" + _text(rng), _text(rng), True, expire),
        c.UpdateKey("/" + _text(rng), _text(rng), expire, True),
        c.CompareAndSwap("/k", _text(rng), rng.choice([None, _text(rng)]), 2**63, expire),
        c.DeleteKey("/" + _text(rng), True, False),
        c.CompareAndDelete("/k", None, 7),
        c.ExpireKeys(1_700_000_000_000_000_001),
        c.Bootstrap("8e9e05c52164694d", _text(rng), ("http://a:2380",), ("http://a:2379",)),
        c.Noop(),
    ]


def _generic_bytes(command: object) -> bytes:
    fields = {f.name: getattr(command, f.name) for f in dataclasses.fields(command)}  # type: ignore[arg-type]
    fields["t"] = type(command).__name__
    return _GENERIC(fields).encode()


def test_encoding_is_the_generic_json_and_decodes_back() -> None:
    rng = random.Random(SEED)
    for _ in range(300):
        for command in _commands(rng):
            encoded = c.encode_command(command)
            assert encoded == _generic_bytes(command), f"seed {SEED}: {command!r}"
            assert c.decode_command(encoded) == command, f"seed {SEED}: {command!r}"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"{",
        b"[1]",
        b"null",
        b'{"t":"SetKey","key":"/a","value":"b"} trailing',
        b"\xff\xfe",
        b'{"t":"NoSuchCommand"}',
        b'{"t":"SetKey","key":"/a","value":"b","unknown":1}',
        b'{"key":"/a"}',
    ],
)
def test_junk_is_refused_with_an_error_the_appliers_catch(payload: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        c.decode_command(payload)


def test_an_unencodable_field_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        c.encode_command(c.SetKey("/a", object()))  # type: ignore[arg-type]
