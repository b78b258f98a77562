"""`docker events`: Docker's event messages, their filters, the history and subscribers.

Role: the engine's event bus. Anything that happens to a container (or, later, an image,
a network or a volume) is `emit`ted here; `GET /events` replays the history between
`since` and `until` and then follows new events (api/events_routes.py).

The message is moby's `events.Message` (api/types/events): Type, Action, Actor {ID,
Attributes}, scope "local", time (unix seconds) and timeNano, plus the deprecated
`status`/`id`/`from` that container and image events still carry (clients such as
docker-py and the CLI's `--format` read them). Container events carry the container's
labels, `image` (Config.Image as typed) and `name` (without "/") as attributes
(moby daemon/events.go LogContainerEventWithAttributes).

Filters are moby daemon/events/filter.go's: `type`, `event` (exact, or by prefix for
`health_status`/`exec_create`/`exec_start`, whose actions carry a suffix), `container`,
`image`, `label`, `daemon`, `network`, `volume`, `plugin`, `scope`...

Invariants:
- The history keeps the last `HISTORY_LIMIT` events (moby daemon/events: eventsLimit 256),
  oldest first, in emission order; `timeNano` never goes backwards within it.
- A subscriber registered with `subscribe` gets the buffered events before any live one and
  misses nothing emitted after its registration (both happen without a suspension point).
- A subscriber that falls `SUBSCRIBER_BUFFER` events behind is dropped (its stream ends),
  so one stalled client cannot grow the daemon's memory (moby's pubsub drops it too).

No I/O: the clock is passed in, and delivery is an asyncio queue per subscriber.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dockyard.engine.model.filters import FilterArgs

HISTORY_LIMIT = 256  # moby daemon/events/events.go eventsLimit
SUBSCRIBER_BUFFER = 1024  # moby daemon/events/events.go bufferSize

CONTAINER = "container"
IMAGE = "image"
DAEMON = "daemon"
NETWORK = "network"
VOLUME = "volume"
PLUGIN = "plugin"
# Actions with a suffix (`health_status: healthy`, `exec_create: sh -c ...`): an `event`
# filter naming only the prefix matches them (moby #25798).
_SUFFIXED = frozenset({"health_status", "exec_create", "exec_start"})


@dataclass(frozen=True)
class Event:
    type: str
    action: str
    actor_id: str
    attributes: Mapping[str, str]
    time_ns: int
    scope: str = "local"

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        # The deprecated fields, `omitempty` (moby daemon/events/events.go Log).
        if self.type in (CONTAINER, IMAGE):
            out["status"] = self.action
            if self.actor_id:
                out["id"] = self.actor_id
            if self.type == CONTAINER and self.attributes.get("image"):
                out["from"] = self.attributes["image"]
            if not self.action:
                del out["status"]
        out.update(
            {
                "Type": self.type,
                "Action": self.action,
                # Go marshals a map with its keys sorted.
                "Actor": {"ID": self.actor_id, "Attributes": dict(sorted(self.attributes.items()))},
                "scope": self.scope,
                "time": self.time_ns // 1_000_000_000,
                "timeNano": self.time_ns,
            }
        )
        return out


def container_attributes(
    *, name: str, image: str, labels: Mapping[str, str], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """moby LogContainerEventWithAttributes: labels, then image and name, then the extras."""
    out = {str(k): str(v) for k, v in labels.items()}
    out["image"] = image
    out["name"] = name.lstrip("/")
    if extra:
        out.update(extra)
    return out


def image_attributes(name: str, labels: Mapping[str, str] | None = None) -> dict[str, str]:
    """moby daemon/image_events.go LogImageEventWithAttributes: the image's labels and
    `name` (the reference acted on, familiar form). Emit with
    `bus.emit(IMAGE, "tag", image_id_or_ref, image_attributes("busybox:latest"))`."""
    out = {str(k): str(v) for k, v in (labels or {}).items()}
    out["name"] = name
    return out


def _strip_tag(ref: str) -> str:
    """moby filter.go stripTag: `busybox:latest` → `busybox` (a digest or port stays)."""
    name, _, tag = ref.rpartition(":")
    if name and name != "sha256" and "/" not in tag and "@" not in ref:
        return name
    return ref


@dataclass(frozen=True)
class EventFilter:
    """moby daemon/events/filter.go Filter.Include."""

    args: FilterArgs = field(default_factory=FilterArgs)

    def includes(self, ev: Event) -> bool:
        a = self.args
        return (
            self._match_event(ev)
            and a.exact_match("type", ev.type)
            and a.exact_match("scope", ev.scope)
            and self._fuzzy_name(ev, DAEMON)
            and self._fuzzy_name(ev, CONTAINER)
            and self._fuzzy_name(ev, PLUGIN)
            and self._fuzzy_name(ev, VOLUME)
            and self._fuzzy_name(ev, NETWORK)
            and self._match_image(ev)
            and a.match_kv_list("label", ev.attributes)
        )

    def _match_event(self, ev: Event) -> bool:
        if self.args.get("event") & _SUFFIXED:
            return self.args.fuzzy_match("event", ev.action)
        return self.args.exact_match("event", ev.action)

    def _fuzzy_name(self, ev: Event, kind: str) -> bool:
        # Every event is tested against every kind, as moby does: `container=x` leaves out
        # image events, whose actors are not containers.
        return self.args.fuzzy_match(kind, ev.actor_id) or self.args.fuzzy_match(
            kind, ev.attributes.get("name", "")
        )

    def _match_image(self, ev: Event) -> bool:
        name = ev.attributes.get("name" if ev.type == IMAGE else "image", "")
        a = self.args
        return (
            a.exact_match("image", ev.actor_id)
            or a.exact_match("image", name)
            or a.exact_match("image", _strip_tag(ev.actor_id))
            or a.exact_match("image", _strip_tag(name))
        )


class Subscription:
    """One `GET /events` client's queue of live events."""

    def __init__(self, bus: EventBus, event_filter: EventFilter) -> None:
        self._bus = bus
        self.filter = event_filter
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._pending = 0
        self.dropped = False

    def _offer(self, ev: Event) -> None:
        if self.dropped or not self.filter.includes(ev):
            return
        if self._pending >= SUBSCRIBER_BUFFER:
            self.dropped = True
            self._queue.put_nowait(None)  # wakes the reader, which then ends
            return
        self._pending += 1
        self._queue.put_nowait(ev)

    async def next(self) -> Event | None:
        """The next live event; None once the subscriber was dropped for falling behind."""
        ev = await self._queue.get()
        if ev is not None:
            self._pending -= 1
        return ev

    def close(self) -> None:
        self._bus.unsubscribe(self)


