"""The Dockerfile parser (buildkit `frontend/dockerfile/parser`, as moby 20.10 vendors it).

Role: text in, a list of `Node`s out: one per instruction, with its lower-cased name, its
`--flags`, its arguments split the way the instruction's dispatch function splits them
(JSON array, whitespace-delimited words, name/value pairs or the raw rest of the line), and
the first and last line it spans. Word expansion (`$VAR`) is not done here: it depends on
the build state and happens at dispatch (`shell_lex.py`).

Rules followed (parser.go):
- Parser directives (`# escape=`` ` ``) are only recognised before the first line that is
  not one (a comment, a blank line or an instruction ends them). The escape token is `\\`
  or `` ` ``.
- A line ending in the escape token (trailing blanks allowed) continues on the next line;
  comment lines and empty lines inside a continuation are skipped (the latter with
  Docker's warning).
- Unknown instructions parse (as Docker's `parseIgnore`); `instructions.py` rejects them,
  so the error names the line, as Docker's does.
- `parseJSON` decodes the first JSON value and ignores what follows, as Go's
  `json.Decoder.Decode` does.

This module is PURE: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Node", "ParseResult", "ParserError", "parse_dockerfile", "parse_words"]

_DIRECTIVE_RE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
_COMMENT_RE = re.compile(r"^#.*$")
_WHITESPACE_RE = re.compile(r"[\t\v\f\r ]+")
_UTF8_BOM = "\ufeff"
NOT_STRING_ARRAY = "when using JSON array syntax, arrays must be comprised of strings only"


class ParserError(ValueError):
    """A Dockerfile the parser rejects; `line` is 1-based (0 when unknown)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Node:
    """One instruction. `args` are the instruction's words before expansion; `json` says
    they came from a JSON array (exec form). For ENV, LABEL and ARG `args` alternate name
    and value; for ARG a missing value is None. ONBUILD keeps its trigger in `sub`."""

    instruction: str  # lower case: "from", "run"...
    original: str  # the whole (joined) line, as history and errors show it
    flags: tuple[str, ...] = ()
    args: tuple[str | None, ...] = ()
    json: bool = False
    sub: Node | None = None
    start_line: int = 0
    end_line: int = 0


@dataclass(frozen=True)
class ParseResult:
    nodes: tuple[Node, ...]
    escape_token: str = "\\"
    warnings: tuple[str, ...] = field(default=())


class _Directives:
    def __init__(self) -> None:
        self.escape_token = "\\"
        self.escape_seen = False
        self.complete = False
        self.continuation_re = _continuation_re("\\")

    def possible_directive(self, line: str) -> None:
        if self.complete:
            return
        match = _DIRECTIVE_RE.match(line)
        if match is None:
            self.complete = True
            return
        name, value = match.group(1).lower(), match.group(2)
        if name == "escape":
            if self.escape_seen:
                raise ParserError("only one escape parser directive can be used")
            if value not in ("`", "\\"):
                raise ParserError(f"invalid ESCAPE '{value}'. Must be ` or \\")
            self.escape_seen = True
            self.escape_token = value
            self.continuation_re = _continuation_re(value)
        elif name != "syntax":
            # Unknown directives read as comments, and end the directives.
            self.complete = True


def _continuation_re(escape: str) -> re.Pattern[str]:
    return re.compile(re.escape(escape) + r"[ \t]*$")


def _is_comment(line: str) -> bool:
    return _COMMENT_RE.match(line.lstrip(" \t")) is not None


def _trim_continuation(line: str, directives: _Directives) -> tuple[str, bool]:
    """(line without the continuation mark, whether the instruction ends here)."""
    if directives.continuation_re.search(line):
        return directives.continuation_re.sub("", line), False
    return line, True


def parse_dockerfile(text: str) -> ParseResult:
    """Parse a whole Dockerfile; raise `ParserError` with Docker's message."""
    directives = _Directives()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    if lines:
        lines[0] = lines[0].removeprefix(_UTF8_BOM)
    nodes: list[Node] = []
    warnings: list[str] = []
    index = 0
    while index < len(lines):
        raw = lines[index].rstrip("\r")
        index += 1
        start_line = index
        stripped = raw.lstrip(" \t")
        try:
            directives.possible_directive(stripped)
        except ParserError as e:
            raise ParserError(str(e), start_line) from None
        line = "" if _is_comment(stripped) else stripped
        line, ended = _trim_continuation(line, directives)
        if ended and not line.strip():
            continue
        empty_continuation = False
        while not ended and index < len(lines):
            raw = lines[index].rstrip("\r")
            index += 1
            if _is_comment(raw):
                continue
            if not raw.strip(" \t"):
                empty_continuation = True
                continue
            part, ended = _trim_continuation(raw, directives)
            line += part
        if empty_continuation:
            warnings.append("[WARNING]: Empty continuation line found in:\n    " + line)
        try:
            node = _node_from_line(line, directives.escape_token)
        except ParserError as e:
            raise ParserError(str(e), start_line) from None
        nodes.append(_with_lines(node, start_line, index))
    if warnings:
        warnings.append(
            "[WARNING]: Empty continuation lines will become errors in a future release."
        )
    if not nodes:
        raise ParserError("file with no instructions")
    return ParseResult(tuple(nodes), directives.escape_token, tuple(warnings))


def _with_lines(node: Node, start: int, end: int) -> Node:
    sub = node.sub
    if sub is not None:
        sub = _with_lines(sub, start, end)
    return Node(node.instruction, node.original, node.flags, node.args, node.json, sub, start, end)


