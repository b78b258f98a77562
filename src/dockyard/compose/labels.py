"""Compose's labels, container names and the config hash.

Role: what Compose writes on the objects it creates so that a later run (of dockyard
compose, or of another Compose reading the same labels) finds them again and can tell
whether they still match the file.

Labels (docker-compose 1.29.2 compose/const.py; Compose v2 api/types.go adds
``depends_on``):
- containers: ``com.docker.compose.project``, ``.service``, ``.container-number``,
  ``.oneoff`` (``"True"``/``"False"``, Python's spelling, as 1.29.2 writes it),
  ``.config-hash``, ``.version``, ``.project.working_dir``, ``.project.config_files``
  (comma-separated), ``.project.environment_file`` when one was read, ``.depends_on``
  (v2: ``svc:condition:restart`` items joined by commas), and for one-off containers
  ``.slug`` (the random id in their name). The service's own labels come first; Compose's
  own labels win over a user label of the same name (1.29.2 ``build_container_labels``).
- networks: ``.project``, ``.network`` (the key in the file), ``.version``;
- volumes: ``.project``, ``.volume`` (the key in the file), ``.version``.

Names: ``{project}{sep}{service}{sep}{n}``; 1.29.2 uses ``_``, Compose v2 ``-``. The
project part loses leading ``-``/``_`` (1.29.2 ``build_container_name``). A one-off
(``run``) container is ``{project}{sep}{service}{sep}run{sep}{slug[:12]}``.

The config hash, exactly (docker-compose 1.29.2 ``Service.config_dict`` and
``utils.json_hash``): sha256, in lowercase hex, of the UTF-8 bytes of
``json.dumps(config_dict, sort_keys=True, separators=(",", ":"))`` where ``config_dict``
is the object::

    {"options": <the service's config with links, volumes_from, network_mode, networks,
                 secrets and scale removed, and deploy.replicas removed from deploy>,
     "image_id": <the id of the image the container will run, or null if unknown>,
     "links": [[<service>, <alias>], ...]       (in the order written),
     "net": <the network mode's id: the service name for service:x, the mode string
             for the others, else the engine name of the service's first network,
             else "none">,
     "networks": {<engine network name>: <the service's settings for it or null>},
     "secrets": <the service's secrets list, [] when none>,
     "volumes_from": [[<service>, "ro"|"rw"], ...]  (service sources only)}

``options`` is the loader's canonical dict (``Service.config``), so the hash changes when
anything the user can change in the file changes, and also when the image behind the
tag changes (``image_id``); a change in scale alone does not recreate anything. As in
1.29.2, changes to linked/depended services do not change this hash: the planner
recreates dependents itself. The bytes differ from docker-compose's own hash (its
``options`` are its post-processed config), so a project moved between the two tools is
recreated once, as one moved between Compose v1 and v2 is.

Invariants: pure; values in, strings out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from dockyard.compose.model import Project, Service

__all__ = [
    "COMPOSE_VERSION",
    "LABEL_CONFIG_FILES",
    "LABEL_CONFIG_HASH",
    "LABEL_CONTAINER_NUMBER",
    "LABEL_DEPENDS_ON",
    "LABEL_ENVIRONMENT_FILE",
    "LABEL_NETWORK",
    "LABEL_ONEOFF",
    "LABEL_PROJECT",
    "LABEL_SERVICE",
    "LABEL_SLUG",
    "LABEL_VERSION",
    "LABEL_VOLUME",
    "LABEL_WORKING_DIR",
    "config_dict",
    "config_hash",
    "container_labels",
    "container_name",
    "network_labels",
    "oneoff_container_name",
    "project_filter",
    "volume_labels",
]

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_CONTAINER_NUMBER = "com.docker.compose.container-number"
LABEL_ONEOFF = "com.docker.compose.oneoff"
LABEL_CONFIG_HASH = "com.docker.compose.config-hash"
LABEL_VERSION = "com.docker.compose.version"
LABEL_WORKING_DIR = "com.docker.compose.project.working_dir"
LABEL_CONFIG_FILES = "com.docker.compose.project.config_files"
LABEL_ENVIRONMENT_FILE = "com.docker.compose.project.environment_file"
LABEL_NETWORK = "com.docker.compose.network"
LABEL_VOLUME = "com.docker.compose.volume"
LABEL_DEPENDS_ON = "com.docker.compose.depends_on"
LABEL_SLUG = "com.docker.compose.slug"

# What we write as com.docker.compose.version: the docker-compose release whose behaviour
# this package follows (docker-compose 1.29.2 and tools reading its labels check only
# that the label is present).
COMPOSE_VERSION = "1.29.2"

SLUG_LENGTH = 12  # docker-compose 1.29.2 truncate_id

# Keys the hash leaves out of "options" because config_dict carries them in its own form,
# or (scale) because they must not recreate anything.
_HASH_OWN_KEYS = ("links", "volumes_from", "network_mode", "networks", "secrets", "scale")


def container_name(project: str, service: str, number: int, separator: str = "_") -> str:
    """``web_1`` of project ``app``: ``app_web_1`` (1.29.2) or ``app-web-1`` (v2)."""
    return separator.join((project.lstrip("-_"), service, str(number)))


def oneoff_container_name(project: str, service: str, slug: str, separator: str = "_") -> str:
    """A ``run`` container: ``app_web_run_0123456789ab`` (1.29.2; v2 with ``-``)."""
    return separator.join((project.lstrip("-_"), service, "run", slug[:SLUG_LENGTH]))


def project_filter(project: str) -> dict[str, list[str]]:
    """The Engine API ``filters`` that list a project's objects."""
    return {"label": [f"{LABEL_PROJECT}={project}"]}


