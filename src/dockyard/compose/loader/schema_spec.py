"""The compose-spec JSON schema, written down as our own declarative table.

Role: describe, node by node, the structure the compose-spec schema (``compose-spec.json``
as Docker Compose v2 / compose-go validates with; docker-compose 1.27+ shipped an earlier
cut of it as ``compose_spec.json``) gives a Compose file, so that ``schema.py`` can walk a
parsed file against it. Nothing here reads the schema file: the rules are data we own,
checked against the official schema by ``tests/integration/compose/test_schema_reference.py``.

What is described: for every object the schema defines, its known properties, whether other
keys are refused (``additionalProperties: false``), whether ``x-*`` extension keys are
allowed, its pattern-keyed entries (``patternProperties``), its required keys; for every
value its JSON types, enums, numeric bounds; ``oneOf`` forms (list-or-dict, string-or-object)
and ``uniqueItems``; the two string ``pattern``s the schema has (``pull_policy``,
``container_name``). What is not: string formats (durations, byte sizes, port syntax),
which the model builder parses and reports anyway.

Invariants:
- the options of a ``OneOf`` accept pairwise distinct JSON types (``integer`` counting as a
  ``number``), so the value's type alone picks the branch, as it does in the schema;
- property names are strings; a ``Mapping`` inside a frozen node is never mutated.

Which cut of the schema: every key and form the current compose-spec has (``develop``,
``post_start``, long-form ``devices``, ``env_file`` objects, …), with the JSON types of the
cut docker-compose 1.29.2 ships for the keys that cut has. The current compose-spec also
accepts a *string* wherever it takes a boolean or a number: compose-go casts interpolated
values to their type (``interp.Options.TypeCastMapping``) before it validates, and also
validates files it did not interpolate (``config --no-interpolate``), where ``tty: ${TTY}``
is still a string. Our interpolation does not cast, so such a string is refused here, with
1.29.2's wording, rather than slipping through to the model. The service-level exceptions
that the earlier table already widened (``cpu_count``, ``cpu_percent``, ``mem_swappiness``,
``oom_score_adj``, ``scale``: integer or string) are kept.

Deliberate tolerances (documented where they are declared): ``depends_on`` entries may be
null and may omit ``condition`` (the loader defaults it to ``service_started``), and the
v2-era ``volume_driver`` service key is kept.

Pure: data and small helpers; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# JSON types as the schema names them.
STRING = "string"
NUMBER = "number"
INTEGER = "integer"
BOOLEAN = "boolean"
ARRAY = "array"
OBJECT = "object"
NULL = "null"

# compose-spec: service, network, volume, config and secret names.
NAME_PATTERN = r"^[a-zA-Z0-9._-]+$"


@dataclass(frozen=True)
class Scalar:
    """A value of one of ``types`` (never an array or object: those have their own nodes),
    optionally restricted to ``enum`` or ``pattern`` (strings; the pattern with ``re.search``
    semantics, unanchored as JSON schema has it) and to ``[minimum, maximum]`` (integers)."""

    types: tuple[str, ...]
    enum: tuple[str, ...] = ()
    pattern: str | None = None
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class Array:
    """``{"type": "array", "items": …, "uniqueItems": …}``."""

    items: Node
    unique: bool = False


@dataclass(frozen=True)
class Object:
    """``{"type": "object", …}``.

    ``properties``: the known keys. ``closed``: other keys are refused (``additionalProperties:
    false``) unless they are ``x-*`` and ``extensions`` is set, or match ``pattern`` (a regex,
    ``re.search`` semantics as JSON schema has), whose values must then match ``entries``.
    ``nullable``: ``{"type": ["object", "null"]}``. ``required``: keys that must be present.
    """

    properties: Mapping[str, Node] = field(default_factory=dict)
    closed: bool = True
    extensions: bool = True
    pattern: str | None = None
    entries: Node | None = None
    required: tuple[str, ...] = ()
    nullable: bool = False


@dataclass(frozen=True)
class OneOf:
    """``oneOf`` over options told apart by JSON type (see the module invariant)."""

    options: tuple[Node, ...]


Node = Scalar | Array | Object | OneOf


def accepted_types(node: Node) -> tuple[str, ...]:
    """The JSON types ``node`` accepts, in the schema's order (for "it should be …")."""
    if isinstance(node, Scalar):
        return node.types
    if isinstance(node, Array):
        return (ARRAY,)
    if isinstance(node, Object):
        return (OBJECT, NULL) if node.nullable else (OBJECT,)
    out: list[str] = []
    for option in node.options:
        out.extend(kind for kind in accepted_types(option) if kind not in out)
    return tuple(out)


