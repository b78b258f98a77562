"""The event bus (engine/events.py): Docker's message shape, filters, history, subscribers."""

from __future__ import annotations

import asyncio
import itertools
import json

from dockyard.engine import events as ev
from dockyard.engine.model.filters import FilterArgs

S = 1_000_000_000
CID = "f72ab3c348ab62bf23bfec35a7e25d4363b7099bc0f7c36d06a19631f89141d4"


def clock_from(start_ns: int, step_ns: int = S) -> itertools.count[int]:
    return itertools.count(start_ns, step_ns)


def bus(start_ns: int = 1795918334 * S, limit: int = ev.HISTORY_LIMIT) -> ev.EventBus:
    ticks = clock_from(start_ns)
    return ev.EventBus(lambda: next(ticks), limit=limit)


def container(b: ev.EventBus, action: str, *, name: str = "evdemo", **extra: str) -> ev.Event:
    attrs = ev.container_attributes(
        name="/" + name, image="busybox:local", labels={"tier": "front"}, extra=extra
    )
    return b.emit(ev.CONTAINER, action, CID if name == "evdemo" else name * 8, attrs)


def only(**values: list[str]) -> ev.EventFilter:
    return ev.EventFilter(FilterArgs.of(**values))


def test_the_wire_shape_is_dockerds() -> None:
    b = bus(1795918334_823841085)
    die = container(b, "die", exitCode="3")
    # Byte for byte what dockerd 20.10 sent (events-brief transcript), labels aside.
    assert json.dumps(die.to_wire(), separators=(",", ":")) == (
        '{"status":"die","id":"' + CID + '","from":"busybox:local","Type":"container",'
        '"Action":"die","Actor":{"ID":"' + CID + '","Attributes":{"exitCode":"3",'
        '"image":"busybox:local","name":"evdemo","tier":"front"}},"scope":"local",'
        '"time":1795918334,"timeNano":1795918334823841085}'
    )
    prune = b.emit(ev.CONTAINER, "prune", "", {"reclaimed": "0"})
    assert "id" not in prune.to_wire() and "from" not in prune.to_wire()
    net = b.emit(ev.NETWORK, "connect", "n1", {"container": CID, "name": "bridge"})
    assert not {"status", "id", "from"} & set(net.to_wire())


def test_filters_follow_mobys_rules() -> None:
    b = bus()
    create = container(b, "create")
    die = container(b, "die", exitCode="0")
    health = container(b, "health_status: healthy")
    exec_start = container(b, "exec_start: sh -c true", execID="e1")
    other = container(b, "start", name="other")
    image = b.emit(ev.IMAGE, "tag", "sha256:abc", ev.image_attributes("busybox:latest"))
    assert image.to_wire()["id"] == "sha256:abc" and "from" not in image.to_wire()

    def kept(f: ev.EventFilter) -> list[ev.Event]:
        return [e for e in b.history() if f.includes(e)]

    assert kept(only(event=["die"])) == [die]
    assert kept(only(event=["health_status"])) == [health]
    assert kept(only(event=["exec_start"])) == [exec_start]
    assert kept(only(event=["exec_start: sh -c true"])) == [exec_start]
    assert kept(only(container=["evdemo"], event=["die", "create"])) == [create, die]
    assert kept(only(container=[CID[:12]])) == [create, die, health, exec_start]
    assert kept(only(container=["other"])) == [other]
    assert kept(only(type=["image"])) == [image]
    assert kept(only(image=["busybox"])) == [create, die, health, exec_start, other, image]
    assert kept(only(image=["busybox:local"]))[-1] == other
    assert kept(only(label=["tier=front"], event=["start"])) == [other]
    assert kept(only(label=["tier=back"])) == []
    assert kept(only(daemon=["x"])) == []
    assert kept(ev.EventFilter()) == b.history()


def test_replay_needs_since_or_until_and_keeps_the_window() -> None:
    b = bus(100 * S)
    events = [container(b, a) for a in ("create", "start", "die", "destroy")]  # t=100..103
    everything = ev.EventFilter()
    assert ev.replay(b.history(), None, None, everything) == []
    assert ev.replay(b.history(), 101 * S, None, everything) == events[1:]
    assert ev.replay(b.history(), 101 * S, 102 * S, everything) == events[1:3]
    assert ev.replay(b.history(), None, 100 * S, everything) == events[:1]
    assert ev.replay(b.history(), 0, None, only(event=["die"])) == [events[2]]


def test_the_history_is_bounded_and_never_goes_back_in_time() -> None:
    ticks = iter([5 * S, 3 * S, 7 * S, 7 * S, 8 * S])
    b = ev.EventBus(lambda: next(ticks), limit=3)
    for action in ("a", "b", "c", "d", "e"):
        b.emit(ev.CONTAINER, action, "x")
    assert [(e.action, e.time_ns) for e in b.history()] == [
        ("c", 7 * S),
        ("d", 7 * S),
        ("e", 8 * S),
    ]
    big = bus()
    for i in range(300):
        big.emit(ev.CONTAINER, str(i), "x")
    assert len(big.history()) == ev.HISTORY_LIMIT == 256
    assert big.history()[0].action == "44"


def test_subscribers_get_filtered_live_events_and_slow_ones_are_dropped() -> None:
    async def scenario() -> None:
        b = bus(100 * S)
        past = container(b, "create")
        buffered, sub = b.subscribe(since_ns=0, until_ns=None, event_filter=only(event=["die"]))
        assert buffered == []
        buffered2, sub2 = b.subscribe(since_ns=0, until_ns=None, event_filter=ev.EventFilter())
        assert buffered2 == [past]
        assert b.subscriber_count == 2
        container(b, "start")
        die = container(b, "die", exitCode="1")
        assert await sub.next() == die
        assert (await sub2.next()).action == "start"
        sub.close()
        sub2.close()
        assert b.subscriber_count == 0
        container(b, "destroy")  # nobody listens: nothing queued, nothing fails

        _, slow = b.subscribe(since_ns=None, until_ns=None, event_filter=ev.EventFilter())
        for i in range(ev.SUBSCRIBER_BUFFER + 5):
            b.emit(ev.CONTAINER, str(i), "x")
        assert slow.dropped
        received = 0
        while await slow.next() is not None:
            received += 1
        assert received == ev.SUBSCRIBER_BUFFER
        slow.close()

    asyncio.run(scenario())
