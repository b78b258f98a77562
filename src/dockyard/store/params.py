"""Parse a v2 keys request the way etcd 3.4 does (`v2http/client.go` parseKeyRequest).

Go's `Request.ParseForm` decides where parameters come from: the URL query always; the body
only for PUT, POST and PATCH with `Content-Type: application/x-www-form-urlencoded`; body values
first, so the body beats the query; the first value of a repeated name wins. Then etcd checks
the parameters in a fixed order and the first error wins (see `parse_key_request`). Request
errors carry index 0 and never touch the store. Pure: no I/O (the clock reading comes in).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from dockyard.store.errors import RequestError

MAX_FORM_BYTES = 10 << 20  # Go's http.maxPostMemory for url-encoded bodies
_UINT = re.compile(r"[0-9]+\Z")
_UINT64_MAX = 2**64 - 1
_TRUE = frozenset(("1", "t", "T", "TRUE", "true", "True"))
_FALSE = frozenset(("0", "f", "F", "FALSE", "false", "False"))
_HEX = frozenset("0123456789abcdefABCDEF")


def _per_byte_replace(error: UnicodeError) -> tuple[str, int]:
    # Go's JSON encoder replaces each invalid byte with U+FFFD; Python's "replace" would
    # collapse a truncated sequence into one.
    assert isinstance(error, UnicodeDecodeError)
    return "\ufffd" * (error.end - error.start), error.end


codecs.register_error("dockyard-per-byte", _per_byte_replace)


def go_string(raw: bytes) -> str:
    return raw.decode("utf-8", "dockyard-per-byte")


class FormError(Exception):
    """Go's url.ParseQuery error text (etcd reports it as cause of error 210)."""


def _go_quote(s: str) -> str:
    """Go's strconv.Quote: invalid UTF-8 bytes (surrogates here) as \\xNN."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in '"\\':
            out.append("\\" + ch)
        elif code < 0x20 or code == 0x7F:
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch, f"\\x{code:02x}"))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _unescape(s: str, plus_is_space: bool) -> str:
    """Go's url.QueryUnescape: strict %XX, '+' as space."""
    if s.isascii() and "%" not in s and "+" not in s:
        return s  # nothing to decode (the common case: value=hello)
    i = s.find("%")
    while i != -1:
        if i + 2 >= len(s) or s[i + 1] not in _HEX or s[i + 2] not in _HEX:
            raise FormError(f"invalid URL escape {_go_quote(s[i : i + 3])}")
        i = s.find("%", i + 3)
    if plus_is_space:
        s = s.replace("+", " ")
    # Raw bytes of the body arrive as surrogates; take them back as the bytes they were.
    return go_string(unquote_to_bytes(s.encode("utf-8", "surrogateescape")))


def parse_query(query: str, into: dict[str, list[str]]) -> FormError | None:
    """Go 1.19 url.ParseQuery: keeps going after errors, returns the first."""
    first: FormError | None = None
    for part in query.split("&"):
        if not part:
            continue
        if ";" in part:  # Go 1.17+: a semicolon anywhere in a pair is an error
            first = first or FormError("invalid semicolon separator in query")
            continue
        key, _, value = part.partition("=")
        try:
            name = _unescape(key, True)
            val = _unescape(value, True)
        except FormError as e:
            first = first or e
            continue
        into.setdefault(name, []).append(val)
    return first


def parse_form(
    method: str, query: str, content_type: str | None, body: bytes
) -> dict[str, list[str]]:
    """Go's ParseForm: body values (if any) first, then the query's. Raises FormError."""
    form: dict[str, list[str]] = {}
    if not query and not body:
        return form
    error: FormError | None = None
    if method in ("POST", "PUT", "PATCH") and content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media == "application/x-www-form-urlencoded":
            if len(body) > MAX_FORM_BYTES:
                error = FormError("http: POST too large")
            else:
                error = parse_query(body.decode("utf-8", "surrogateescape"), form)
    query_error = parse_query(query, form)
    error = error or query_error
    if error is not None:
        raise error
    return form


