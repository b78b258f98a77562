"""Docker's `filters=` argument and the container list (`docker ps`) it selects.

Role: parse the JSON filter object clients send (the CLI's map form `{"k":{"v":true}}` and
the SDK's list form `{"k":["v"]}`), match values the way moby's `api/types/filters.Args`
does (exact, prefix "fuzzy", regular expression, `key[=value]` label lists), and select the
containers of `GET /containers/json` as moby `daemon/list.go` does. Also Docker's time
arguments: the `since/until` of events (unix seconds with an optional fraction) and the
`until` of prune (a Go duration, an RFC 3339 time or unix seconds).

Pure: records, image IDs and the current time come in as arguments; lookups that need the
stores (the `before`/`since` containers, the `ancestor` images) are done by the caller and
passed as IDs.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dockyard.engine.model.container import (
    ContainerRecord,
    EngineError,
    InvalidArgument,
    parse_time_ns,
)
from dockyard.engine.model.gotime import parse_go_duration
from dockyard.engine.model.health import NO_HEALTHCHECK, VALID_HEALTH

# moby daemon/list.go acceptedPsFilterTags.
PS_FILTERS = frozenset(
    {
        "ancestor", "before", "exited", "id", "isolation", "label", "name", "status", "health",
        "since", "volume", "network", "is-task", "publish", "expose",
    }
)  # fmt: skip
# moby container/state.go IsValidStateString.
VALID_STATES = frozenset(
    {"paused", "restarting", "removing", "running", "dead", "created", "exited"}
)
# moby daemon/prune.go containersAcceptedFilters.
PRUNE_FILTERS = frozenset({"label", "label!", "until"})


@dataclass(frozen=True)
class FilterArgs:
    """moby `filters.Args`: each key's set of values."""

    fields: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> FilterArgs:
        """Both forms clients send; malformed JSON is a 500 as in dockerd (api-surface §2)."""
        if not text:
            return cls()
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise EngineError(str(e)) from None
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise EngineError("json: cannot unmarshal filters: not an object")
        out: dict[str, frozenset[str]] = {}
        for key, values in raw.items():
            if isinstance(values, list):
                out[str(key)] = frozenset(str(v) for v in values)
            elif isinstance(values, dict):
                out[str(key)] = frozenset(str(k) for k, v in values.items() if v)
            else:
                raise EngineError(f"json: cannot unmarshal the values of filter {key!r}")
        return cls(out)

    @classmethod
    def of(cls, **values: Iterable[str]) -> FilterArgs:
        return cls({k.replace("_", "-"): frozenset(v) for k, v in values.items()})

    def __len__(self) -> int:
        return len(self.fields)

    def contains(self, key: str) -> bool:
        return key in self.fields

    def get(self, key: str) -> frozenset[str]:
        return self.fields.get(key, frozenset())

    def validate(self, accepted: frozenset[str]) -> None:
        for key in self.fields:
            if key not in accepted:
                raise InvalidArgument(f"Invalid filter '{key}'")

    def exact_match(self, key: str, source: str) -> bool:
        values = self.fields.get(key)
        return not values or source in values

    def fuzzy_match(self, key: str, source: str) -> bool:
        """Equal to a value or starting with one (IDs by prefix); no key matches all."""
        values = self.fields.get(key)
        if values is None:
            return True
        return source in values or any(source.startswith(v) for v in values)

    def match(self, key: str, source: str) -> bool:
        """A value equals `source` or is a regular expression found in it."""
        if self.exact_match(key, source):
            return True
        for pattern in self.fields[key]:
            try:
                if re.search(pattern, source):
                    return True
            except re.error:
                continue  # moby skips values that do not compile
        return False

    def match_kv_list(self, key: str, sources: Mapping[str, str]) -> bool:
        """Every `k` or `k=v` value is among `sources`."""
        values = self.fields.get(key)
        if not values:
            return True
        if not sources:
            return False
        for value in values:
            name, eq, wanted = value.partition("=")
            if name not in sources or (eq and sources[name] != wanted):
                return False
        return True


def labels_match(filters: FilterArgs, labels: Mapping[str, str]) -> bool:
    """Prune's `label` (all must match) and `label!` (none may) (moby daemon/prune.go)."""
    if not filters.match_kv_list("label", labels):
        return False
    # moby: excluded when any one of the label! values matches.
    for value in filters.get("label!"):
        if FilterArgs({"label": frozenset({value})}).match_kv_list("label", labels):
            return False
    return True


# -- docker ps -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PsQuery:
    """A validated `GET /containers/json` request (moby listContext)."""

    filters: FilterArgs = field(default_factory=FilterArgs)
    all: bool = False
    limit: int = 0
    exited: frozenset[int] = frozenset()
    before_id: str | None = None
    since_id: str | None = None
    # Image IDs the `ancestor` filter accepts; None when the filter is absent.
    ancestor_ids: frozenset[str] | None = None


