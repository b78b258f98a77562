"""`.dockerignore` patterns (moby/patternmatcher, as the docker CLI and dockerd apply them).

Role: read a `.dockerignore` into patterns and answer, for a context-relative path, whether
it is excluded, and, for a directory, whether a walk must still descend into it (because
an exception `!pattern` could re-include something below it).

Rules (patternmatcher.go, dockerignore.ReadAll):
- Lines are trimmed; empty lines and lines starting with `#` are skipped; `!` makes an
  exception; patterns are cleaned (`filepath.Clean`) and a leading `/` is dropped.
- `*` matches any run of non-separator characters, `?` one; `**` any number of path
  segments (`**/` included); `[…]` a character class; `\\` escapes the next character.
- The last matching pattern decides; a pattern matching a parent directory matches
  everything below it (`MatchesOrParentMatches`).

This module is PURE: no I/O.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["IgnoreMatcher", "IgnorePattern", "PatternError", "read_dockerignore"]

# Characters Go's regexp would read specially but filepath.Match does not.
_REGEX_SPECIAL = frozenset(".$^+(){}|")


class PatternError(ValueError):
    """A pattern that cannot be compiled (moby: `syntax error in pattern`)."""


@dataclass(frozen=True)
class IgnorePattern:
    pattern: str  # cleaned, without the leading "!"
    exclusion: bool
    regex: re.Pattern[str]

    def match(self, path: str) -> bool:
        return self.regex.match(path) is not None


def _clean(pattern: str) -> str:
    cleaned = posixpath.normpath(pattern) if pattern else "."
    # filepath.Clean keeps a single leading slash; normpath keeps two ("//x").
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def read_dockerignore(text: str) -> list[str]:
    """The patterns of a `.dockerignore` file (dockerignore.ReadAll)."""
    patterns: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = _clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append("!" + line if invert else line)
    return patterns


def _compile(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1  # `**/` reads as `**`
                # `**` at the end matches everything (as .gitignore); elsewhere any
                # number of whole segments, none included.
                out.append(".*" if i >= n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append(r"\\")
        elif ch in _REGEX_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    out.append("$")
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error:
        raise PatternError("syntax error in pattern") from None


@dataclass(frozen=True)
class IgnoreMatcher:
    patterns: tuple[IgnorePattern, ...] = ()

    @classmethod
    def from_patterns(cls, patterns: Iterable[str]) -> IgnoreMatcher:
        compiled = []
        for text in patterns:
            exclusion = text.startswith("!")
            body = text[1:] if exclusion else text
            if exclusion and not body:
                raise PatternError('illegal exclusion pattern: "!"')
            cleaned = _clean(body)
            compiled.append(IgnorePattern(cleaned, exclusion, _compile(cleaned)))
        return cls(tuple(compiled))

    @property
    def has_exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def excluded(self, path: str) -> bool:
        """Whether the context-relative `path` ("a/b", no leading "./") is ignored."""
        path = _clean(path)
        parent = posixpath.dirname(path)
        parent_dirs: Sequence[str] = parent.split("/") if parent else ()
        matched = False
        for pattern in self.patterns:
            # An inclusion cannot change an excluded path, nor an exception an included one.
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit and parent_dirs:
                hit = any(
                    pattern.match("/".join(parent_dirs[: i + 1])) for i in range(len(parent_dirs))
                )
            if hit:
                matched = not pattern.exclusion
        return matched

    def should_descend(self, directory: str) -> bool:
        """Whether a walk must enter the excluded `directory`: only if an exception pattern
        names something below it (the docker CLI's archive walk)."""
        prefix = _clean(directory) + "/"
        return any(p.exclusion and (p.pattern + "/").startswith(prefix) for p in self.patterns)
