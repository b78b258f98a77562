"""Go's `path.Match`, which Docker uses for image reference filters and COPY sources.

Pure. `*` and `?` never match `/`; `[...]` classes (with `^` negation); `\\` escapes the
next character. A malformed pattern matches nothing (Go returns ErrBadPattern, and the
callers in moby treat it as no match).
"""

from __future__ import annotations

import re

__all__ = ["path_match"]


def path_match(pattern: str, name: str) -> bool:
    """Go's filepath.Match: `*` and `?` never match `/`, `[…]` classes (`^` negates),
    `\\` escapes; a malformed pattern matches nothing (ErrBadPattern)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                return False
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = re.sub(r"([\\\]])", r"\\\1", body.removeprefix("^"))
            out.append(f"[{'^' if negate else ''}{body}]")
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    try:
        return re.fullmatch("".join(out), name, re.DOTALL) is not None
    except re.error:
        return False