def _s(*types: str, enum: tuple[str, ...] = ()) -> Scalar:
    return Scalar(types, enum)


# Shared definitions (compose-spec "definitions"/"$defs").
_STR = _s(STRING)
_BOOL = _s(BOOLEAN)
_INT = _s(INTEGER)
_NUM = _s(NUMBER)
_INT_OR_STR = _s(INTEGER, STRING)
_NUM_OR_STR = _s(NUMBER, STRING)
_LIST_OF_STRINGS = Array(_STR, unique=True)
_STRING_ARRAY = Array(_STR)  # no uniqueItems (build.cache_from, placement.constraints, …)
_STRING_OR_LIST = OneOf((_STR, _LIST_OF_STRINGS))
_LIST_OR_DICT = OneOf(
    (
        Object(
            closed=True,
            extensions=False,
            pattern=".+",
            entries=_s(STRING, NUMBER, BOOLEAN, NULL),
        ),
        _LIST_OF_STRINGS,
    )
)
_EXTRA_HOSTS = OneOf(
    (
        Object(
            closed=True,
            extensions=False,
            pattern=".+",
            entries=OneOf((_STR, _STRING_ARRAY)),
        ),
        _LIST_OF_STRINGS,
    )
)
_COMMAND = OneOf((_s(NULL), _STR, _STRING_ARRAY))
_DRIVER_OPTS = Object(closed=False, extensions=False, pattern="^.+$", entries=_s(STRING, NUMBER))


def _obj(
    props: Mapping[str, Node],
    *,
    extensions: bool = True,
    required: tuple[str, ...] = (),
    nullable: bool = False,
    closed: bool = True,
) -> Object:
    return Object(
        properties=props,
        closed=closed,
        extensions=extensions,
        required=required,
        nullable=nullable,
    )


_SERVICE_CONFIG_OR_SECRET = Array(
    OneOf(
        (
            _STR,
            _obj(
                {
                    "source": _STR,
                    "target": _STR,
                    "uid": _STR,
                    "gid": _STR,
                    "mode": _NUM,
                }
            ),
        )
    )
)

_ULIMITS = Object(
    closed=False,
    extensions=False,
    pattern="^[a-z]+$",
    entries=OneOf(
        (
            _INT,
            _obj({"hard": _INT, "soft": _INT}, required=("soft", "hard")),
        )
    ),
)

_BLKIO_LIMIT = _obj({"path": _STR, "rate": _INT_OR_STR}, extensions=False)
_BLKIO_WEIGHT = _obj({"path": _STR, "weight": _INT}, extensions=False)

_SERVICE_HOOK = _obj(
    {
        "command": _COMMAND,
        "user": _STR,
        "privileged": _BOOL,
        "working_dir": _STR,
        "environment": _LIST_OR_DICT,
    },
    required=("command",),
)

_PRE_START_HOOK = _obj(
    {
        "command": _COMMAND,
        "image": _STR,
        "user": _STR,
        "privileged": _BOOL,
        "working_dir": _STR,
        "environment": _LIST_OR_DICT,
        "per_replica": _BOOL,
    }
)

_DEVICE_REQUEST_PROPS: Mapping[str, Node] = {
    "capabilities": _LIST_OF_STRINGS,
    "count": _s(STRING, INTEGER),
    "device_ids": _LIST_OF_STRINGS,
    "driver": _STR,
    "options": _LIST_OR_DICT,
}

