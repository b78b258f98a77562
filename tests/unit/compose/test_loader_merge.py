"""Several files merged with Compose's rules, key by key."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.compose.loader import ComposeFileError, LoadOptions, load_config
from dockyard.compose.loader.merge import SERVICE_MERGE_RULES, merge_services

pytestmark = pytest.mark.unit

PROJECT = "/srv/app"


def load_files(*texts: str, environ: dict[str, str] | None = None) -> dict[str, Any]:
    paths = [f"{PROJECT}/compose{i}.yml" for i in range(len(texts))]
    contents: dict[str, str | None] = dict(zip(paths, texts, strict=True))
    return load_config(paths, contents, LoadOptions(PROJECT, environ or {})).config


def merged_web(base: str, override: str) -> dict[str, Any]:
    indent = "\n".join("    " + line for line in base.strip().splitlines())
    indent2 = "\n".join("    " + line for line in override.strip().splitlines())
    config = load_files(
        f"services:\n  web:\n    image: base\n{indent}\n",
        f"services:\n  web:\n{indent2}\n",
        environ={"COMPOSE_PROFILES": "*"},
    )
    web: dict[str, Any] = config["services"]["web"]
    return web


@pytest.mark.parametrize(
    ("base", "override", "key", "expected"),
    [
        # scalars and argv: replaced
        ("restart: always", "restart: 'no'", "restart", "no"),
        ("command: a b", "command: [c]", "command", ["c"]),
        ("entrypoint: [sh, -c]", "entrypoint: bash", "entrypoint", "bash"),
        ("user: '1'", "image: other", "image", "other"),
        # mappings by key, list and mapping forms mixed
        (
            "environment: [A=1, B=2]",
            "environment: {B: '3', C: '4'}",
            "environment",
            {"A": "1", "B": "3", "C": "4"},
        ),
        ("labels: {a: '1'}", "labels: [b=2, a=9]", "labels", {"a": "9", "b": "2"}),
        ("sysctls: [x=1]", "sysctls: {y: 2}", "sysctls", {"x": "1", "y": "2"}),
        (
            "extra_hosts: ['a:1.1.1.1']",
            "extra_hosts: ['b:::1']",
            "extra_hosts",
            {"a": "1.1.1.1", "b": "::1"},
        ),
        (
            "ulimits: {nofile: 10, nproc: 5}",
            "ulimits: {nofile: {soft: 1, hard: 2}}",
            "ulimits",
            {"nofile": {"soft": 1, "hard": 2}, "nproc": 5},
        ),
        (
            "depends_on: [db]",
            "depends_on: {cache: {condition: service_healthy}}",
            "depends_on",
            {"db": {"condition": "service_started"}, "cache": {"condition": "service_healthy"}},
        ),
        # sequences concatenated, duplicates once
        (
            "ports: ['80:80', '443:443']",
            "ports: ['80:80', '8080:8080']",
            "ports",
            ["80:80", "443:443", "8080:8080"],
        ),
        ("expose: ['1']", "expose: ['2', '1']", "expose", ["1", "2"]),
        ("external_links: [a]", "external_links: [b]", "external_links", ["a", "b"]),
        (
            "cap_add: [NET_ADMIN]",
            "cap_add: [SYS_TIME, NET_ADMIN]",
            "cap_add",
            ["NET_ADMIN", "SYS_TIME"],
        ),
        ("dns: 8.8.8.8", "dns: [1.1.1.1]", "dns", ["8.8.8.8", "1.1.1.1"]),
        (
            "dns_search: a.example",
            "dns_search: b.example",
            "dns_search",
            ["a.example", "b.example"],
        ),
        ("tmpfs: /run", "tmpfs: [/tmp, /run]", "tmpfs", ["/run", "/tmp"]),
        ("profiles: [a]", "profiles: [b]", "profiles", ["a", "b"]),
        (
            "security_opt: ['label:disable']",
            "security_opt: ['no-new-privileges']",
            "security_opt",
            ["label:disable", "no-new-privileges"],
        ),
        # links by alias
        (
            "links: [db, 'cache:c']",
            "links: ['db2:db', cache]",
            "links",
            ["db2:db", "cache:c", "cache"],
        ),
        # mounts by container path, in the base's position
        (
            "volumes: ['/a:/data', 'logs:/logs']",
            "volumes: ['/b:/data:ro', '/cfg:/etc/app']",
            "volumes",
            ["/b:/data:ro", "logs:/logs", "/cfg:/etc/app"],
        ),
        (
            "volumes: [{type: volume, source: v, target: /data}]",
            "volumes: ['/x:/data']",
            "volumes",
            ["/x:/data"],
        ),
        (
            "devices: ['/dev/a:/dev/xvda']",
            "devices: ['/dev/b:/dev/xvda']",
            "devices",
            ["/dev/b:/dev/xvda"],
        ),
        # per-network merge
        (
            "networks: {front: {aliases: [a]}, back: null}",
            "networks: {front: {aliases: [b], ipv4_address: 10.0.0.2}}",
            "networks",
            {"front": {"aliases": ["a", "b"], "ipv4_address": "10.0.0.2"}, "back": None},
        ),
        ("networks: [front]", "networks: [back]", "networks", {"front": None, "back": None}),
        # logging: options merge only while the driver stays
        (
            "logging: {driver: json-file, options: {max-size: 1m}}",
            "logging: {options: {max-file: '3'}}",
            "logging",
            {"driver": "json-file", "options": {"max-size": "1m", "max-file": "3"}},
        ),
        (
            "logging: {driver: json-file, options: {max-size: 1m}}",
            "logging: {driver: syslog, options: {tag: web}}",
            "logging",
            {"driver": "syslog", "options": {"tag": "web"}},
        ),
        # healthcheck: by key, "disable" replaces
        (
            "healthcheck: {test: [CMD, a], interval: 5s}",
            "healthcheck: {test: [CMD, b]}",
            "healthcheck",
            {"test": ["CMD", "b"], "interval": "5s"},
        ),
        (
            "healthcheck: {test: [CMD, a], interval: 5s}",
            "healthcheck: {disable: true}",
            "healthcheck",
            {"disable": True},
        ),
        # build: args/labels by key, context replaced
        (
            "build: {context: ., args: {A: '1'}, cache_from: [x]}",
            "build: {args: [B=2], cache_from: [y, x], target: dev}",
            "build",
            {
                "context": PROJECT,
                "args": {"A": "1", "B": "2"},
                "cache_from": ["x", "y"],
                "target": "dev",
            },
        ),
        ("build: .", "build: ./other", "build", {"context": f"{PROJECT}/other"}),
        # deploy: nested
        (
            "deploy: {replicas: 1, resources: {limits: {cpus: '1', memory: 1g}}}",
            "deploy: {resources: {limits: {memory: 2g}}, labels: [a=b]}",
            "deploy",
            {
                "replicas": 1,
                "resources": {"limits": {"cpus": "1", "memory": "2g"}},
                "labels": ["a=b"],
            },
        ),
    ],
)
def test_merge_rule_per_key(base: str, override: str, key: str, expected: Any) -> None:
    assert merged_web(base, override)[key] == expected


def test_every_rule_is_for_a_known_service_key() -> None:
    from dockyard.compose.loader.schema import SERVICE_KEY_TYPES

    assert set(SERVICE_MERGE_RULES) <= set(SERVICE_KEY_TYPES)


def test_new_services_and_sections_are_added_and_entries_merged() -> None:
    config = load_files(
        "name: first\nservices: {web: {image: a}}\n"
        "networks: {front: {driver: bridge, labels: {a: '1'}}}\nvolumes: {data: null}\n",
        "name: second\nservices: {db: {image: b}}\n"
        "networks: {front: {internal: true}}\nvolumes: {logs: {driver: local}}\n",
    )
    assert config["name"] == "second"
    assert set(config["services"]) == {"db", "web"}
    assert config["networks"] == {
        "front": {"driver": "bridge", "internal": True, "labels": {"a": "1"}}
    }
    assert config["volumes"] == {"data": {}, "logs": {"driver": "local"}}


def test_override_paths_resolve_against_the_project_directory() -> None:
    # Compose: "all paths in the files are relative to the base Compose file".
    config = load_config(
        ["/srv/app/compose.yml", "/srv/app/overrides/dev.yml"],
        {
            "/srv/app/compose.yml": "services: {web: {image: a}}\n",
            "/srv/app/overrides/dev.yml": "services: {web: {volumes: ['./src:/src']}}\n",
        },
        LoadOptions(PROJECT, {}),
    ).config
    assert config["services"]["web"]["volumes"] == ["/srv/app/src:/src"]


def test_v1_override_image_replaces_build_and_back() -> None:
    config = load_files(
        "web: {build: .}\ndb: {image: pg}\n", "web: {image: x}\ndb: {build: ./db}\n"
    )
    assert config["services"]["web"] == {"image": "x"}
    assert config["services"]["db"] == {"build": {"context": f"{PROJECT}/db"}}


def test_v2_override_keeps_both_image_and_build() -> None:
    config = load_files("services: {web: {build: .}}\n", "services: {web: {image: x}}\n")
    assert config["services"]["web"] == {"build": {"context": PROJECT}, "image": "x"}


def test_v1_and_v2_files_cannot_be_merged() -> None:
    with pytest.raises(ComposeFileError, match=r"Version mismatch: file /srv/app/compose0\.yml"):
        load_files("web: {image: a}\n", "services: {web: {image: b}}\n")


def test_merge_services_does_not_mutate_inputs() -> None:
    base = {"environment": {"A": "1"}, "ports": ["1"]}
    override = {"environment": {"B": "2"}, "ports": ["2"]}
    merge_services(base, override)
    assert base == {"environment": {"A": "1"}, "ports": ["1"]}
    assert override == {"environment": {"B": "2"}, "ports": ["2"]}
