"""Every file format normalized to compose-spec shape; top-level and service validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dockyard.compose.loader import ComposeFileError, LoadOptions, load_config

pytestmark = pytest.mark.unit

FORMATS = Path(__file__).parent / "fixtures" / "loader" / "formats"
PROJECT = "/srv/app"


def load(text: str, environ: dict[str, str] | None = None, **options: Any) -> dict[str, Any]:
    path = f"{PROJECT}/compose.yml"
    loaded = load_config([path], {path: text}, LoadOptions(PROJECT, environ or {}, **options))
    return loaded.config


def fixture(name: str) -> str:
    return (FORMATS / name).read_text()


EXPECTED_APP = {
    "redis": {"command": "redis-server --appendonly yes", "image": "redis:latest"},
    "web": {
        "build": {"context": PROJECT},
        "command": "python app.py",
        "environment": {"PYTHONUNBUFFERED": "1"},
        "links": ["redis"],
        "ports": ["5000:5000"],
        "volumes": [f"{PROJECT}:/code"],
    },
}


def test_issue_containers_example_verbatim() -> None:
    config = load(fixture("containers.yml"))
    assert config == {
        "name": "app",
        "services": EXPECTED_APP,
        "networks": {},
        "volumes": {},
        "configs": {},
        "secrets": {},
    }


@pytest.mark.parametrize("name", ["containers.yml", "v1.yml", "v2.yml", "v3.yml", "spec.yml"])
def test_every_format_gives_the_same_canonical_services(name: str) -> None:
    assert load(fixture(name))["services"] == EXPECTED_APP


def test_output_key_order_is_deterministic() -> None:
    config = load("services:\n  b: {image: x, command: y}\n  a: {image: z}\n")
    assert list(config) == ["name", "services", "networks", "volumes", "configs", "secrets"]
    assert list(config["services"]) == ["a", "b"]
    assert list(config["services"]["b"]) == ["command", "image"]


def test_top_level_and_service_extension_keys_are_dropped_after_anchors() -> None:
    config = load(
        "x-env: &env {A: '1'}\n"
        "services:\n"
        "  web:\n"
        "    image: x\n"
        "    environment: *env\n"
        "    x-meta: {owner: me}\n"
    )
    assert config["services"]["web"] == {"environment": {"A": "1"}, "image": "x"}


def test_v1_net_log_driver_log_opt_and_dockerfile_are_converted() -> None:
    config = load(
        "db:\n"
        "  image: postgres\n"
        "web:\n"
        "  build: .\n"
        "  dockerfile: Dockerfile.dev\n"
        "  net: container:db\n"
        "  log_driver: syslog\n"
        "  log_opt: {tag: web}\n"
        "other:\n"
        "  image: x\n"
        "  net: container:not-a-service\n"
        "host:\n"
        "  image: x\n"
        "  net: host\n"
    )
    web = config["services"]["web"]
    assert web["network_mode"] == "service:db"
    assert web["logging"] == {"driver": "syslog", "options": {"tag": "web"}}
    assert web["build"] == {"context": PROJECT, "dockerfile": "Dockerfile.dev"}
    assert "net" not in web
    assert config["services"]["other"]["network_mode"] == "container:not-a-service"
    assert config["services"]["host"]["network_mode"] == "host"


def test_v1_only_keys_are_refused_in_spec_files() -> None:
    with pytest.raises(ComposeFileError) as err:
        load("services:\n  web:\n    image: x\n    net: host\n")
    assert err.value.service == "web"
    assert err.value.key == "services.web.net"
    assert "Unsupported config option for services.web: 'net'" in str(err.value)


def test_v2_and_v3_sections_are_kept() -> None:
    config = load(
        'version: "3.7"\n'
        "services: {web: {image: x, networks: [front], secrets: [token]}}\n"
        "networks: {front: {driver: bridge}, back: null}\n"
        "volumes: {data: {}}\n"
        "secrets: {token: {file: ./token.txt}}\n"
        "configs: {conf: {file: /etc/app.conf}}\n"
    )
    assert config["networks"] == {"back": {}, "front": {"driver": "bridge"}}
    assert config["volumes"] == {"data": {}}
    assert config["secrets"] == {"token": {"file": f"{PROJECT}/token.txt"}}
    assert config["configs"] == {"conf": {"file": "/etc/app.conf"}}
    assert config["services"]["web"]["networks"] == {"front": None}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 2\nservices: {}\n", 'Version in "/srv/app/compose.yml" is invalid - it should'),
        ('version: "1"\nweb: {image: x}\n', 'Version in "/srv/app/compose.yml" is invalid.'),
        ('version: "4.0"\nservices: {}\n', 'Version "4.0" in "/srv/app/compose.yml" is invalid.'),
    ],
)
def test_bad_versions_are_refused_with_compose_messages(text: str, message: str) -> None:
    with pytest.raises(ComposeFileError) as err:
        load(text)
    assert message in str(err.value)
    assert err.value.file == f"{PROJECT}/compose.yml"


def test_unknown_top_level_key_names_the_file_and_key() -> None:
    with pytest.raises(ComposeFileError) as err:
        load("services: {web: {image: x}}\nservicez: {}\n")
    assert err.value.file == f"{PROJECT}/compose.yml"
    assert err.value.key == "servicez"
    assert str(err.value).startswith('/srv/app/compose.yml: Invalid top-level property "servicez".')


def test_unknown_key_next_to_containers_is_refused() -> None:
    with pytest.raises(ComposeFileError, match='Invalid top-level property "volumes"'):
        load("containers: {web: {image: x}}\nvolumes: {}\n")


def test_wrong_type_names_file_service_and_key() -> None:
    with pytest.raises(ComposeFileError) as err:
        load("services:\n  web:\n    image: x\n    ports: 5000\n")
    assert (err.value.file, err.value.service, err.value.key) == (
        f"{PROJECT}/compose.yml",
        "web",
        "services.web.ports",
    )
    assert str(err.value) == (
        "/srv/app/compose.yml: services.web.ports contains an invalid type, it should be an array"
    )


@pytest.mark.parametrize(
    ("service", "key", "message"),
    [
        ("{image: 5}", "services.web.image", "it should be a string"),
        (
            "{image: x, ports: [true]}",
            "services.web.ports",
            "it should be a number, string, or an object",
        ),
        ("{image: x, environment: 3}", "services.web.environment", "an object, or an array"),
        (
            "{image: x, environment: {A: [1]}}",
            "services.web.environment.A",
            "which is an invalid type",
        ),
        ("{image: x, tty: 'yes'}", "services.web.tty", "it should be a boolean"),
        ("{image: x, command: {a: 1}}", "services.web.command", "a null, string, or an array"),
        ("{image: x, extends: {file: a.yml}}", "services.web.extends", "'service' is a required"),
        ("{image: x, depends_on: {db: 1}}", "services.web.depends_on.db", "it should be an object"),
        ("[1, 2]", "services.web", "it should be an object"),
        ("{image: x, bogus: 1}", "services.web.bogus", "Unsupported config option"),
    ],
)
def test_service_type_errors(service: str, key: str, message: str) -> None:
    with pytest.raises(ComposeFileError) as err:
        load(f"services:\n  web: {service}\n")
    assert err.value.key == key
    assert err.value.service == "web"
    assert message in str(err.value)


def test_invalid_service_name_is_refused() -> None:
    with pytest.raises(ComposeFileError, match=r"Invalid service name 'we b'"):
        load("services:\n  we b: {image: x}\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty compose file"),
        ("- a\n- b\n", "needs to be an object not 'list'"),
        ("services: [web]\n", "services contains an invalid type, it should be an object"),
        ("services: {}\nnetworks: {front: 1}\n", "networks.front contains an invalid type"),
    ],
)
def test_bad_file_structure(text: str, message: str) -> None:
    with pytest.raises(ComposeFileError, match=message):
        load(text)


def test_legacy_external_name_becomes_spec_external_and_name() -> None:
    config = load(
        'version: "3.2"\n'
        "services: {web: {image: x}}\n"
        "networks: {front: {external: {name: shared_front}}, back: {external: true}}\n"
        "volumes: {data: {external: {name: shared_data}, labels: [a=b]}}\n"
    )
    assert config["networks"] == {
        "back": {"external": True},
        "front": {"external": True, "name": "shared_front"},
    }
    assert config["volumes"] == {
        "data": {"external": True, "labels": {"a": "b"}, "name": "shared_data"}
    }