_HEALTHCHECK = _obj(
    {
        "disable": _BOOL,
        "interval": _STR,
        "retries": _NUM,
        "test": OneOf((_STR, _STRING_ARRAY)),
        "timeout": _STR,
        "start_period": _STR,
        "start_interval": _STR,
    }
)

_UPDATE_OR_ROLLBACK = _obj(
    {
        "parallelism": _INT,
        "delay": _STR,
        "failure_action": _STR,
        "monitor": _STR,
        "max_failure_ratio": _NUM,
        "order": _s(STRING, enum=("start-first", "stop-first")),
    }
)

_DEPLOYMENT = _obj(
    {
        "mode": _STR,
        "endpoint_mode": _STR,
        "replicas": _INT,
        "labels": _LIST_OR_DICT,
        "rollback_config": _UPDATE_OR_ROLLBACK,
        "update_config": _UPDATE_OR_ROLLBACK,
        "resources": _obj(
            {
                "limits": _obj({"cpus": _NUM_OR_STR, "memory": _STR, "pids": _INT}),
                "reservations": _obj(
                    {
                        "cpus": _NUM_OR_STR,
                        "memory": _STR,
                        "generic_resources": Array(
                            _obj({"discrete_resource_spec": _obj({"kind": _STR, "value": _NUM})})
                        ),
                        "devices": Array(_obj(_DEVICE_REQUEST_PROPS, required=("capabilities",))),
                    }
                ),
            }
        ),
        "restart_policy": _obj(
            {
                "condition": _STR,
                "delay": _STR,
                "max_attempts": _INT,
                "window": _STR,
            }
        ),
        "placement": _obj(
            {
                "constraints": _STRING_ARRAY,
                "preferences": Array(_obj({"spread": _STR})),
                "max_replicas_per_node": _INT,
            }
        ),
    },
    nullable=True,
)

_DEVELOPMENT = _obj(
    {
        "watch": Array(
            _obj(
                {
                    "ignore": _STRING_OR_LIST,
                    "include": _STRING_OR_LIST,
                    "path": _STR,
                    "action": _s(
                        STRING,
                        enum=("rebuild", "sync", "restart", "sync+restart", "sync+exec"),
                    ),
                    "target": _STR,
                    "exec": _SERVICE_HOOK,
                    "initial_sync": _BOOL,
                },
                required=("path", "action"),
            )
        )
    },
    nullable=True,
)

_BUILD = OneOf(
    (
        _STR,
        _obj(
            {
                "context": _STR,
                "dockerfile": _STR,
                "dockerfile_inline": _STR,
                "entitlements": _STRING_ARRAY,
                "args": _LIST_OR_DICT,
                "ssh": _LIST_OR_DICT,
                "labels": _LIST_OR_DICT,
                "cache_from": _STRING_ARRAY,
                "cache_to": _STRING_ARRAY,
                "no_cache": _BOOL,
                "no_cache_filter": _STRING_OR_LIST,
                "additional_contexts": _LIST_OR_DICT,
                "network": _STR,
                "provenance": _s(STRING, BOOLEAN),
                "sbom": _s(STRING, BOOLEAN),
                "pull": _BOOL,
                "target": _STR,
                "shm_size": _INT_OR_STR,
                "extra_hosts": _EXTRA_HOSTS,
                "isolation": _STR,
                "privileged": _BOOL,
                "secrets": _SERVICE_CONFIG_OR_SECRET,
                "tags": _STRING_ARRAY,
                "ulimits": _ULIMITS,
                "platforms": _STRING_ARRAY,
            }
        ),
    )
)

_DEPENDS_ON = OneOf(
    (
        _LIST_OF_STRINGS,
        Object(
            closed=True,
            extensions=False,
            pattern=NAME_PATTERN,
            entries=OneOf(
                (
                    _obj(
                        {
                            "restart": _BOOL,
                            "required": _BOOL,
                            "condition": _s(
                                STRING,
                                enum=(
                                    "service_started",
                                    "service_healthy",
                                    "service_completed_successfully",
                                ),
                            ),
                        },
                        required=("condition",),
                    ),
                )
            ),
        ),
    )
)

