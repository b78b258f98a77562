"""Differential test: our compose-spec validation against the official schema, run by 1.29.2.

docker-compose 1.29.2 validates every 2.x/3.x/compose-spec file against the compose-spec
schema it ships (``compose/config/compose_spec.json``) with ``jsonschema``. This test builds
a seeded corpus (the compose-spec/2.x/3.x files under tests/ and examples/, hand-written
full-featured documents, and mutations of them: an unknown key and an ``x-`` key in every
object, every key removed, every value replaced by values of other JSON types, every string
replaced by a value no enum has, list items duplicated and dropped), validates each document
with our loader (``formats.to_spec_shape``, the stage that runs ``schema.py``) and with that
schema in ONE subprocess of the reference venv's python (all documents through stdin as
JSON, verdicts back), and asserts:

- the same accept/reject verdict for every document, except where a commented entry of
  ``DIVERGENCES`` says why the verdicts legitimately differ (keys and forms newer than the
  1.29.2 cut of the schema, the loader's documented tolerances);
- for every document we reject: the error names the file, and, inside ``services``, the
  service, and its key path is on the path of the mutation;
- the hand-written documents using keys the compose-spec added later (``NEWER_FEATURED``)
  are accepted by us and refused by 1.29.2 (so they do test something newer).

The seed decides which type replacements are made (each with probability 3/4) and, past
``MAX_DOCUMENTS``, which mutations are kept.

Not compared: the schema's ``format`` keywords (port, expose and subnet syntax), which
1.29.2 checks with its own format checker and which our model builder parses; they are
left out of the reference run, so both sides judge structure only.

A failure prints the seed; ``DOCKYARD_SCHEMA_SEED=<seed>`` replays the same corpus.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dockyard.compose.loader.errors import ComposeFileError
from dockyard.compose.loader.formats import detect_format, to_spec_shape
from dockyard.compose.loader.yaml12 import parse_yaml
from tests.support.compose_reference import docker_compose_or_fail

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
FILE = "/srv/project/compose.yaml"  # the name our errors must carry
MAX_DOCUMENTS = 6000  # a bound on one run: mutations beyond it are sampled by the seed
REFERENCE_TIMEOUT_S = 240.0

# Runs in the reference venv: the schema 1.29.2 ships, validated the way 1.29.2's
# validate_against_config_schema does (Draft4Validator, its RefResolver base), without the
# format checker (see the module docstring). One verdict per document, in order.
REFERENCE_SCRIPT = r"""
import json, os, sys
import compose.config
from jsonschema import Draft4Validator, RefResolver

config_dir = os.path.dirname(compose.config.__file__)
with open(os.path.join(config_dir, "compose_spec.json")) as f:
    schema = json.load(f)
validator = Draft4Validator(schema, resolver=RefResolver("file:" + config_dir + "/", schema))
out = []
for doc in json.load(sys.stdin):
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))
    out.append([not errors, [".".join(map(str, e.path)) + ": " + e.message for e in errors[:2]]])
