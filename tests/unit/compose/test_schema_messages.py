"""The compose-spec validation's error texts: one case per kind of error, nested paths included.

Each case loads a whole file through the loader (``load_config``) so that the error is the
one a user sees: the file in front, docker-compose 1.29.2's wording, and the service and
dotted key path (array indices left out) on the error.
"""

from __future__ import annotations

import pytest

from dockyard.compose.loader import ComposeFileError, LoadOptions, load_config

pytestmark = pytest.mark.unit

PROJECT = "/srv/app"
FILE = f"{PROJECT}/compose.yml"


def refusal(text: str) -> ComposeFileError:
    with pytest.raises(ComposeFileError) as err:
        load_config([FILE], {FILE: text}, LoadOptions(PROJECT, {}))
    assert str(err.value).startswith(f"{FILE}: "), "the file comes first"
    assert err.value.file == FILE
    return err.value


def web(body: str) -> ComposeFileError:
    return refusal(f"services:\n  web:\n    image: x\n{body}")


@pytest.mark.parametrize(
    ("body", "message", "key"),
    [
        # docker-compose 1.29.2 get_unsupported_config_msg, with its DOCKER_CONFIG_HINTS.
        (
            "    workdir: /src\n",
            "Unsupported config option for services.web: 'workdir' (did you mean 'working_dir'?)",
            "services.web.workdir",
        ),
        (
            "    healthcheck: {test: [CMD, 'true'], intervall: 1s}\n",
            "Unsupported config option for services.web.healthcheck: 'intervall'",
            "services.web.healthcheck.intervall",
        ),
        (
            "    deploy: {resources: {limits: {gpus: 1}}}\n",
            "Unsupported config option for services.web.deploy.resources.limits: 'gpus'",
            "services.web.deploy.resources.limits.gpus",
        ),
        (
            "    deploy: {placement: {preferences: [{spreed: zone}]}}\n",
            "Unsupported config option for services.web.deploy.placement.preferences: 'spreed'",
            "services.web.deploy.placement.preferences.spreed",
        ),
        (
            "    blkio_config: {weight_device: [{path: /dev/sda, wieght: 1}]}\n",
            "Unsupported config option for services.web.blkio_config.weight_device: 'wieght'",
            "services.web.blkio_config.weight_device.wieght",
        ),
        # Objects a oneOf chose: 1.29.2 _parse_oneof_validator's wording.
        (
            "    build: {context: ., dockerfiel: Dockerfile}\n",
            "services.web.build contains unsupported option: 'dockerfiel'",
            "services.web.build.dockerfiel",
        ),
        (
            "    volumes: [{type: bind, source: ., target: /c, bind: {propagaton: shared}}]\n",
            "services.web.volumes.bind contains unsupported option: 'propagaton'",
            "services.web.volumes.bind.propagaton",
        ),
        (
            "    networks: {front: {alias: [a]}}\n",
            "services.web.networks.front contains unsupported option: 'alias'",
            "services.web.networks.front.alias",
        ),
        (
            "    ports: [{target: 80, publised: 8080}]\n",
            "services.web.ports contains unsupported option: 'publised'",
            "services.web.ports.publised",
        ),
    ],
)
def test_unknown_keys(body: str, message: str, key: str) -> None:
    err = web(body)
    assert (err.message, err.service, err.key) == (message, "web", key)


def test_extension_keys_are_allowed_where_the_schema_allows_them() -> None:
    config = load_config(
        [FILE],
        {
            FILE: "services:\n  web:\n    image: x\n"
            "    build: {context: ., x-cache: on}\n"
            "    deploy: {resources: {limits: {x-note: a}}}\n"
            "    volumes: [{type: bind, source: ., target: /c, x-why: dev}]\n"
            "networks: {front: {ipam: {config: [{subnet: 10.0.0.0/24, x-a: 1}]}}}\n"
        },
        LoadOptions(PROJECT, {}),
    ).config
    assert "web" in config["services"]


