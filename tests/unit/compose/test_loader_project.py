"""Canonical shapes, env_file/environment resolution, profiles and the project name."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.compose.loader import ComposeFileError, FileNeeded, LoadOptions, load_config
from dockyard.compose.loader.discovery import (
    choose_files,
    normalize_project_name,
    search_directories,
)

pytestmark = pytest.mark.unit

PROJECT = "/srv/app"
MAIN = f"{PROJECT}/compose.yml"


def load(
    text: str,
    environ: dict[str, str] | None = None,
    extra: dict[str, str | None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    files: dict[str, str | None] = {MAIN: text, **(extra or {})}
    return load_config([MAIN], files, LoadOptions(PROJECT, environ or {}, **options)).config


def web(text: str, environ: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    service: dict[str, Any] = load(text, environ, **kw)["services"]["web"]
    return service


def test_mapping_shapes() -> None:
    service = web(
        "services:\n"
        "  web:\n"
        "    image: x\n"
        "    environment: [A=1, 'B=x=y', EMPTY=]\n"
        "    labels: [com.example=1, flag]\n"
        "    annotations: {a: 1}\n"
        "    extra_hosts: ['db:10.0.0.2', 'v6:::1', 'eq=1.2.3.4']\n"
        "    sysctls: [net.core.somaxconn=1024]\n"
        "    build: {context: ., args: [V=1, BARE]}\n"
    )
    assert service["environment"] == {"A": "1", "B": "x=y", "EMPTY": ""}
    assert service["labels"] == {"com.example": "1", "flag": ""}
    assert service["annotations"] == {"a": "1"}
    assert service["extra_hosts"] == {"db": "10.0.0.2", "v6": "::1", "eq": "1.2.3.4"}
    assert service["sysctls"] == {"net.core.somaxconn": "1024"}
    assert service["build"] == {"args": {"BARE": None, "V": "1"}, "context": PROJECT}


def test_mapping_values_are_rendered_as_strings() -> None:
    service = web(
        "services:\n  web:\n    image: x\n"
        "    environment: {INT: 1, FLOAT: 1.5, TRUE: true, NULL_SET: null}\n"
        "    labels: {n: 2, b: false, z: null}\n",
        {"NULL_SET": "from-env"},
    )
    assert service["environment"] == {
        "FLOAT": "1.5",
        "INT": "1",
        "NULL_SET": "from-env",
        "TRUE": "true",
    }
    assert service["labels"] == {"b": "false", "n": "2", "z": ""}


def test_depends_on_and_networks_shapes() -> None:
    config = load(
        "services:\n"
        "  db: {image: db}\n"
        "  cache: {image: c}\n"
        "  web:\n"
        "    image: x\n"
        "    depends_on: [db, cache]\n"
        "    networks: [front, back]\n"
        "  api:\n"
        "    image: x\n"
        "    depends_on:\n"
        "      db: {condition: service_healthy, restart: true}\n"
        "      cache: {condition: service_started}\n"
        "    networks: {front: {aliases: [a]}, back: null}\n"
    )
    services = config["services"]
    assert services["web"]["depends_on"] == {
        "cache": {"condition": "service_started"},
        "db": {"condition": "service_started"},
    }
    assert services["web"]["networks"] == {"back": None, "front": None}
    assert services["api"]["depends_on"] == {
        "cache": {"condition": "service_started"},
        "db": {"condition": "service_healthy", "restart": True},
    }
    assert services["api"]["networks"] == {"back": None, "front": {"aliases": ["a"]}}


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (".", {"context": PROJECT}),
        ("./web", {"context": f"{PROJECT}/web"}),
        ("../other", {"context": "/srv/other"}),
        ("/abs/dir", {"context": "/abs/dir"}),
        ("https://github.com/x/y.git#main", {"context": "https://github.com/x/y.git#main"}),
        ("git@github.com:x/y.git", {"context": "git@github.com:x/y.git"}),
        ("{dockerfile: Dockerfile.dev}", {"context": PROJECT, "dockerfile": "Dockerfile.dev"}),
    ],
)
def test_build_context_is_absolute(build: str, expected: dict[str, str]) -> None:
    assert web(f"services:\n  web:\n    build: {build}\n")["build"] == expected


def test_bind_sources_are_absolute_and_other_volumes_kept() -> None:
    service = web(
        "services:\n  web:\n    image: x\n    volumes:\n"
        "      - ./data:/data:ro\n"
        "      - ../up:/up\n"
        "      - ~/cache:/cache\n"
        "      - named:/named\n"
        "      - /abs:/abs\n"
        "      - /anonymous\n"
        "      - {type: bind, source: ./long, target: /long, read_only: true}\n"
        "      - {type: volume, source: vol, target: /vol}\n",
        {"HOME": "/home/u"},
    )
    assert service["volumes"] == [
        f"{PROJECT}/data:/data:ro",
        "/srv/up:/up",
        "/home/u/cache:/cache",
        "named:/named",
        "/abs:/abs",
        "/anonymous",
        {"type": "bind", "source": f"{PROJECT}/long", "target": "/long", "read_only": True},
        {"type": "volume", "source": "vol", "target": "/vol"},
    ]


def test_short_syntax_keys_are_left_as_written() -> None:
    text = (
        "services:\n  web:\n    image: x\n    ports: ['8000:80', 9000]\n"
        "    command: sh -c 'echo hi'\n    healthcheck: {test: [CMD, 'true'], interval: 1m30s}\n"
        "    dns: 1.1.1.1\n    tmpfs: /run\n"
    )
    service = web(text)
    assert service["ports"] == ["8000:80", 9000]
    assert service["command"] == "sh -c 'echo hi'"
    assert service["healthcheck"] == {"interval": "1m30s", "test": ["CMD", "true"]}
    assert service["dns"] == ["1.1.1.1"]
    assert service["tmpfs"] == ["/run"]


# env_file / environment


def test_env_file_under_environment_with_environment_winning() -> None:
    service = web(
        "services:\n  web:\n    image: x\n    env_file: [a.env, ./conf/b.env]\n"
        "    environment: [FROM_BOTH=environment, FROM_SHELL, NOT_SET]\n",
        {"FROM_SHELL": "shell", "REF": "r"},
        extra={
            f"{PROJECT}/a.env": "FROM_A=a\nFROM_BOTH=a\nOVERRIDDEN=a\nUSES=${REF}\n",
            f"{PROJECT}/conf/b.env": "OVERRIDDEN=b\n",
        },
    )
    assert service["environment"] == {
        "FROM_A": "a",
        "FROM_BOTH": "environment",
        "FROM_SHELL": "shell",
        "OVERRIDDEN": "b",
        "USES": "r",
    }
    assert "env_file" not in service


def test_env_file_string_form_and_request_for_unread_file() -> None:
    with pytest.raises(FileNeeded) as need:
        web("services:\n  web:\n    image: x\n    env_file: web.env\n")
    assert need.value.path == f"{PROJECT}/web.env"


def test_missing_env_file_is_an_error_unless_optional() -> None:
    with pytest.raises(ComposeFileError) as err:
        web(
            "services:\n  web:\n    image: x\n    env_file: web.env\n",
            extra={f"{PROJECT}/web.env": None},
        )
    assert str(err.value) == f"Couldn't find env file: {PROJECT}/web.env"
    assert err.value.service == "web"
    service = web(
        "services:\n  web:\n    image: x\n"
        "    env_file: [{path: opt.env, required: false}, {path: ok.env}]\n",
        extra={f"{PROJECT}/opt.env": None, f"{PROJECT}/ok.env": "K=v\n"},
    )
    assert service["environment"] == {"K": "v"}


def test_bad_env_file_line_names_the_env_file() -> None:
    with pytest.raises(ComposeFileError) as err:
        web(
            "services:\n  web:\n    image: x\n    env_file: web.env\n",
            extra={f"{PROJECT}/web.env": "GOOD=1\nBAD LINE=2\n"},
        )
    assert err.value.file == f"{PROJECT}/web.env"
    assert "line 2" in str(err.value)


def test_build_args_take_unset_values_from_the_environment() -> None:
    service = web(
        "services:\n  web:\n    build: {context: ., args: [FROM_ENV, UNSET, SET=v]}\n",
        {"FROM_ENV": "e"},
    )
    assert service["build"]["args"] == {"FROM_ENV": "e", "SET": "v", "UNSET": None}


# profiles

PROFILED = (
    "services:\n"
    "  web: {image: x}\n"
    "  debug: {image: x, profiles: [debug]}\n"
    "  tools: {image: x, profiles: [tools, debug]}\n"
    "  docs: {image: x, profiles: [docs]}\n"
)


@pytest.mark.parametrize(
    ("options", "environ", "expected"),
    [
        ({}, {}, {"web"}),
        ({"profiles": ("debug",)}, {}, {"web", "debug", "tools"}),
        ({"profiles": ("tools",)}, {}, {"web", "tools"}),
        ({}, {"COMPOSE_PROFILES": "docs,tools"}, {"web", "docs", "tools"}),
        ({"profiles": ("docs",)}, {"COMPOSE_PROFILES": "debug"}, {"web", "docs"}),
        ({"profiles": ("*",)}, {}, {"web", "debug", "tools", "docs"}),
        ({"explicit_services": ("docs",)}, {}, {"web", "docs"}),
    ],
)
def test_profiles(options: dict[str, Any], environ: dict[str, str], expected: set[str]) -> None:
    assert set(load(PROFILED, environ, **options)["services"]) == expected


def test_explicit_unknown_service_is_an_error() -> None:
    with pytest.raises(ComposeFileError, match="no such service: nope"):
        load(PROFILED, explicit_services=("nope",))


# project name


@pytest.mark.parametrize(
    ("text", "options", "environ", "expected"),
    [
        ("services: {}\n", {}, {}, "app"),
        ("name: named\nservices: {}\n", {}, {}, "named"),
        ("name: named\nservices: {}\n", {}, {"COMPOSE_PROJECT_NAME": "fromenv"}, "fromenv"),
        (
            "name: named\nservices: {}\n",
            {"project_name": "flag"},
            {"COMPOSE_PROJECT_NAME": "fromenv"},
            "flag",
        ),
        ("name: ${NAME:-interp}\nservices: {}\n", {}, {}, "interp"),
        # compose-go normalizes the file's name instead of refusing it
        ("name: My.Project\nservices: {}\n", {}, {}, "myproject"),
        ("name: '-_'\nservices: {}\n", {}, {}, "app"),
    ],
)
def test_project_name_precedence(
    text: str, options: dict[str, Any], environ: dict[str, str], expected: str
) -> None:
    assert load(text, environ, **options)["name"] == expected


@pytest.mark.parametrize(
    ("directory", "expected"),
    [("My App", "myapp"), ("web_2-prod", "web_2-prod"), ("_-x.y", "xy"), ("Ünï", "n")],
)
def test_directory_name_is_normalized(directory: str, expected: str) -> None:
    assert normalize_project_name(directory) == expected


def test_invalid_explicit_names_and_empty_directory_names_are_refused() -> None:
    with pytest.raises(ComposeFileError, match='invalid project name "Bad Name"'):
        load("services: {}\n", project_name="Bad Name")
    with pytest.raises(ComposeFileError, match='invalid project name "UPPER"'):
        load("services: {}\n", {"COMPOSE_PROJECT_NAME": "UPPER"})
    with pytest.raises(ComposeFileError, match="project name must not be empty"):
        load_config(["/x/.../c.yml"], {"/x/.../c.yml": "services: {}\n"}, LoadOptions("/x/...", {}))


def test_project_name_is_offered_to_interpolation() -> None:
    config = load(
        "name: shop\nservices:\n  web: {image: x, container_name: '${COMPOSE_PROJECT_NAME}-web'}\n"
    )
    assert config["services"]["web"]["container_name"] == "shop-web"


# discovery (pure choice)


def test_search_directories_go_up_to_root() -> None:
    assert search_directories("/a/b/c") == ("/a/b/c", "/a/b", "/a", "/")


def test_choose_files_prefers_compose_yaml_and_adds_one_override() -> None:
    found = choose_files("/p", {"docker-compose.yml", "compose.yaml", "compose.override.yml"})
    assert found is not None
    assert found.files == ("/p/compose.yaml", "/p/compose.override.yml")
    assert found.warnings == (
        "Found multiple config files with supported names: compose.yaml, docker-compose.yml\n"
        "Using compose.yaml",
    )
    assert choose_files("/p", {"fig.yml"}) is not None
    assert choose_files("/p", {"other.yml"}) is None


def test_two_override_files_are_an_error() -> None:
    with pytest.raises(ComposeFileError, match="Multiple override files found"):
        choose_files("/p", {"compose.yml", "docker-compose.override.yml", "compose.override.yaml"})


def test_no_files_is_an_error() -> None:
    with pytest.raises(ComposeFileError, match="no configuration file provided"):
        load_config([], {}, LoadOptions(PROJECT, {}))