def _depends_on_label(service: Service) -> str:
    # Compose v2: "db:service_started:false,cache:service_healthy:true"
    return ",".join(
        f"{dep.service}:{dep.condition}:{'true' if dep.restart else 'false'}"
        for dep in service.depends_on
    )


def container_labels(
    project: str,
    service: Service,
    *,
    number: int | None,
    config_hash: str | None,
    working_dir: str | None = None,
    config_files: Sequence[str] = (),
    environment_file: str | None = None,
    oneoff: bool = False,
    slug: str | None = None,
) -> dict[str, str]:
    """Every label of a service's container: the user's, then Compose's own."""
    labels = {key: value or "" for key, value in service.labels.items()}
    labels[LABEL_PROJECT] = project
    labels[LABEL_SERVICE] = service.name
    labels[LABEL_ONEOFF] = "True" if oneoff else "False"
    labels[LABEL_VERSION] = COMPOSE_VERSION
    if number is not None:
        labels[LABEL_CONTAINER_NUMBER] = str(number)
    if slug is not None:
        labels[LABEL_SLUG] = slug
    if config_hash is not None:
        labels[LABEL_CONFIG_HASH] = config_hash
    if working_dir is not None:
        labels[LABEL_WORKING_DIR] = working_dir
    if config_files:
        labels[LABEL_CONFIG_FILES] = ",".join(config_files)
    if environment_file is not None:
        labels[LABEL_ENVIRONMENT_FILE] = environment_file
    if service.depends_on:
        labels[LABEL_DEPENDS_ON] = _depends_on_label(service)
    return labels


def network_labels(project: str, key: str, user_labels: Mapping[str, str | None]) -> dict[str, str]:
    labels = {name: value or "" for name, value in user_labels.items()}
    labels.update({LABEL_PROJECT: project, LABEL_NETWORK: key, LABEL_VERSION: COMPOSE_VERSION})
    return labels


def volume_labels(project: str, key: str, user_labels: Mapping[str, str | None]) -> dict[str, str]:
    labels = {name: value or "" for name, value in user_labels.items()}
    labels.update({LABEL_PROJECT: project, LABEL_VOLUME: key, LABEL_VERSION: COMPOSE_VERSION})
    return labels


def _network_id(project: Project, service: Service) -> str:
    mode = service.network_mode
    if mode is not None:
        # 1.29.2 ServiceNetworkMode.id is the service's name; NetworkMode.id the mode string
        return mode.service if mode.service is not None else str(mode)
    for net in service.networks:
        config = project.networks.get(net.name)
        return config.name if config is not None else net.name
    return "none"


def config_dict(project: Project, service: Service, image_id: str | None) -> dict[str, Any]:
    """The object whose canonical JSON the config hash digests (see the module docstring)."""
    options = {key: value for key, value in service.config.items() if key not in _HASH_OWN_KEYS}
    deploy = options.get("deploy")
    if isinstance(deploy, Mapping) and "replicas" in deploy:
        options["deploy"] = {key: value for key, value in deploy.items() if key != "replicas"}
    networks: dict[str, Any] = {}
    for net in service.networks:
        config = project.networks.get(net.name)
        engine_name = config.name if config is not None else net.name
        raw = (service.config.get("networks") or {}).get(net.name)
        networks[engine_name] = raw
    return {
        "options": options,
        "image_id": image_id,
        "links": [[link.service, link.alias] for link in service.links],
        "net": _network_id(project, service),
        "networks": networks,
        "secrets": list(service.config.get("secrets") or []),
        "volumes_from": [
            [source.source, source.mode]
            for source in service.volumes_from
            if source.kind == "service"
        ],
    }


def config_hash(project: Project, service: Service, image_id: str | None) -> str:
    """sha256 hex of the canonical JSON of :func:`config_dict` (1.29.2 ``json_hash``)."""
    dump = json.dumps(
        config_dict(project, service, image_id), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(dump.encode("utf-8")).hexdigest()