def test_extension_keys_are_refused_where_the_schema_does_not_allow_them() -> None:
    err = web("    blkio_config: {x-note: a}\n")
    assert err.message == "Unsupported config option for services.web.blkio_config: 'x-note'"


@pytest.mark.parametrize(
    ("body", "message", "key"),
    [
        (
            "    ports: 5000\n",
            "services.web.ports contains an invalid type, it should be an array",
            "services.web.ports",
        ),
        (
            "    deploy: {replicas: two}\n",
            "services.web.deploy.replicas contains an invalid type, it should be an integer",
            "services.web.deploy.replicas",
        ),
        (
            "    healthcheck: {disable: 'no'}\n",
            "services.web.healthcheck.disable contains an invalid type, it should be a boolean",
            "services.web.healthcheck.disable",
        ),
        (
            "    deploy: {resources: {reservations: {devices: {capabilities: [gpu]}}}}\n",
            "services.web.deploy.resources.reservations.devices contains an invalid type, "
            "it should be an array",
            "services.web.deploy.resources.reservations.devices",
        ),
        # Array items and map entries quote the value (1.29.2: json.dumps of the instance).
        (
            "    cap_add: [NET_ADMIN, 3]\n",
            "services.web.cap_add contains 3, which is an invalid type, it should be a string",
            "services.web.cap_add",
        ),
        (
            "    logging: {options: {max-size: [1m]}}\n",
            'services.web.logging.options.max-size contains ["1m"], which is an invalid type, '
            "it should be a string, number, or a null",
            "services.web.logging.options.max-size",
        ),
        (
            "    ulimits: {nofile: 1.5}\n",
            "services.web.ulimits.nofile contains 1.5, which is an invalid type, "
            "it should be an integer, or an object",
            "services.web.ulimits.nofile",
        ),
        (
            "    networks: {front: {aliases: [a, 1]}}\n",
            "services.web.networks.front.aliases contains 1, which is an invalid type, "
            "it should be a string",
            "services.web.networks.front.aliases",
        ),
    ],
)
def test_wrong_types(body: str, message: str, key: str) -> None:
    err = web(body)
    assert (err.message, err.service, err.key) == (message, "web", key)


@pytest.mark.parametrize(
    ("body", "message", "key"),
    [
        (
            "    depends_on: {db: {condition: service_ready}}\n",
            "services.web.depends_on.db.condition must be one of the following: "
            '"service_started", "service_healthy", "service_completed_successfully"',
            "services.web.depends_on.db.condition",
        ),
        (
            "    volumes: [{type: mount, target: /c}]\n",
            'services.web.volumes.type must be one of the following: "bind", "volume", '
            '"tmpfs", "cluster", "npipe", "image"',
            "services.web.volumes.type",
        ),
        (
            "    deploy: {update_config: {order: random}}\n",
            "services.web.deploy.update_config.order must be one of the following: "
            '"start-first", "stop-first"',
            "services.web.deploy.update_config.order",
        ),
    ],
)
def test_enums(body: str, message: str, key: str) -> None:
    err = web(body)
    assert (err.message, err.service, err.key) == (message, "web", key)


@pytest.mark.parametrize(
    ("body", "message", "key"),
    [
        # Inside a oneOf branch: jsonschema's message after the path (1.29.2).
        (
            "    volumes: [{source: ., target: /c}]\n",
            "services.web.volumes 'type' is a required property",
            "services.web.volumes",
        ),
        (
            "    ulimits: {nofile: {soft: 1024}}\n",
            "services.web.ulimits.nofile 'hard' is a required property",
            "services.web.ulimits.nofile",
        ),
        # Elsewhere: 1.29.2 handle_generic_error's "is invalid, … is required."
        (
            "    deploy: {resources: {reservations: {devices: [{count: 1}]}}}\n",
            "services.web.deploy.resources.reservations.devices is invalid, "
            "capabilities is required.",
            "services.web.deploy.resources.reservations.devices",
        ),
    ],
)
def test_required_keys(body: str, message: str, key: str) -> None:
    err = web(body)
    assert (err.message, err.service, err.key) == (message, "web", key)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "    cap_add: [NET_ADMIN, NET_ADMIN]\n",
            "services.web.cap_add value ['NET_ADMIN', 'NET_ADMIN'] has non-unique elements",
        ),
        (
            "    environment: [A=1, A=1]\n",
            "services.web.environment contains non-unique items, please remove duplicates "
            "from ['A=1', 'A=1']",
        ),
    ],
)
def test_duplicates(body: str, message: str) -> None:
    assert web(body).message == message