json.dump(out, sys.stdout)
"""


@dataclass(frozen=True)
class Divergence:
    """Where our verdict may legitimately differ from the 1.29.2 schema's.

    ``path``: regex on the mutated node's dotted path (indices dropped); ``kinds``: the
    mutation kinds it covers; ``we_accept``: the direction (we accept what 1.29.2 refuses,
    or the reverse).
    """

    path: str
    kinds: frozenset[str]
    we_accept: bool
    why: str


def _d(path: str, kinds: str, we_accept: bool, why: str) -> Divergence:
    return Divergence(path, frozenset(kinds.split()), we_accept, why)


_LIST_OR_DICT_KEYS = (
    r"(environment|labels|args|sysctls|annotations|options|ssh|additional_contexts)"
)

# The allowlist. Each entry is a place where the compose-spec moved on after the cut 1.29.2
# ships, or a tolerance the loader keeps on purpose (schema_spec.py says which).
DIVERGENCES: tuple[Divergence, ...] = (
    # 1.29.2 checks `version` itself before the schema (ConfigFile.version: "^[1-3]+(\.\d+)?$"
    # and "1" refused); the schema alone only says "a string".
    _d(r"^version$", "bad-string", False, "1.29.2 refuses it outside the schema, as we do"),
    # compose-spec: these service keys take "integer or string" (our earlier table kept that).
    _d(
        r"^services\.[^.]+\.(cpu_count|cpu_percent|mem_swappiness|oom_score_adj|scale)$",
        "retype:string",
        True,
        "compose-spec widened them to integer or string",
    ),
    # compose-spec "command" definition: null resets the image's CMD/ENTRYPOINT.
    _d(r"^services\.[^.]+\.(command|entrypoint)$", "retype:null", True, "compose-spec: null"),
    # compose-spec list_or_dict values may be booleans (1.29.2: string, number, null).
    _d(rf"\.{_LIST_OR_DICT_KEYS}\.[^.]+$", "retype:boolean", True, "compose-spec: booleans"),
    # compose-spec extra_hosts: a mapping of host → address or list of addresses.
    _d(r"\.extra_hosts\.[^.]+$", "retype:array", True, "compose-spec: host → list"),
    # compose-spec: depends_on entries allow x- extensions (1.29.2: additionalProperties).
    _d(r"\.depends_on\.[^.]+$", "add-extension", True, "compose-spec: x- keys"),
    # compose-spec: long-form ports publish a range as a string ("8080-8081").
    _d(r"\.ports\.published$", "retype:string", True, "compose-spec: published string"),
    # compose-spec: tmpfs size takes a byte-size string ("64m").
    _d(r"\.volumes\.tmpfs\.size$", "retype:string", True, "compose-spec: size string"),
    # compose-spec: the long-form volume type is an enum (1.29.2: any string).
    _d(r"\.volumes\.type$", "bad-string", False, "compose-spec: type enum"),
    # compose-spec dropped uniqueItems from devices (long form added) and env_file (objects).
    _d(r"^services\.[^.]+\.(devices|env_file)$", "dup-item", True, "compose-spec: no unique"),
    # compose-spec: device requests require capabilities (1.29.2 did not).
    _d(r"\.reservations\.devices\.capabilities$", "remove-key", False, "compose-spec"),
)

# Keys of whole documents newer than the 1.29.2 schema; a corpus document using one is
# compared with the rule "we accept, 1.29.2 refuses" and not mutated.
NEWER_KEY_PATHS = (
    r"^name$",
    r"^services\.[^.]+\.(develop|attach|annotations|cgroup|gpus|label_file|post_start|pre_stop"
    r"|pre_start|provider|models|use_api_socket|pull_refresh_after|uts|volume_driver)$",
)


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path if isinstance(part, str))


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


# Replacement values, one per JSON type (the integer is negative so that bounds are hit).
RETYPES: tuple[Any, ...] = (True, -5000, 1.5, "zz-string", ["zz"], {"zz": "v"}, None)


@dataclass(frozen=True)
class Case:
    """One document of the corpus: where it came from and what was changed."""

    origin: str
    doc: Any
    path: tuple[str | int, ...] = ()
    kind: str = "base"


def _get(doc: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _with(doc: Any, path: tuple[str | int, ...], change: Any) -> Any:
    out = copy.deepcopy(doc)
    parent = _get(out, path[:-1])
    change(parent, path[-1])
    return out


def _nodes(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _nodes(sub, (*path, key))
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            yield from _nodes(sub, (*path, index))


def mutations(origin: str, doc: dict[str, Any], rng: random.Random) -> Iterator[Case]:
    """Every mutation of ``doc`` below its sections, plus the top-level key checks."""
    yield Case(origin, {**doc, "zz_unknown": "v"}, ("zz_unknown",), "add-unknown")
    yield Case(origin, {**doc, "x-zz": {"a": 1}}, ("x-zz",), "add-extension")
    for section in ("services", "networks", "volumes", "configs", "secrets"):
        if not isinstance(doc.get(section), dict):
            continue
        for path, value in _nodes(doc[section], (section,)):
            if len(path) >= 2:
                for retype in RETYPES:
                    kind = _json_kind(retype)
                    if kind != _json_kind(value) and rng.random() < 0.75:
                        yield Case(
                            origin,
                            _with(doc, path, lambda p, k, r=retype: p.__setitem__(k, r)),
                            path,
                            f"retype:{kind}",
                        )
                if isinstance(path[-1], str) and len(path) >= 3:
                    yield Case(origin, _with(doc, path, lambda p, k: p.pop(k)), path, "remove-key")
                if isinstance(value, str):
                    yield Case(
                        origin,
                        _with(doc, path, lambda p, k: p.__setitem__(k, "zz-not-in-any-enum")),
                        path,
                        "bad-string",
                    )
            if isinstance(value, dict):
                for key, kind in (("zz_unknown", "add-unknown"), ("x-zz", "add-extension")):
                    yield Case(
                        origin,
                        _with(doc, (*path, key), lambda p, k: p.__setitem__(k, "v")),
                        path,
                        kind,
                    )
            if isinstance(value, list) and value:
                yield Case(
                    origin,
                    _with(doc, (*path, 0), lambda p, k: p.append(copy.deepcopy(p[k]))),
                    path,
                    "dup-item",
                )
                yield Case(origin, _with(doc, (*path, 0), lambda p, k: p.pop(k)), path, "drop-item")


def corpus_files() -> dict[str, dict[str, Any]]:
    """The compose-spec/2.x/3.x files under tests/ and examples/, parsed (JSON-clean)."""
    found: dict[str, dict[str, Any]] = {}
    for root in ("tests", "examples"):
        for path in sorted((REPO / root).rglob("*")):
            if path.suffix not in (".yml", ".yaml") or not path.is_file():
                continue
            try:
                doc = parse_yaml(path.read_text(), str(path))
                if not isinstance(doc, dict) or detect_format(doc, str(path)) not in (
                    "spec",
                    "v2",
                    "v3",
                ):
                    continue
            except ComposeFileError:
                continue
            found[str(path.relative_to(REPO))] = json.loads(json.dumps(doc))
    return found


# Hand-written documents using every structure the 1.29.2 schema has, each valid for it.
FULL_FEATURED: dict[str, dict[str, Any]] = {
    "full-services": {
        "version": "3.9",
        "x-defaults": {"restart": "always"},
        "services": {
            "web": {
                "build": {
                    "context": ".",
                    "dockerfile": "Dockerfile",
                    "args": {"A": "1", "B": 2, "C": None},
                    "labels": ["a=b"],
                    "cache_from": ["img:cache"],
                    "network": "host",
                    "target": "dev",
                    "shm_size": "64m",
                    "extra_hosts": ["somehost:162.242.195.82"],
                    "isolation": "default",
                    "x-note": "kept",
                },
                "image": "web:dev",
                "command": ["python", "app.py"],
                "entrypoint": "/entry.sh",
                "environment": {"DEBUG": "1", "PORT": 8000, "EMPTY": None},
                "labels": {"com.example.tier": "front"},
                "ports": [
                    "8000:80",
                    9000,
                    {"target": 80, "published": 8080, "protocol": "tcp", "mode": "host"},
                ],
                "expose": ["3000", 4000],
                "volumes": [
                    ".:/code",
                    {
                        "type": "bind",
                        "source": "./data",
                        "target": "/data",
                        "read_only": True,
                        "consistency": "cached",
                        "bind": {"propagation": "rprivate"},
                    },
                    {"type": "volume", "source": "db", "target": "/db", "volume": {"nocopy": True}},
                    {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": 1000}},
                ],
                "networks": {
                    "front": {
                        "aliases": ["www"],
                        "ipv4_address": "172.16.238.10",
                        "ipv6_address": "2001:3984:3989::10",
                        "link_local_ips": ["57.123.22.11"],
                        "priority": 100,
                    },
                    "back": None,
                },
                "depends_on": {
                    "db": {"condition": "service_healthy"},
                    "cache": {"condition": "service_started"},
                },
                "healthcheck": {
                    "test": ["CMD", "curl", "-f", "http://localhost"],
                    "interval": "1m30s",
                    "timeout": "10s",
                    "retries": 3,
                    "start_period": "40s",
                    "disable": False,
                },
                "deploy": {
                    "mode": "replicated",
                    "replicas": 2,
                    "endpoint_mode": "vip",
                    "labels": {"a": "b"},
                    "resources": {
                        "limits": {"cpus": "0.5", "memory": "50M"},
                        "reservations": {
                            "cpus": 0.25,
                            "memory": "20M",
                            "generic_resources": [
                                {"discrete_resource_spec": {"kind": "gpu", "value": 2}}
                            ],
                            "devices": [
                                {
                                    "capabilities": ["gpu"],
                                    "count": 1,
                                    "device_ids": ["0"],
                                    "driver": "nvidia",
                                    "options": {"virtualization": "false"},
                                }
                            ],
                        },
                    },
                    "restart_policy": {
                        "condition": "on-failure",
                        "delay": "5s",
                        "max_attempts": 3,
                        "window": "120s",
                    },
                    "update_config": {
                        "parallelism": 2,
                        "delay": "10s",
                        "failure_action": "rollback",
                        "monitor": "5s",
                        "max_failure_ratio": 0.3,
                        "order": "start-first",
                    },
                    "rollback_config": {"parallelism": 1, "order": "stop-first"},
                    "placement": {
                        "constraints": ["node.role == manager"],
                        "preferences": [{"spread": "node.labels.zone"}],
                        "max_replicas_per_node": 1,
                    },
                },
                "logging": {"driver": "json-file", "options": {"max-size": "1m", "max-file": 3}},
                "ulimits": {"nproc": 65535, "nofile": {"soft": 20000, "hard": 40000}},
                "blkio_config": {
                    "weight": 300,
                    "weight_device": [{"path": "/dev/sda", "weight": 400}],
                    "device_read_bps": [{"path": "/dev/sdb", "rate": "12mb"}],
                    "device_write_iops": [{"path": "/dev/sdb", "rate": 30}],
                },
                "secrets": ["token", {"source": "cert", "target": "c.pem", "mode": 288}],
                "configs": [{"source": "conf", "target": "/etc/app.conf", "uid": "1", "gid": "1"}],
                "credential_spec": {"file": "my-credential-spec.json"},
                "cap_add": ["NET_ADMIN"],
                "cap_drop": ["ALL"],
                "dns": ["8.8.8.8", "9.9.9.9"],
                "dns_search": "example.com",
                "dns_opt": ["use-vc"],
                "env_file": ["common.env"],
                "extra_hosts": ["somehost:162.242.195.82"],
                "group_add": ["mail", 42],
                "sysctls": {"net.core.somaxconn": 1024},
                "tmpfs": ["/run"],
                "security_opt": ["label:user:USER"],
                "stop_grace_period": "1m",
                "stop_signal": "SIGUSR1",
                "init": True,
                "tty": True,
                "stdin_open": False,
                "privileged": False,
                "read_only": False,
                "user": "1000",
                "working_dir": "/code",
                "hostname": "web",
                "domainname": "example.com",
                "mem_limit": "1g",
                "mem_reservation": "512m",
                "memswap_limit": 2000000000,
                "mem_swappiness": 60,
                "cpus": 1.5,
                "cpu_shares": 512,
                "cpu_count": 2,
                "cpu_percent": 50,
                "oom_score_adj": 500,
                "pids_limit": 100,
                "shm_size": "64m",
                "pull_policy": "always",
                "profiles": ["web"],
                "restart": "unless-stopped",
                "storage_opt": {"size": "20G"},
                "x-tag": {"any": ["thing"]},
            },
            "db": {
                "image": "postgres",
                "extends": {"file": "base.yml", "service": "database"},
                "networks": ["back"],
                "volumes": ["db:/var/lib/postgresql/data"],
                "devices": ["/dev/ttyUSB0:/dev/ttyUSB0"],
                "depends_on": ["cache"],
                "environment": ["POSTGRES_DB=app"],
                "links": ["cache:redis"],
                "external_links": ["other_db"],
                "volumes_from": ["cache:ro"],
                "network_mode": "bridge",
                "pid": None,
                "ipc": "shareable",
                "platform": "linux/amd64",
                "runtime": "runc",
                "isolation": "default",
                "cgroup_parent": "m-executor-abcd",
                "container_name": "my-db",
                "userns_mode": "host",
                "mac_address": "02:42:ac:11:65:43",
                "oom_kill_disable": True,
                "scale": 1,
                "deploy": None,
            },
            "cache": {
                "build": "./cache",
                "extends": "base",
                "command": "redis-server",
                "healthcheck": {"test": "redis-cli ping"},
                "labels": ["a=b", "c=d"],
                "sysctls": ["net.core.somaxconn=1024"],
                "dns": "1.1.1.1",
            },
        },
        "networks": {
            "front": {
                "driver": "bridge",
                "driver_opts": {"com.docker.network.bridge.name": "br0", "mtu": 1500},
                "ipam": {
                    "driver": "default",
                    "config": [
                        {
                            "subnet": "172.16.238.0/24",
                            "ip_range": "172.16.238.128/25",
                            "gateway": "172.16.238.1",
                            "aux_addresses": {"host1": "172.16.238.5"},
                        }
                    ],
                    "options": {"foo": "bar"},
                },
                "internal": False,
                "attachable": True,
                "enable_ipv6": True,
                "labels": ["tier=front"],
                "name": "front-net",
                "x-note": "kept",
            },
            "back": None,
            "outside": {"external": True},
            "legacy": {"external": {"name": "legacy-net"}},
        },
        "volumes": {
            "db": {
                "driver": "local",
                "driver_opts": {"type": "nfs", "o": "addr=10.40.0.199,nolock,soft,rw"},
                "labels": {"a": "b"},
                "name": "db-data",
            },
            "shared": {"external": True},
            "old": {"external": {"name": "old-data"}},
            "plain": None,
        },
        "secrets": {
            "token": {"file": "./token.txt"},
            "cert": {"external": True, "name": "cert-v2"},
            "legacy": {"external": {"name": "legacy-secret"}},
            "labelled": {"file": "./x", "labels": ["a=b"], "template_driver": "golang"},
        },
        "configs": {
            "conf": {"file": "./app.conf", "labels": {"a": "b"}},
            "shared": {"external": True, "name": "shared-conf"},
            "driven": {"file": "./d.conf", "template_driver": "golang"},
        },
    },
    "minimal-spec": {"services": {"app": {"image": "busybox", "command": "true"}}},
    "v2-style": {
        "version": "2.4",
        "services": {
            "app": {
                "build": "./app",
                "mem_limit": 536870912,
                "cpu_shares": 73,
                "cpu_quota": "50000",
                "networks": ["front"],
                "depends_on": ["db"],
                "volumes": ["data:/data:ro", "/var/run/docker.sock:/var/run/docker.sock"],
                "healthcheck": {"test": ["NONE"]},
                "restart": "on-failure:3",
                "logging": {"driver": "syslog"},
            },
            "db": {"image": "mysql", "environment": ["MYSQL_ALLOW_EMPTY_PASSWORD=yes"]},
        },
        "networks": {
            "front": {"driver": "bridge", "ipam": {"config": [{"subnet": "10.1.0.0/16"}]}}
        },
        "volumes": {"data": {}},
    },
}

# Hand-written documents using keys and forms the compose-spec added after the 1.29.2 cut:
# our loader must accept them (1.29.2 refuses; compared with the NEWER_KEY_PATHS rule).
NEWER_FEATURED: dict[str, dict[str, Any]] = {
    "newer-features": {
        "name": "newer",
        "services": {
            "web": {
                "image": "web",
                "attach": False,
                "annotations": {"com.example.a": "b"},
                "cgroup": "host",
                "uts": "host",
                "use_api_socket": True,
                "label_file": ["./labels"],
                "env_file": ["a.env", {"path": "b.env", "required": False, "format": "raw"}],
                "depends_on": {
                    "db": {"condition": "service_healthy", "restart": True, "required": False}
                },
                "develop": {
                    "watch": [
                        {"path": "./src", "action": "sync", "target": "/src", "ignore": ["*.pyc"]},
                        {"path": "./req.txt", "action": "rebuild"},
                    ]
                },
                "post_start": [{"command": ["touch", "/ready"], "user": "root"}],
                "pre_stop": [{"command": "sync", "privileged": True}],
                "gpus": "all",
                "devices": [{"source": "/dev/fuse", "permissions": "rwm"}],
                "ports": [
                    {
                        "name": "web",
                        "target": 80,
                        "published": "8080-8081",
                        "host_ip": "127.0.0.1",
                        "app_protocol": "http",
                    }
                ],
                "volumes": [
                    {
                        "type": "bind",
                        "source": ".",
                        "target": "/c",
                        "bind": {"create_host_path": True, "selinux": "z"},
                    },
                    {
                        "type": "volume",
                        "source": "data",
                        "target": "/d",
                        "volume": {"subpath": "sub"},
                    },
                    {"type": "image", "source": "img", "target": "/i", "image": {"subpath": "etc"}},
                    {"type": "tmpfs", "target": "/t", "tmpfs": {"size": "64m", "mode": 1777}},
                ],
                "build": {
                    "context": ".",
                    "dockerfile_inline": "FROM busybox",
                    "additional_contexts": {"base": "../base"},
                    "ssh": ["default"],
                    "tags": ["web:1"],
                    "platforms": ["linux/amd64"],
                    "secrets": ["token"],
                    "no_cache": True,
                    "pull": True,
                    "privileged": False,
                },
                "networks": {
                    "front": {
                        "interface_name": "eth1",
                        "mac_address": "02:42:ac:11:00:02",
                        "driver_opts": {"a": "b"},
                        "gw_priority": 1,
                    }
                },
                "healthcheck": {"test": "true", "start_interval": "1s"},
                "deploy": {"resources": {"limits": {"pids": 100}}},
                "command": None,
                "extra_hosts": {"host.docker.internal": "host-gateway"},
                "environment": {"FLAG": True},
            },
            "db": {"image": "db"},
        },
        "networks": {"front": {"enable_ipv4": True}},
        "volumes": {"data": None},
        "secrets": {"token": {"environment": "TOKEN"}},
        "configs": {"inline": {"content": "hello"}},
    },
}


def reference_verdicts(python: Path, docs: list[Any]) -> list[tuple[bool, list[str]]]:
    """All documents through one reference-venv python: (valid, first errors) per document."""
    result = subprocess.run(
        [str(python), "-c", REFERENCE_SCRIPT],
        input=json.dumps(docs),
        capture_output=True,
        text=True,
        timeout=REFERENCE_TIMEOUT_S,
        check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
    )
    if result.returncode != 0:
        pytest.fail(f"reference validator exited {result.returncode}:\n{result.stderr[-4000:]}")
    verdicts = json.loads(result.stdout)
    assert len(verdicts) == len(docs)
    return [(bool(ok), list(errors)) for ok, errors in verdicts]


def our_verdict(doc: Any) -> ComposeFileError | None:
    """None when our loader's validation accepts ``doc``, else its error."""
    try:
        to_spec_shape(copy.deepcopy(doc), FILE)
    except ComposeFileError as err:
        return err
    return None


