"""Compose's labels, names and the config hash recipe."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from dockyard.compose import labels as lb
from dockyard.compose.model import Project, project_from_dict

pytestmark = pytest.mark.unit


def make(services: dict[str, Any], **top: Any) -> Project:
    return project_from_dict({"name": "app", "services": services, **top})


EXAMPLE: dict[str, dict[str, Any]] = {
    "web": {
        "build": {"context": "/src"},
        "command": "python app.py",
        "ports": ["5000:5000"],
        "links": ["redis"],
        "environment": {"PYTHONUNBUFFERED": "1"},
    },
    "redis": {"image": "redis:latest"},
}


def test_container_names() -> None:
    assert lb.container_name("app", "web", 1) == "app_web_1"
    assert lb.container_name("app", "web", 2, separator="-") == "app-web-2"
    assert lb.container_name("_app", "web", 1) == "app_web_1"  # 1.29.2 lstrip('-_')
    assert lb.oneoff_container_name("app", "web", "0123456789abcdef") == "app_web_run_0123456789ab"
    assert lb.oneoff_container_name("app", "web", "0123456789abcdef", "-") == (
        "app-web-run-0123456789ab"
    )


def test_container_labels() -> None:
    project = make(
        {
            "web": {
                "image": "x",
                "labels": {"team": "a", lb.LABEL_PROJECT: "spoof"},
                "depends_on": {
                    "db": {"condition": "service_healthy", "restart": True},
                    "cache": {"condition": "service_started"},
                },
            },
            "db": {"image": "x"},
            "cache": {"image": "x"},
        }
    )
    labels = lb.container_labels(
        "app",
        project.services["web"],
        number=1,
        config_hash="abc",
        working_dir="/src",
        config_files=["/src/docker-compose.yml", "/src/docker-compose.override.yml"],
    )
    assert labels == {
        "team": "a",
        "com.docker.compose.project": "app",  # Compose's own label wins
        "com.docker.compose.service": "web",
        "com.docker.compose.oneoff": "False",
        "com.docker.compose.version": "1.29.2",
        "com.docker.compose.container-number": "1",
        "com.docker.compose.config-hash": "abc",
        "com.docker.compose.project.working_dir": "/src",
        "com.docker.compose.project.config_files": (
            "/src/docker-compose.yml,/src/docker-compose.override.yml"
        ),
        "com.docker.compose.depends_on": "db:service_healthy:true,cache:service_started:false",
    }


def test_oneoff_labels() -> None:
    project = make({"web": {"image": "x"}})
    labels = lb.container_labels(
        "app", project.services["web"], number=None, config_hash=None, oneoff=True, slug="f" * 64
    )
    assert labels[lb.LABEL_ONEOFF] == "True"
    assert labels[lb.LABEL_SLUG] == "f" * 64
    assert lb.LABEL_CONTAINER_NUMBER not in labels
    assert lb.LABEL_CONFIG_HASH not in labels
    assert lb.LABEL_DEPENDS_ON not in labels


def test_network_and_volume_labels() -> None:
    assert lb.network_labels("app", "front", {"x": "y"}) == {
        "x": "y",
        "com.docker.compose.project": "app",
        "com.docker.compose.network": "front",
        "com.docker.compose.version": "1.29.2",
    }
    assert lb.volume_labels("app", "data", {}) == {
        "com.docker.compose.project": "app",
        "com.docker.compose.volume": "data",
        "com.docker.compose.version": "1.29.2",
    }
    assert lb.project_filter("app") == {"label": ["com.docker.compose.project=app"]}


def test_config_dict_recipe() -> None:
    project = make(
        {
            "web": {
                "image": "x",
                "links": ["db:database"],
                "volumes_from": ["data:ro", "container:c"],
                "networks": {"front": {"aliases": ["www"]}, "back": None},
                "secrets": ["token"],
                "scale": 2,
                "deploy": {"replicas": 2, "labels": {"a": "b"}},
                "environment": {"A": "1"},
            },
            "db": {"image": "x"},
            "data": {"image": "x"},
            "side": {"image": "x", "network_mode": "service:web"},
            "host": {"image": "x", "network_mode": "host"},
        },
        networks={"front": {}, "back": {"name": "shared"}},
        secrets={"token": {"file": "/t"}},
    )
    assert lb.config_dict(project, project.services["web"], "sha256:1") == {
        "options": {"image": "x", "deploy": {"labels": {"a": "b"}}, "environment": {"A": "1"}},
        "image_id": "sha256:1",
        "links": [["db", "database"]],
        "net": "app_front",
        "networks": {"app_front": {"aliases": ["www"]}, "shared": None},
        "secrets": ["token"],
        "volumes_from": [["data", "ro"]],
    }
    assert lb.config_dict(project, project.services["side"], None)["net"] == "web"
    assert lb.config_dict(project, project.services["host"], None)["net"] == "host"
    assert lb.config_dict(project, project.services["db"], None)["net"] == "app_default"
    assert lb.config_dict(project, project.services["db"], None)["networks"] == {
        "app_default": None
    }


def test_config_hash_is_sha256_of_canonical_json() -> None:
    project = make(EXAMPLE)
    web = project.services["web"]
    expected = hashlib.sha256(
        json.dumps(
            lb.config_dict(project, web, "sha256:aa"), sort_keys=True, separators=(",", ":")
        ).encode()
    ).hexdigest()
    assert lb.config_hash(project, web, "sha256:aa") == expected
    assert len(expected) == 64


def test_config_hash_is_stable_across_key_order() -> None:
    a = make({"web": {"image": "x", "environment": {"A": "1", "B": "2"}, "tty": True}})
    b = make({"web": {"tty": True, "environment": {"B": "2", "A": "1"}, "image": "x"}})
    assert lb.config_hash(a, a.services["web"], None) == lb.config_hash(b, b.services["web"], None)


@pytest.mark.parametrize(
    "change",
    [
        {"environment": {"PYTHONUNBUFFERED": "0"}},
        {"command": "python other.py"},
        {"ports": ["5001:5000"]},
        {"links": ["redis:cache"]},
        {"networks": {"default": {"aliases": ["w"]}}},
    ],
)
def test_config_hash_changes_with_the_config(change: dict[str, Any]) -> None:
    before = make(EXAMPLE)
    after = make({**EXAMPLE, "web": {**EXAMPLE["web"], **change}})
    assert lb.config_hash(before, before.services["web"], "i") != lb.config_hash(
        after, after.services["web"], "i"
    )


def test_config_hash_changes_with_the_image_id_not_the_scale() -> None:
    project = make(EXAMPLE)
    web = project.services["web"]
    assert lb.config_hash(project, web, "sha256:1") != lb.config_hash(project, web, "sha256:2")
    scaled = make({**EXAMPLE, "web": {**EXAMPLE["web"], "scale": 3}})
    assert lb.config_hash(scaled, scaled.services["web"], "sha256:1") == lb.config_hash(
        project, web, "sha256:1"
    )
    replicas = make({**EXAMPLE, "web": {**EXAMPLE["web"], "deploy": {"replicas": 3}}})
    with_deploy = make({**EXAMPLE, "web": {**EXAMPLE["web"], "deploy": {}}})
    assert lb.config_hash(replicas, replicas.services["web"], None) == lb.config_hash(
        with_deploy, with_deploy.services["web"], None
    )


def test_other_services_do_not_change_the_hash() -> None:
    before = make(EXAMPLE)
    after = make({**EXAMPLE, "redis": {"image": "redis:7"}})
    assert lb.config_hash(before, before.services["web"], "i") == lb.config_hash(
        after, after.services["web"], "i"
    )