def test_duplicates_compare_as_json_schema_does() -> None:
    # 80 and 80.0 are the same number; objects compare by value.
    assert "non-unique" in web("    expose: [80, 80.0]\n").message
    assert "non-unique" in web("    ports: [{target: 80}, {target: 80}]\n").message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "    oom_score_adj: -2000\n",
            "services.web.oom_score_adj value -2000 is less than the minimum of -1000",
        ),
        (
            "    cpu_percent: 101\n",
            "services.web.cpu_percent value 101 is greater than the maximum of 100",
        ),
        (
            "    volumes: [{type: tmpfs, target: /t, tmpfs: {size: -1}}]\n",
            "services.web.volumes.tmpfs.size value -1 is less than the minimum of 0",
        ),
    ],
)
def test_bounds(body: str, message: str) -> None:
    assert web(body).message == message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "    pull_policy: sometimes\n",
            "services.web.pull_policy value 'sometimes' does not match 'always|never|build|"
            "if_not_present|missing|refresh|daily|weekly|every_([0-9]+[wdhms])+'",
        ),
        (
            "    container_name: _\n",
            "services.web.container_name value '_' does not match '[a-zA-Z0-9][a-zA-Z0-9_.-]+'",
        ),
    ],
)
def test_patterns(body: str, message: str) -> None:
    assert web(body).message == message


def test_patterns_accept_what_the_spec_allows() -> None:
    text = "services:\n  web: {image: x, pull_policy: every_12h, container_name: my-web}\n"
    config = load_config([FILE], {FILE: text}, LoadOptions(PROJECT, {})).config
    assert config["services"]["web"]["pull_policy"] == "every_12h"


@pytest.mark.parametrize(
    ("sections", "message", "key"),
    [
        (
            "networks: {front: {driver: bridge, drivr_opts: {}}}\n",
            "Unsupported config option for networks.front: 'drivr_opts'",
            "networks.front.drivr_opts",
        ),
        (
            "networks: {front: {ipam: {config: [{subnet: 10.0.0.0/24, gw: 10.0.0.1}]}}}\n",
            "Unsupported config option for networks.front.ipam.config: 'gw'",
            "networks.front.ipam.config.gw",
        ),
        (
            "networks: {front: {external: {name: a, driver: b}}}\n",
            "networks.front.external contains unsupported option: 'driver'",
            "networks.front.external.driver",
        ),
        (
            "volumes: {data: {external: 'yes'}}\n",
            "volumes.data.external contains an invalid type, it should be a boolean, or an object",
            "volumes.data.external",
        ),
        (
            "secrets: {token: null}\n",
            "secrets.token contains an invalid type, it should be an object",
            "secrets.token",
        ),
        (
            "configs: {conf: {file: ./c, mode: 1}}\n",
            "Unsupported config option for configs.conf: 'mode'",
            "configs.conf.mode",
        ),
        (
            "volumes: {'bad name': {}}\n",
            "Unsupported config option for volumes: 'bad name'",
            "volumes",
        ),
    ],
)
def test_top_level_sections(sections: str, message: str, key: str) -> None:
    err = refusal(f"services:\n  web: {{image: x}}\n{sections}")
    assert (err.message, err.service, err.key) == (message, None, key)


def test_v1_files_keep_their_own_rules() -> None:
    # v1 keys are fine in a v1 file, and nested objects are not walked there (as before).
    config = load_config(
        [FILE],
        {FILE: "web:\n  image: x\n  net: host\n  healthcheck: {test: [CMD, 'true']}\n"},
        LoadOptions(PROJECT, {}),
    ).config
    assert config["services"]["web"]["network_mode"] == "host"
