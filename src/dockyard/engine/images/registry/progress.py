"""Docker's jsonmessage progress for pull and push, as values.

Role: `Progress` is one line of the stream dockerd writes for `docker pull`/`docker push`
(moby pkg/jsonmessage): a status, the layer it belongs to (`id`, a short digest), an
optional progress bar (`progressDetail` current/total and the rendered `progress` text)
and an optional `aux` object (push's `{"Tag", "Digest", "Size"}`).

Invariants:
- `to_wire` omits what Docker omits: no `progressDetail` on lines that are not a layer's,
  an empty one (`{}`) on a layer's status lines; the CLI hides lines whose bar is not
  empty when its output is not a terminal, so only bar lines carry numbers.

This module is PURE.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Progress", "human_size", "progress_bar"]

_BAR_WIDTH = 50


@dataclass(frozen=True)
class Progress:
    """One jsonmessage of a pull or push. `current`/`total` make a progress bar; an empty
    `progressDetail` (`detail=True` without numbers) is what Docker sends with a status
    that belongs to a layer line."""

    status: str = ""
    id: str = ""
    current: int | None = None
    total: int | None = None
    detail: bool = False
    aux: Mapping[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {}
        if self.status:
            wire["status"] = self.status
        if self.current is not None or self.detail:
            detail: dict[str, int] = {}
            if self.current is not None:
                detail["current"] = self.current
            if self.total:
                detail["total"] = self.total
            wire["progressDetail"] = detail
            if self.current is not None:
                wire["progress"] = progress_bar(self.current, self.total)
        if self.id:
            wire["id"] = self.id
        if self.aux is not None:
            wire["aux"] = dict(self.aux)
        return wire


def human_size(size: float) -> str:
    # go-units HumanSize: decimal units, 3 significant digits.
    units = ("B", "kB", "MB", "GB", "TB")
    index = 0
    while size >= 1000 and index < len(units) - 1:
        size /= 1000
        index += 1
    return f"{size:.3g}{units[index]}"


def progress_bar(current: int, total: int | None) -> str:
    """jsonmessage JSONProgress.String as dockerd renders it (no terminal: full width, no
    time left): `[=====>     ]  1.05MB/2.1MB`; without a total, the count alone."""
    if current <= 0 and not total:
        return ""
    if not total:
        return f"{human_size(current):>8}"
    percentage = min(int(current / total * 100) // 2, _BAR_WIDTH)
    box = "[" + "=" * percentage + ">" + " " * (_BAR_WIDTH - percentage) + "] "
    if current > total:
        # jsonmessage: "remove total display if the reported current is wonky"
        return f"{box}{human_size(current):>8}"
    return f"{box}{human_size(current):>8}/{human_size(total)}"