class EventBus:
    """The history and the subscribers. `clock` returns nanoseconds since the epoch."""

    def __init__(self, clock: Callable[[], int], *, limit: int = HISTORY_LIMIT) -> None:
        self._clock = clock
        self._history: collections.deque[Event] = collections.deque(maxlen=limit)
        self._subscribers: set[Subscription] = set()
        self._last_ns = 0

    def emit(
        self,
        type_: str,
        action: str,
        actor_id: str = "",
        attributes: Mapping[str, str] | None = None,
    ) -> Event:
        """Record an event and hand it to every subscriber whose filter includes it."""
        # Monotonic within the history, so since/until replay keeps the order of emission.
        now = max(self._clock(), self._last_ns)
        self._last_ns = now
        ev = Event(type_, action, actor_id, dict(attributes or {}), now)
        self._history.append(ev)
        for sub in list(self._subscribers):
            sub._offer(ev)
        return ev

    def history(self) -> list[Event]:
        return list(self._history)

    def subscribe(
        self, *, since_ns: int | None, until_ns: int | None, event_filter: EventFilter
    ) -> tuple[list[Event], Subscription]:
        """The buffered events in [since, until] (only when either is given), and a live
        subscription (moby Events.SubscribeTopic and loadBufferedEvents)."""
        buffered = replay(self._history, since_ns, until_ns, event_filter)
        sub = Subscription(self, event_filter)
        self._subscribers.add(sub)
        return buffered, sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)


def replay(
    history: Iterable[Event],
    since_ns: int | None,
    until_ns: int | None,
    event_filter: EventFilter,
) -> list[Event]:
    """moby loadBufferedEvents: nothing unless since or until is set; else the events with
    since <= timeNano <= until that the filter includes, oldest first."""
    if since_ns is None and until_ns is None:
        return []
    low = since_ns or 0
    return [
        ev
        for ev in history
        if ev.time_ns >= low
        and (until_ns is None or until_ns <= 0 or ev.time_ns <= until_ns)
        and event_filter.includes(ev)
    ]


__all__ = [
    "CONTAINER",
    "DAEMON",
    "HISTORY_LIMIT",
    "IMAGE",
    "NETWORK",
    "SUBSCRIBER_BUFFER",
    "VOLUME",
    "Event",
    "EventBus",
    "EventFilter",
    "Subscription",
    "container_attributes",
    "image_attributes",
    "replay",
]