def _node_from_line(line: str, escape: str) -> Node:
    parts = _WHITESPACE_RE.split(line.strip(), maxsplit=1)
    instruction = parts[0].lower()
    rest = parts[1] if len(parts) > 1 else ""
    flags, rest = _extract_flags(rest)
    handler = _DISPATCH.get(instruction)
    if handler is None:
        return Node(instruction, line, tuple(flags))
    args, is_json, sub = handler(rest, escape)
    return Node(instruction, line, tuple(flags), tuple(args), is_json, sub)


def _extract_flags(rest: str) -> tuple[list[str], str]:
    """Leading `--name[=value]` words (parser.go extractBuilderFlags): quotes group, the
    escape token is not special; `--` alone ends the flags."""
    flags: list[str] = []
    pos = 0
    while True:
        while pos < len(rest) and rest[pos].isspace():
            pos += 1
        if not rest.startswith("--", pos):
            return flags, rest[pos:]
        word: list[str] = []
        quote = ""
        while pos < len(rest):
            ch = rest[pos]
            if quote:
                if ch == quote:
                    quote = ""
                else:
                    word.append(ch)
            elif ch in "'\"":
                quote = ch
            elif ch.isspace():
                break
            else:
                word.append(ch)
            pos += 1
        if quote:
            raise ParserError(f"unmatched quote in flag: {rest}")
        text = "".join(word)
        if text == "--":
            return flags, rest[pos:].lstrip()
        flags.append(text)


Handler = tuple[list[str | None], bool, Node | None]


def parse_words(rest: str, escape: str) -> list[str]:
    """Split on unquoted whitespace, keeping quotes and escapes for the lexer
    (parser/line_parsers.go parseWords)."""
    words: list[str] = []
    word = ""
    in_word = False
    quote = ""
    blank_ok = False
    pos = 0
    n = len(rest)
    while pos < n:
        ch = rest[pos]
        if not in_word and not quote:
            if ch.isspace():
                pos += 1
                continue
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if pos + 1 == n:
                    pos += 1
                    continue  # an escape at the very end is dropped
                word += ch
                pos += 1
                ch = rest[pos]
            word += ch
            pos += 1
            continue
        if ch.isspace():
            if blank_ok or word:
                words.append(word)
            word, in_word, blank_ok = "", False, False
            pos += 1
            continue
        if ch in "'\"":
            quote = ch
            blank_ok = True
        elif ch == escape:
            if pos + 1 == n:
                pos += 1
                continue
            word += ch
            pos += 1
            ch = rest[pos]
        word += ch
        pos += 1
    if in_word and (blank_ok or word):
        words.append(word)
    return words


def _parse_json(rest: str) -> list[str] | None:
    """The JSON array form, or None if `rest` is not one; non-strings are an error."""
    rest = rest.lstrip()
    if not rest.startswith("["):
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(rest)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise ParserError(NOT_STRING_ARRAY)
    return list(value)


def _maybe_json(rest: str, _escape: str) -> Handler:
    if not rest:
        return [], False, None
    parsed = _parse_json(rest)
    if parsed is not None:
        return list(parsed), True, None
    return [rest], False, None


def _maybe_json_to_list(rest: str, escape: str) -> Handler:
    parsed = _parse_json(rest)
    if parsed is not None:
        return list(parsed), True, None
    return _whitespace_delimited(rest, escape)


def _whitespace_delimited(rest: str, _escape: str) -> Handler:
    if not rest:
        return [], False, None
    return list(_WHITESPACE_RE.split(rest.strip())), False, None


def _string(rest: str, _escape: str) -> Handler:
    return ([rest] if rest else []), False, None


def _name_val(key: str) -> Callable[[str, str], Handler]:
    def parse(rest: str, escape: str) -> Handler:
        words = parse_words(rest, escape)
        if not words:
            return [], False, None
        if "=" not in words[0]:
            # The old form `ENV name value…`: the value is the rest of the line.
            parts = _WHITESPACE_RE.split(rest, maxsplit=1)
            if len(parts) < 2 or not parts[1]:
                raise ParserError(f"{key} must have two arguments")
            return [parts[0], parts[1]], False, None
        args: list[str | None] = []
        for word in words:
            if "=" not in word:
                raise ParserError(
                    f"Syntax error - can't find = in {_quote(word)}. "
                    "Must be of the form: name=value"
                )
            name, _, value = word.partition("=")
            args += [name, value]
        return args, False, None

    return parse


def _name_or_name_val(rest: str, escape: str) -> Handler:
    args: list[str | None] = []
    for word in parse_words(rest, escape):
        name, sep, value = word.partition("=")
        args += [name, value if sep else None]
    return args, False, None


def _health(rest: str, escape: str) -> Handler:
    parts = rest.split(None, 1)
    if not parts:
        return [], False, None
    kind = parts[0]
    args, is_json, _ = _maybe_json(parts[1] if len(parts) > 1 else "", escape)
    return [kind, *args], is_json, None


def _sub_command(rest: str, escape: str) -> Handler:
    if not rest:
        return [], False, None
    return [], False, _node_from_line(rest, escape)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_DISPATCH: dict[str, Callable[[str, str], Handler]] = {
    "add": _maybe_json_to_list,
    "arg": _name_or_name_val,
    "cmd": _maybe_json,
    "copy": _maybe_json_to_list,
    "entrypoint": _maybe_json,
    "env": _name_val("ENV"),
    "expose": _whitespace_delimited,
    "from": _whitespace_delimited,
    "healthcheck": _health,
    "label": _name_val("LABEL"),
    "maintainer": _string,
    "onbuild": _sub_command,
    "run": _maybe_json,
    "shell": _maybe_json,
    "stopsignal": _string,
    "user": _string,
    "volume": _maybe_json_to_list,
    "workdir": _string,
}