def divergence_allowed(case: Case, we_accept: bool) -> bool:
    # Keys may hold dots themselves (sysctls' "net.core.somaxconn"): hide them from the rules.
    dotted = ".".join(part.replace(".", "_") for part in case.path if isinstance(part, str))
    return any(
        rule.we_accept == we_accept and case.kind in rule.kinds and re.search(rule.path, dotted)
        for rule in DIVERGENCES
    )


def uses_newer_keys(doc: Any) -> bool:
    return any(
        re.search(pattern, _dotted(path))
        for path, _ in _nodes(doc, ())
        for pattern in NEWER_KEY_PATHS
    )


def error_problems(case: Case, err: ComposeFileError) -> list[str]:
    """What is wrong with where our error says the problem is (empty: nothing)."""
    problems = []
    if err.file != FILE or not str(err).startswith(f"{FILE}: "):
        problems.append("error does not name the file")
    dotted = _dotted(case.path)
    if case.path[:1] == ("services",) and len(case.path) >= 2:
        service = str(case.path[1])
        if err.service != service or f"services.{service}" not in err.message:
            problems.append(f"error does not name service {service!r}")
    key = err.key or ""
    in_service = case.path[:1] == ("services",) and len(case.path) >= 2
    if not (key.startswith(dotted) or dotted.startswith(key)) or (
        in_service and not key.startswith(f"services.{case.path[1]}")
    ):
        problems.append(f"error key {key!r} is not on the mutated path {dotted!r}")
    return problems