_SERVICE_NETWORKS = OneOf(
    (
        _LIST_OF_STRINGS,
        Object(
            closed=True,
            extensions=False,
            pattern=NAME_PATTERN,
            entries=OneOf(
                (
                    _obj(
                        {
                            "aliases": _LIST_OF_STRINGS,
                            "interface_name": _STR,
                            "ipv4_address": _STR,
                            "ipv6_address": _STR,
                            "link_local_ips": _LIST_OF_STRINGS,
                            "mac_address": _STR,
                            "driver_opts": _DRIVER_OPTS,
                            "priority": _NUM,
                            "gw_priority": _NUM,
                        }
                    ),
                    _s(NULL),
                )
            ),
        ),
    )
)

_SERVICE_MODELS = OneOf(
    (
        _LIST_OF_STRINGS,
        Object(
            closed=False,
            extensions=False,
            pattern=NAME_PATTERN,
            entries=OneOf((_obj({"endpoint_var": _STR, "model_var": _STR}), _s(NULL))),
        ),
    )
)

_PORTS = Array(
    OneOf(
        (
            _s(NUMBER),
            _STR,
            _obj(
                {
                    "name": _STR,
                    "mode": _STR,
                    "host_ip": _STR,
                    "target": _INT,
                    "published": _s(STRING, INTEGER),
                    "protocol": _STR,
                    "app_protocol": _STR,
                }
            ),
        )
    ),
    unique=True,
)

_SERVICE_VOLUMES = Array(
    OneOf(
        (
            _STR,
            _obj(
                {
                    "type": _s(
                        STRING, enum=("bind", "volume", "tmpfs", "cluster", "npipe", "image")
                    ),
                    "source": _STR,
                    "target": _STR,
                    "read_only": _BOOL,
                    "consistency": _STR,
                    "bind": _obj(
                        {
                            "propagation": _STR,
                            "create_host_path": _BOOL,
                            "recursive": _s(
                                STRING, enum=("enabled", "disabled", "writable", "readonly")
                            ),
                            "selinux": _s(STRING, enum=("z", "Z")),
                        }
                    ),
                    "volume": _obj({"labels": _LIST_OR_DICT, "nocopy": _BOOL, "subpath": _STR}),
                    "tmpfs": _obj(
                        {
                            "size": OneOf((Scalar((INTEGER,), minimum=0), _STR)),
                            "mode": _NUM,
                        }
                    ),
                    "image": _obj({"subpath": _STR}),
                },
                required=("type",),
            ),
        )
    ),
    unique=True,
)

_ENV_FILE = OneOf(
    (
        _STR,
        Array(
            OneOf(
                (
                    _STR,
                    _obj(
                        {"path": _STR, "format": _STR, "required": _BOOL},
                        extensions=False,
                        required=("path",),
                    ),
                )
            )
        ),
    )
)

