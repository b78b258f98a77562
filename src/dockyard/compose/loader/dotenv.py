"""``.env`` / ``--env-file`` / ``env_file:`` syntax, as compose-go's ``dotenv`` parser reads it.

Rules (compose-go ``dotenv/parser.go``, which docker compose v2 uses for all three):

- blank lines and lines whose first non-blank character is ``#`` are skipped;
- ``export KEY=VALUE`` is ``KEY=VALUE``; ``KEY: VALUE`` (YAML style) is accepted too;
- a key is letters, digits and ``_ . - [ ]``; anything else is an error naming the line;
- a bare ``KEY`` takes KEY from the lookup environment, and is dropped when unset;
- unquoted values end at the line end, lose a `` #`` comment and trailing blanks, and have
  ``${VAR}`` forms substituted (the lookup environment first, then keys defined above);
- ``'single'`` quotes are literal (only ``\\'`` is unescaped); ``"double"`` quotes expand
  ``\\n \\t \\r \\" \\\\ \\$`` escapes and then substitute variables; quoted values may span
  lines; an unterminated quote is an error naming its line;
- the value may contain ``=`` (only the first one separates).

Pure: text and a lookup mapping in, an ordered ``dict`` out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from dockyard.compose.loader.errors import ComposeFileError
from dockyard.compose.loader.interpolation import InterpolationError, substitute

_EXPORT = re.compile(r"export[ \t]+")
_KEY_CHARS = re.compile(r"[\w.\-\[\]]")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
_INLINE_BLANK = " \t\v\f\r"


class _ChainLookup(Mapping[str, str]):
    """The lookup environment first, then the keys parsed so far (compose-go's order)."""

    def __init__(self, first: Mapping[str, str], second: Mapping[str, str]) -> None:
        self._first = first
        self._second = second

    def __getitem__(self, key: str) -> str:
        if key in self._first:
            return self._first[key]
        return self._second[key]

    def __iter__(self) -> Iterator[str]:
        return iter({**self._second, **self._first})

    def __len__(self) -> int:
        return len({**self._second, **self._first})


def parse_dotenv(text: str, file: str, lookup: Mapping[str, str]) -> dict[str, str]:
    """Parse an env file; a syntax error names ``file`` and the 1-based line."""
    out: dict[str, str] = {}
    text = text.removeprefix("\ufeff")  # a UTF-8 BOM is not part of the first key
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line_number = index + 1
        line = lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        export = _EXPORT.match(line)
        if export:
            line = line[export.end() :]
        key, separator, rest = _split_key(line, file, line_number)
        if not separator:
            if key in lookup:
                out[key] = lookup[key]
            continue
        rest = rest.lstrip(_INLINE_BLANK)
        environ = _ChainLookup(lookup, out)
        if rest[:1] in ("'", '"'):
            quote = rest[0]
            body, consumed = _quoted(rest[1:], quote, lines, index)
            if body is None:
                raise ComposeFileError(
                    f"line {line_number}: unterminated quoted value {rest}", file=file, key=key
                )
            index += consumed
            out[key] = body if quote == "'" else _expand(body, environ, file, line_number)
            continue
        value = rest.split(" #", 1)[0].rstrip()
        out[key] = _expand(value, environ, file, line_number)
    return out


def _split_key(line: str, file: str, line_number: int) -> tuple[str, str, str]:
    for position, char in enumerate(line):
        if char in "=:":
            key = line[:position].rstrip()
            if " " in key or "\t" in key:
                raise ComposeFileError(f"line {line_number}: key cannot contain a space", file=file)
            return key, char, line[position + 1 :]
        if char in _INLINE_BLANK:
            continue
        if not _KEY_CHARS.fullmatch(char):
            raise ComposeFileError(
                f"line {line_number}: unexpected character {char!r} in variable name {line!r}",
                file=file,
            )
    key = line.strip()
    if " " in key or "\t" in key:
        raise ComposeFileError(f"line {line_number}: key cannot contain a space", file=file)
    return key, "", ""


def _quoted(first: str, quote: str, lines: list[str], next_index: int) -> tuple[str | None, int]:
    """The body of a quoted value starting in ``first``, possibly continuing on later lines.

    Returns the body (``None`` when unterminated) and how many extra lines it consumed. For
    double quotes the body keeps its backslash escapes for ``_unescape`` to resolve.
    """
    chunks: list[str] = []
    text = first
    consumed = 0
    while True:
        escaped = False
        for char in text:
            if escaped:
                escaped = False
                if char == quote:
                    chunks.append(char)
                else:
                    chunks.append("\\" + char)
                continue
            if char == "\\":
                escaped = True
                continue
            if char == quote:
                body = "".join(chunks)
                return (_unescape(body) if quote == '"' else body), consumed
            chunks.append(char)
        if escaped:
            chunks.append("\\")
        if next_index + consumed >= len(lines):
            return None, consumed
        chunks.append("\n")
        text = lines[next_index + consumed]
        consumed += 1


def _unescape(body: str) -> str:
    # compose-go expandEscapes: \n \t \r \a \b \f \v \\ \" and \$ (kept as "$$" so that the
    # substitution that follows yields a literal "$"); any other backslash stays as written.
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            following = body[i + 1]
            if following in _ESCAPES:
                out.append(_ESCAPES[following])
                i += 2
                continue
            if following in '\\"':
                out.append(following)
                i += 2
                continue
            if following == "$":
                out.append("$$")
                i += 2
                continue
        out.append(char)
        i += 1
    return "".join(out)


def _expand(value: str, environ: Mapping[str, str], file: str, line_number: int) -> str:
    try:
        return substitute(value, environ).value
    except InterpolationError as err:
        raise ComposeFileError(f"line {line_number}: {err}", file=file) from None