def test_verdicts_match_the_official_schema() -> None:
    seed = int(os.environ.get("DOCKYARD_SCHEMA_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    python = docker_compose_or_fail().parent / "python"

    bases = {**corpus_files(), **FULL_FEATURED, **NEWER_FEATURED}
    assert any(origin.startswith("examples/") for origin in bases), "no example files found"
    cases = [Case(origin, doc) for origin, doc in bases.items()]
    mutated = [
        case
        for origin, doc in bases.items()
        if not uses_newer_keys(doc)
        for case in mutations(origin, doc, rng)
    ]
    if len(mutated) > MAX_DOCUMENTS:
        mutated = rng.sample(mutated, MAX_DOCUMENTS)
    cases.extend(mutated)
    docs = [json.loads(json.dumps(case.doc)) for case in cases]
    reference = reference_verdicts(python, docs)

    mismatches: list[str] = []
    misplaced: list[str] = []
    for case, doc, (ref_ok, ref_errors) in zip(cases, docs, reference, strict=True):
        err = our_verdict(doc)
        ours_ok = err is None
        where = f"{case.origin} {case.kind} at {_dotted(case.path) or '<top>'} {case.path!r}"
        if ours_ok != ref_ok:
            legit = (
                uses_newer_keys(doc) and ours_ok
                if case.kind == "base"
                else divergence_allowed(case, ours_ok)
            )
            if not legit:
                mismatches.append(
                    f"{where}: ours {'accepts' if ours_ok else 'refuses: ' + str(err)}; "
                    f"1.29.2 {'accepts' if ref_ok else 'refuses: ' + '; '.join(ref_errors)}"
                )
        if case.kind == "base" and case.origin in NEWER_FEATURED and (not ours_ok or ref_ok):
            # These documents exist to prove that we accept what the compose-spec added
            # (and that they really go beyond what 1.29.2 accepts).
            mismatches.append(f"{where}: ours: {err}; 1.29.2 accepts: {ref_ok}")
        if err is not None and not ref_ok and case.kind != "base":
            misplaced.extend(f"{where}: {problem}: {err}" for problem in error_problems(case, err))

    report = "\n".join([*mismatches[:25], *misplaced[:25]])
    assert not mismatches and not misplaced, (
        f"seed {seed} (replay: DOCKYARD_SCHEMA_SEED={seed}); {len(cases)} documents, "
        f"{len(mismatches)} verdict mismatches, {len(misplaced)} misplaced errors:\n{report}"
    )