# compose-spec definitions.service.properties, in the schema's order.
SERVICE_PROPERTIES: Mapping[str, Node] = {
    "develop": _DEVELOPMENT,
    "deploy": _DEPLOYMENT,
    "annotations": _LIST_OR_DICT,
    "attach": _BOOL,
    "build": _BUILD,
    "blkio_config": _obj(
        {
            "device_read_bps": Array(_BLKIO_LIMIT),
            "device_read_iops": Array(_BLKIO_LIMIT),
            "device_write_bps": Array(_BLKIO_LIMIT),
            "device_write_iops": Array(_BLKIO_LIMIT),
            "weight": _INT,
            "weight_device": Array(_BLKIO_WEIGHT),
        },
        extensions=False,
    ),
    "cap_add": _LIST_OF_STRINGS,
    "cap_drop": _LIST_OF_STRINGS,
    "cgroup": _s(STRING, enum=("host", "private")),
    "cgroup_parent": _STR,
    "command": _COMMAND,
    "configs": _SERVICE_CONFIG_OR_SECRET,
    # compose-spec (and moby's validContainerNamePattern, anchored there): 2+ characters.
    "container_name": Scalar((STRING,), pattern="[a-zA-Z0-9][a-zA-Z0-9_.-]+"),
    "cpu_count": OneOf((_STR, Scalar((INTEGER,), minimum=0))),
    "cpu_percent": OneOf((_STR, Scalar((INTEGER,), minimum=0, maximum=100))),
    "cpu_shares": _NUM_OR_STR,
    "cpu_quota": _NUM_OR_STR,
    "cpu_period": _NUM_OR_STR,
    "cpu_rt_period": _NUM_OR_STR,
    "cpu_rt_runtime": _NUM_OR_STR,
    "cpus": _NUM_OR_STR,
    "cpuset": _STR,
    "credential_spec": _obj({"config": _STR, "file": _STR, "registry": _STR}),
    "depends_on": _DEPENDS_ON,
    "device_cgroup_rules": _LIST_OF_STRINGS,
    "devices": Array(
        OneOf(
            (
                _STR,
                _obj(
                    {"source": _STR, "target": _STR, "permissions": _STR},
                    required=("source",),
                ),
            )
        )
    ),
    "dns": _STRING_OR_LIST,
    "dns_opt": _LIST_OF_STRINGS,
    "dns_search": _STRING_OR_LIST,
    "domainname": _STR,
    "entrypoint": _COMMAND,
    "env_file": _ENV_FILE,
    "label_file": OneOf((_STR, _STRING_ARRAY)),
    "environment": _LIST_OR_DICT,
    "expose": Array(_s(STRING, NUMBER), unique=True),
    "extends": OneOf(
        (_STR, _obj({"service": _STR, "file": _STR}, extensions=False, required=("service",)))
    ),
    "provider": _obj(
        {
            "type": _STR,
            "options": Object(
                closed=False,
                extensions=False,
                pattern="^.+$",
                entries=OneOf((_s(STRING, NUMBER, BOOLEAN), Array(_s(STRING, NUMBER, BOOLEAN)))),
            ),
        },
        required=("type",),
    ),
    "external_links": _LIST_OF_STRINGS,
    "extra_hosts": _EXTRA_HOSTS,
    "gpus": OneOf((_s(STRING, enum=("all",)), Array(_obj(_DEVICE_REQUEST_PROPS)))),
    "group_add": Array(_s(STRING, NUMBER), unique=True),
    "healthcheck": _HEALTHCHECK,
    "hostname": _STR,
    "image": _STR,
    "init": _BOOL,
    "ipc": _STR,
    "isolation": _STR,
    "labels": _LIST_OR_DICT,
    "links": _LIST_OF_STRINGS,
    "logging": _obj(
        {
            "driver": _STR,
            "options": Object(
                closed=False,
                extensions=False,
                pattern="^.+$",
                entries=_s(STRING, NUMBER, NULL),
            ),
        }
    ),
    "mac_address": _STR,
    "mem_limit": _NUM_OR_STR,
    "mem_reservation": _s(STRING, INTEGER),
    "mem_swappiness": _INT_OR_STR,
    "memswap_limit": _NUM_OR_STR,
    "network_mode": _STR,
    "models": _SERVICE_MODELS,
    "networks": _SERVICE_NETWORKS,
    "oom_kill_disable": _BOOL,
    "oom_score_adj": OneOf((_STR, Scalar((INTEGER,), minimum=-1000, maximum=1000))),
    "pid": _s(STRING, NULL),
    "pids_limit": _NUM_OR_STR,
    "platform": _STR,
    "ports": _PORTS,
    "pre_start": Array(_PRE_START_HOOK),
    "post_start": Array(_SERVICE_HOOK),
    "pre_stop": Array(_SERVICE_HOOK),
    "privileged": _BOOL,
    "profiles": _LIST_OF_STRINGS,
    # compose-spec: a pattern (1.29.2's cut had the enum always/never/if_not_present/build).
    "pull_policy": Scalar(
        (STRING,),
        pattern="always|never|build|if_not_present|missing|refresh|daily|weekly"
        "|every_([0-9]+[wdhms])+",
    ),
    "pull_refresh_after": _STR,
    "read_only": _BOOL,
    "restart": _STR,
    "runtime": _STR,
    "scale": _INT_OR_STR,
    "security_opt": _LIST_OF_STRINGS,
    "shm_size": _NUM_OR_STR,
    "secrets": _SERVICE_CONFIG_OR_SECRET,
    "sysctls": _LIST_OR_DICT,
    "stdin_open": _BOOL,
    "stop_grace_period": _STR,
    "stop_signal": _STR,
    "storage_opt": Object(closed=False, extensions=False),
    "tmpfs": _STRING_OR_LIST,
    "tty": _BOOL,
    "ulimits": _ULIMITS,
    "use_api_socket": _BOOL,
    "user": _STR,
    "uts": _STR,
    "userns_mode": _STR,
    # TOLERANCE: Compose file format 2.x's volume_driver (1.29.2 config_schema_v2.x; not in
    # the compose-spec) is kept because the model builder implements it.
    "volume_driver": _STR,
    "volumes": _SERVICE_VOLUMES,
    "volumes_from": _LIST_OF_STRINGS,
    "working_dir": _STR,
}