def validate_ps_filters(filters: FilterArgs) -> frozenset[int]:
    """dockerd's checks and messages (moby daemon/list.go foldFilter); the exit codes."""
    filters.validate(PS_FILTERS)
    codes = set()
    for value in filters.get("exited"):
        try:
            codes.add(int(value))
        except ValueError:
            raise InvalidArgument(f'strconv.Atoi: parsing "{value}": invalid syntax') from None
    for value in filters.get("status"):
        if value not in VALID_STATES:
            raise InvalidArgument(f"Unrecognised filter value for status: {value}")
    for value in filters.get("health"):
        if value not in VALID_HEALTH:
            raise InvalidArgument(f"Unrecognised filter value for health: {value}")
    for value in filters.get("is-task"):
        if value not in ("true", "false"):
            raise InvalidArgument(f"Invalid filter 'is-task={value}'")
    return frozenset(codes)


def health_status(record: ContainerRecord) -> str:
    health = record.state.health
    return health.status if health is not None else NO_HEALTHCHECK


def select_containers(records: Sequence[ContainerRecord], query: PsQuery) -> list[ContainerRecord]:
    """`records` newest first, as moby's includeContainerInList walks them."""
    filters = query.filters
    # moby: a status filter lists stopped containers too.
    show_all = query.all or filters.contains("status")
    waiting_for_before = query.before_id
    out: list[ContainerRecord] = []
    for record in records:
        state = record.state
        if waiting_for_before is not None:
            # Everything down to the `before` container (itself included) is left out.
            if record.id == waiting_for_before:
                waiting_for_before = None
            continue
        if query.since_id is not None and record.id == query.since_id:
            break
        running = state.running or state.restarting
        if not running and not show_all and query.limit <= 0:
            continue
        name = record.name
        if not filters.match("name", name) and not filters.match("name", name.lstrip("/")):
            continue
        if not filters.match("id", record.id):
            continue
        if not filters.match_kv_list("label", record.config.get("Labels") or {}):
            continue
        if query.limit > 0 and len(out) == query.limit:
            break
        if query.exited and not (
            state.exit_code in query.exited and not running and parse_time_ns(state.started_at) != 0
        ):
            continue
        if not filters.match("status", state.wire_status):
            continue
        if filters.contains("health") and not filters.exact_match("health", health_status(record)):
            continue
        # No volumes or networks yet: such filters match no container.
        if filters.get("volume") or filters.get("network"):
            continue
        if query.ancestor_ids is not None and record.image_id not in query.ancestor_ids:
            continue
        if filters.get("publish") or filters.get("expose"):
            continue
        if filters.contains("is-task") and "true" in filters.get("is-task"):
            continue  # no swarm tasks here
        out.append(record)
    return out


# -- times -------------------------------------------------------------------------------------


def parse_unix_timestamp(text: str) -> int:
    """moby timetypes.ParseTimestamps: `seconds[.fraction]` in nanoseconds."""
    seconds, dot, fraction = text.partition(".")
    try:
        value = int(seconds) * 1_000_000_000
        if dot:
            if not fraction.isdigit():
                raise ValueError
            value += int((fraction + "000000000")[:9]) * (-1 if seconds.startswith("-") else 1)
    except ValueError:
        bad = seconds if not seconds.lstrip("-").isdigit() else fraction
        raise EngineError(f'strconv.ParseInt: parsing "{bad}": invalid syntax') from None
    return value


def parse_timestamp(text: str, now_ns: int) -> int:
    """moby timetypes.GetTimestamp (prune's `until`): a duration before `now_ns`, an RFC 3339
    time or date (UTC unless it has a zone), or unix seconds; in nanoseconds."""
    duration = parse_go_duration(text)
    if text != "0" and duration is not None:
        return now_ns - duration
    if "-" in text and not text.startswith("-"):
        moment = _parse_rfc3339ish(text)
        if moment is None:
            raise InvalidArgument(f'parsing time "{text}": cannot parse as RFC 3339')
        return moment
    try:
        return parse_unix_timestamp(text)
    except EngineError:
        raise InvalidArgument(f'failed to parse value as time or duration: "{text}"') from None


def _parse_rfc3339ish(text: str) -> int | None:
    value = text.replace("z", "Z")
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    main, dot, rest = value.partition(".")
    nanos = 0
    if dot:
        digits = re.match(r"[0-9]+", rest)
        if digits is None:
            return None
        nanos = int((digits.group(0) + "000000000")[:9])
        value = main + rest[digits.end() :]
    for fmt in (
        "%Y-%m-%dT%H:%M:%S%z",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M%z",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H",
        "%Y-%m-%d%z",
        "%Y-%m-%d",
    ):
        try:
            moment = _dt.datetime.strptime(value, fmt)
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_dt.UTC)  # the daemon's zone: UTC here
        return int(moment.timestamp()) * 1_000_000_000 + nanos
    return None


__all__ = [
    "PRUNE_FILTERS",
    "PS_FILTERS",
    "FilterArgs",
    "PsQuery",
    "labels_match",
    "parse_go_duration",
    "parse_timestamp",
    "parse_unix_timestamp",
    "select_containers",
    "validate_ps_filters",
]