@dataclass(frozen=True, slots=True)
class KeyRequest:
    method: str
    key: str  # cleaned absolute user path ("/" for the root)
    value: str
    has_value: bool
    dir: bool
    prev_value: str | None
    prev_index: int
    prev_exist: bool | None
    wait: bool
    wait_index: int
    recursive: bool
    sorted: bool
    quorum: bool
    stream: bool
    refresh: bool | None
    ttl_s: int | None
    no_value_on_success: bool


def _first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _uint(raw: str | None) -> int | None:
    if raw is None:
        return 0
    if not _UINT.match(raw):
        return None
    value = int(raw)
    return value if value <= _UINT64_MAX else None


def _bool(raw: str | None) -> bool | None:
    if raw is None:
        return False
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    return None


def expire_ns_for(ttl_s: int, now_ns: int) -> int:
    """now + time.Duration(ttl)*time.Second, with Go's int64 wrap-around for huge ttls."""
    duration = (ttl_s * 1_000_000_000) & (2**64 - 1)
    if duration >= 2**63:
        duration -= 2**64
    return now_ns + duration


def _plain_request(method: str, key: str, value: str, has_value: bool) -> KeyRequest:
    """A request with at most a value: every other field has its default."""
    return KeyRequest(
        method,
        key,
        value,
        has_value,
        False,
        None,
        0,
        None,
        False,
        0,
        False,
        False,
        False,
        False,
        None,
        None,
        False,
    )


def parse_key_request(method: str, key: str, form: dict[str, list[str]]) -> KeyRequest:
    """etcd's checks, in etcd's order (the first failure wins). Raises RequestError."""

    if not form:
        # No parameters at all (most GETs): every field has its default.
        return _plain_request(method, key, "", False)

    if len(form) == 1 and "value" in form:
        # Only a value (the common PUT): what the checks below give for it, without them.
        return _plain_request(method, key, form["value"][0], True)

    def bad(code: int, cause: str) -> RequestError:
        return RequestError(cause, 0, code)

    prev_index = _uint(_first(form, "prevIndex"))
    if prev_index is None:
        raise bad(203, 'invalid value for "prevIndex"')
    wait_index = _uint(_first(form, "waitIndex"))
    if wait_index is None:
        raise bad(203, 'invalid value for "waitIndex"')
    flags: dict[str, bool] = {}
    for name in ("recursive", "sorted", "wait", "dir", "quorum", "stream"):
        parsed = _bool(_first(form, name))
        if parsed is None:
            raise bad(209, f'invalid value for "{name}"')
        flags[name] = parsed
    if flags["wait"] and method != "GET":
        raise bad(209, '"wait" can only be used with GET requests')
    prev_value = _first(form, "prevValue")
    if prev_value is not None and prev_value == "":
        raise bad(201, '"prevValue" cannot be empty')
    no_value = _bool(_first(form, "noValueOnSuccess"))
    if no_value is None:
        raise bad(209, 'invalid value for "noValueOnSuccess"')
    ttl_raw = _first(form, "ttl")
    ttl_s: int | None = None
    if ttl_raw:
        ttl_s = _uint(ttl_raw)
        if ttl_s is None:
            raise bad(202, 'invalid value for "ttl"')
    prev_exist: bool | None = None
    if "prevExist" in form:
        prev_exist = _bool(_first(form, "prevExist"))
        if prev_exist is None:
            raise bad(209, "invalid value for prevExist")
    refresh: bool | None = None
    value = _first(form, "value")
    if "refresh" in form:
        refresh = _bool(_first(form, "refresh"))
        if refresh is None:
            raise bad(209, "invalid value for refresh")
        if refresh:
            if value:
                raise bad(211, "A value was provided on a refresh")
            if ttl_s is None:
                raise bad(212, "No TTL value set")
    return KeyRequest(
        method,
        key,
        value or "",
        value is not None,
        flags["dir"],
        prev_value,
        prev_index,
        prev_exist,
        flags["wait"],
        wait_index,
        flags["recursive"],
        flags["sorted"],
        flags["quorum"],
        flags["stream"],
        refresh,
        ttl_s,
        no_value,
    )