SERVICE = Object(properties=SERVICE_PROPERTIES)

_EXTERNAL = _BOOL
_EXTERNAL_OBJECT = _obj({"name": _STR})

NETWORK = _obj(
    {
        "name": _STR,
        "driver": _STR,
        "driver_opts": _DRIVER_OPTS,
        "ipam": _obj(
            {
                "driver": _STR,
                "config": Array(
                    _obj(
                        {
                            "subnet": _STR,
                            "ip_range": _STR,
                            "gateway": _STR,
                            "aux_addresses": Object(
                                closed=True, extensions=False, pattern="^.+$", entries=_STR
                            ),
                        }
                    )
                ),
                "options": Object(closed=True, extensions=False, pattern="^.+$", entries=_STR),
            }
        ),
        "external": OneOf((_EXTERNAL, _EXTERNAL_OBJECT)),
        "internal": _BOOL,
        "enable_ipv4": _BOOL,
        "enable_ipv6": _BOOL,
        "attachable": _BOOL,
        "labels": _LIST_OR_DICT,
    },
    nullable=True,
)

VOLUME = _obj(
    {
        "name": _STR,
        "driver": _STR,
        "driver_opts": _DRIVER_OPTS,
        "external": OneOf((_EXTERNAL, _EXTERNAL_OBJECT)),
        "labels": _LIST_OR_DICT,
    },
    nullable=True,
)

# The schema leaves secrets' and configs' "external" objects open (no additionalProperties).
_OPEN_EXTERNAL = OneOf((_EXTERNAL, _obj({"name": _STR}, closed=False)))

SECRET = _obj(
    {
        "name": _STR,
        "environment": _STR,
        "file": _STR,
        "external": _OPEN_EXTERNAL,
        "labels": _LIST_OR_DICT,
        "driver": _STR,
        "driver_opts": _DRIVER_OPTS,
        "template_driver": _STR,
    }
)

CONFIG = _obj(
    {
        "name": _STR,
        "content": _STR,
        "environment": _STR,
        "file": _STR,
        "external": _OPEN_EXTERNAL,
        "labels": _LIST_OR_DICT,
        "template_driver": _STR,
    }
)

# Top-level sections: name → (entry node, whether names outside NAME_PATTERN are refused).
# The schema refuses them for volumes, secrets and configs but not for networks.
SECTIONS: Mapping[str, tuple[Node, bool]] = {
    "networks": (NETWORK, False),
    "volumes": (VOLUME, True),
    "secrets": (SECRET, True),
    "configs": (CONFIG, True),
}
