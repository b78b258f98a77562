"""Docker's Dockerfile word expansion (buildkit `frontend/dockerfile/shell/lex.go`).

Role: expand `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`,
`${VAR:?msg}` and `${VAR?msg}`; remove quotes (`'…'` literal, `"…"` with `$` expansion and
escapes of `"`, `$` and the escape token); honour the escape token (`\\` or `` ` ``).
`process_word` keeps whitespace (one word); `process_words` splits on unquoted whitespace
after expansion, as EXPOSE does (the only instruction with word-to-words expansion).

Invariants:
- Error messages are buildkit's, wrapped as it does: `failed to process "<word>": <why>`.
- Lookup uses the last definition of a name in `env` (`BuildEnvs` overwrites), compared
  case-sensitively (Linux `EqualEnvKeys`).
- `${VAR#…}`, `${VAR%…}` and `${VAR/…}` (buildkit 0.12+) are not supported: they answer
  `unsupported modifier` rather than expanding differently from Docker.

This module is PURE: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["LexError", "ShellLex", "env_map"]

# POSIX special parameters (XCU 2.5.2): `$@`, `$*`... name a single character.
_SPECIAL_PARAMS = frozenset("@*#?-$!0")


class LexError(ValueError):
    """A word Docker cannot expand; the message is buildkit's."""


def env_map(env: Iterable[str]) -> dict[str, str]:
    """`KEY=value` strings as a map; a later definition wins, `KEY` alone means empty."""
    out: dict[str, str] = {}
    for entry in env:
        key, sep, value = entry.partition("=")
        out[key] = value if sep else ""
    return out


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch


class _Words:
    """Word splitting after expansion: only unquoted whitespace from the source or from an
    expanded variable separates words (lex.go wordsStruct)."""

    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


@dataclass(frozen=True)
class ShellLex:
    """A lexer for one escape token (the Dockerfile's `# escape=` directive)."""

    escape_token: str = "\\"

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        return self._process(word, env)[0]

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        return self._process(word, env)[1]

    def _process(self, word: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
        try:
            return _Expansion(self.escape_token, env, _Scanner(word)).stop_on("")
        except LexError as e:
            raise LexError(f"failed to process {_go_quote(word)}: {e}") from None


class _Expansion:
    def __init__(self, escape: str, env: Mapping[str, str], scanner: _Scanner) -> None:
        self.escape = escape
        self.env = env
        self.scanner = scanner

    def stop_on(self, stop: str) -> tuple[str, list[str]]:
        """Process up to `stop` (consumed) or the end when `stop` is ""."""
        result: list[str] = []
        words = _Words()
        scanner = self.scanner
        while scanner.peek():
            ch = scanner.peek()
            if stop and ch == stop:
                scanner.next()
                return "".join(result), words.result()
            if ch == "$":
                text = self.dollar()
                result.append(text)
                words.add_string(text)
            elif ch == "'":
                text = self.single_quote()
                result.append(text)
                words.add_raw(text)
            elif ch == '"':
                text = self.double_quote()
                result.append(text)
                words.add_raw(text)
            else:
                ch = scanner.next()
                if ch == self.escape:
                    # The escape token escapes the next character; at the end it vanishes.
                    ch = scanner.next()
                    if not ch:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop:
            raise LexError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.result()

    def single_quote(self) -> str:
        # sh(1): everything between single quotes is literal; a ' cannot be escaped.
        self.scanner.next()
        out: list[str] = []
        while True:
            ch = self.scanner.next()
            if not ch:
                raise LexError(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        # sh(1): literal except `$` and the escape token, which escapes only `"`, `$` and
        # itself; other escapes stay as written.
        self.scanner.next()
        out: list[str] = []
        while True:
            ch = self.scanner.peek()
            if not ch:
                raise LexError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                self.scanner.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.scanner.next()
            if ch == self.escape:
                following = self.scanner.peek()
                if not following:
                    continue
                if following in ('"', "$", self.escape):
                    ch = self.scanner.next()
            out.append(ch)

    def dollar(self) -> str:
        scanner = self.scanner
        scanner.next()
        if scanner.peek() != "{":
            name = self.name()
            return self.env.get(name, "") if name else "$"
        scanner.next()
        following = scanner.peek()
        if not following:
            raise LexError("syntax error: missing '}'")
        if following in "{}:":
            raise LexError("syntax error: bad substitution")
        name = self.name()
        ch = scanner.next()
        if not ch:
            # buildkit reports `unsupported modifier (\ufffd)` here (Go's scanner.EOF as
            # a rune); the missing brace is what the user needs to hear.
            raise LexError("syntax error: missing '}'")
        modifier = ch
        if ch == "}":
            return self.env.get(name, "")
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = scanner.next()
            modifier += ch
        if ch not in ("+", "-", "?"):
            raise LexError(f"unsupported modifier ({modifier}) in substitution")
        try:
            word, _ = self.stop_on("}")
        except LexError:
            if not scanner.peek():
                raise LexError("syntax error: missing '}'") from None
            raise
        is_set = name in self.env
        value = self.env.get(name, "")
        unset = not is_set or (null_is_unset and value == "")
        if ch == "-":
            return word if unset else value
        if ch == "+":
            return "" if unset else word
        if not is_set:
            raise LexError(f"{name}: {word or 'is not allowed to be unset'}")
        if unset:
            raise LexError(f"{name}: {word or 'is not allowed to be empty'}")
        return value

    def name(self) -> str:
        scanner = self.scanner
        out: list[str] = []
        while scanner.peek():
            ch = scanner.peek()
            if not out and ch.isdigit():
                # `$1x` is the positional parameter 1 followed by x.
                while scanner.peek().isdigit():
                    out.append(scanner.next())
                return "".join(out)
            if not out and ch in _SPECIAL_PARAMS:
                return scanner.next()
            if not (ch.isalnum() or ch == "_"):
                break
            out.append(scanner.next())
        return "".join(out)


def _go_quote(text: str) -> str:
    """Go's %q for the common case: double quotes, `"` and `\\` escaped."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
