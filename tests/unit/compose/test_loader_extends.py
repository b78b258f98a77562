"""``extends``: same file, other files, chains, cycles and what cannot be extended."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.compose.loader import ComposeFileError, FileNeeded, LoadOptions, load_config

pytestmark = pytest.mark.unit

PROJECT = "/srv/app"
MAIN = f"{PROJECT}/compose.yml"


def load(files: dict[str, str | None], environ: dict[str, str] | None = None) -> dict[str, Any]:
    return load_config([MAIN], files, LoadOptions(PROJECT, environ or {})).config


def test_same_file_extends_merges_with_the_extending_service_winning() -> None:
    config = load(
        {
            MAIN: "services:\n"
            "  base:\n"
            "    image: app\n"
            "    environment: {A: '1', B: '1'}\n"
            "    ports: ['80']\n"
            "  web:\n"
            "    extends: base\n"
            "    environment: {B: '2'}\n"
            "    ports: ['443']\n"
            "  worker:\n"
            "    extends: {service: web}\n"
            "    command: work\n"
        }
    )
    services = config["services"]
    assert services["web"] == {
        "environment": {"A": "1", "B": "2"},
        "image": "app",
        "ports": ["80", "443"],
    }
    assert services["worker"] == {**services["web"], "command": "work"}
    assert "extends" not in services["worker"]


def test_other_file_paths_resolve_against_that_files_directory() -> None:
    config = load(
        {
            MAIN: "services:\n"
            "  web:\n"
            "    extends: {file: common/base.yml, service: app}\n"
            "    volumes: ['./here:/here']\n",
            f"{PROJECT}/common/base.yml": "services:\n"
            "  app:\n"
            "    build: ./ctx\n"
            "    volumes: ['./there:/there', '~/cache:/cache']\n"
            "    extends: {file: ../../shared/root.yml, service: root}\n",
            "/srv/shared/root.yml": (
                "services:\n  root:\n    image: root\n    labels: [tier=root]\n"
            ),
        },
        {"HOME": "/home/u"},
    )
    assert config["services"]["web"] == {
        "build": {"context": f"{PROJECT}/common/ctx"},
        "image": "root",
        "labels": {"tier": "root"},
        "volumes": [
            f"{PROJECT}/common/there:/there",
            "/home/u/cache:/cache",
            f"{PROJECT}/here:/here",
        ],
    }


def test_extends_file_is_interpolated_with_the_same_environment() -> None:
    config = load(
        {
            MAIN: "services: {web: {extends: {file: base.yml, service: b}}}\n",
            f"{PROJECT}/base.yml": "services: {b: {image: '${IMG:-busybox}'}}\n",
        },
        {"IMG": "alpine"},
    )
    assert config["services"]["web"] == {"image": "alpine"}


def test_a_file_not_given_is_requested() -> None:
    with pytest.raises(FileNeeded) as need:
        load({MAIN: "services: {web: {extends: {file: ./lib/base.yml, service: b}}}\n"})
    assert need.value.path == f"{PROJECT}/lib/base.yml"


def test_missing_extends_file_is_an_error() -> None:
    with pytest.raises(ComposeFileError, match=r"open /srv/app/base\.yml: no such file"):
        load(
            {
                MAIN: "services: {web: {extends: {file: base.yml, service: b}}}\n",
                f"{PROJECT}/base.yml": None,
            }
        )


def test_missing_service_is_an_error_naming_the_file() -> None:
    with pytest.raises(ComposeFileError) as err:
        load({MAIN: "services: {web: {extends: nope, image: x}}\n"})
    assert "Cannot extend service 'nope' in /srv/app/compose.yml: Service not found" in str(
        err.value
    )
    assert err.value.service == "web"


def test_cycle_names_the_chain_in_order() -> None:
    with pytest.raises(ComposeFileError) as err:
        load(
            {
                MAIN: "services:\n"
                "  web: {extends: {file: other.yml, service: a}}\n"
                "  b: {extends: web}\n",
                f"{PROJECT}/other.yml": "services:\n"
                "  a: {extends: {file: compose.yml, service: b}}\n",
            }
        )
    assert err.value.message == (
        "Circular reference:\n"
        "  web in /srv/app/compose.yml\n"
        "  extends a in /srv/app/other.yml\n"
        "  extends b in /srv/app/compose.yml\n"
        "  extends web in /srv/app/compose.yml"
    )


def test_self_extension_is_a_cycle() -> None:
    with pytest.raises(ComposeFileError, match="Circular reference:\n  web in"):
        load({MAIN: "services: {web: {extends: web, image: x}}\n"})


@pytest.mark.parametrize(
    ("base", "what"),
    [
        ("links: [db]", "links"),
        ("volumes_from: [db]", "volumes_from"),
        ("depends_on: [db]", "depends_on"),
        ("network_mode: 'service:db'", "network_mode: service"),
    ],
)
def test_services_that_name_other_services_cannot_be_extended(base: str, what: str) -> None:
    with pytest.raises(ComposeFileError) as err:
        load(
            {
                MAIN: "services:\n"
                "  db: {image: db}\n"
                f"  base: {{image: x, {base}}}\n"
                "  web: {extends: base}\n"
            }
        )
    assert str(err.value).endswith(
        f"Cannot extend service 'base' in {MAIN}: services with '{what}' cannot be extended"
    )


def test_extending_service_may_have_links_itself() -> None:
    config = load(
        {
            MAIN: "services:\n  db: {image: db}\n  base: {image: x}\n"
            "  web: {extends: base, links: [db], depends_on: [db]}\n"
        }
    )
    assert config["services"]["web"]["links"] == ["db"]


def test_v1_file_cannot_extend_a_v2_file() -> None:
    with pytest.raises(ComposeFileError, match="Version mismatch"):
        load(
            {
                MAIN: "web: {extends: {file: b.yml, service: b}}\n",
                f"{PROJECT}/b.yml": "services: {b: {image: x}}\n",
            }
        )


def test_extends_defined_in_an_override_file_applies_after_merge() -> None:
    config = load_config(
        [MAIN, f"{PROJECT}/override.yml"],
        {
            MAIN: "services: {base: {image: x, environment: [A=1]}, web: {command: run}}\n",
            f"{PROJECT}/override.yml": "services: {web: {extends: base}}\n",
        },
        LoadOptions(PROJECT, {}),
    ).config
    assert config["services"]["web"] == {
        "command": "run",
        "environment": {"A": "1"},
        "image": "x",
    }
