"""The project model: short syntaxes parsed as Compose does, every bad key named."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.compose.model import (
    ComposeModelError,
    DependsOn,
    DeviceMapping,
    Healthcheck,
    Link,
    NetworkConfig,
    NetworkMode,
    PortSpec,
    Resources,
    RestartPolicy,
    Service,
    ServiceNetwork,
    Ulimit,
    VolumeMount,
    VolumesFrom,
    parse_bytes,
    parse_duration_ns,
    parse_port,
    parse_volume,
    project_from_dict,
)

pytestmark = pytest.mark.unit

SECOND_NS = 1_000_000_000


def project(services: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"name": "app", "services": services, **top}


def one(spec: dict[str, Any], **top: Any) -> Service:
    return project_from_dict(project({"web": {"image": "busybox", **spec}}, **top)).services["web"]


def error(spec: dict[str, Any], **top: Any) -> ComposeModelError:
    with pytest.raises(ComposeModelError) as info:
        one(spec, **top)
    return info.value


# --- the example app -----------------------------------------------------------


def test_example_app() -> None:
    p = project_from_dict(
        project(
            {
                "web": {
                    "build": {"context": "/src/app"},
                    "command": "python app.py",
                    "ports": ["5000:5000"],
                    "volumes": ["/src/app:/code"],
                    "links": ["redis"],
                    "environment": {"PYTHONUNBUFFERED": "1"},
                },
                "redis": {"image": "redis:latest", "command": "redis-server --appendonly yes"},
            }
        )
    )
    web, redis = p.services["web"], p.services["redis"]
    assert p.service_names == ("web", "redis")
    assert web.build is not None and web.build.context == "/src/app"
    assert web.command == ("python", "app.py")
    assert web.ports == (PortSpec(target=5000, published="5000"),)
    assert web.volumes == (VolumeMount(type="bind", source="/src/app", target="/code"),)
    assert web.links == (Link("redis", "redis"),)
    assert web.environment == {"PYTHONUNBUFFERED": "1"}
    assert redis.command == ("redis-server", "--appendonly", "yes")
    assert web.networks == (ServiceNetwork("default"),)
    assert p.networks == {"default": NetworkConfig(key="default", name="app_default")}


# --- ports -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("5000", (PortSpec(5000),)),
        (5000, (PortSpec(5000),)),
        ("5000:5000", (PortSpec(5000, "5000"),)),
        ("127.0.0.1:8000:8000/udp", (PortSpec(8000, "8000", "127.0.0.1", "udp"),)),
        ("127.0.0.1::80", (PortSpec(80, None, "127.0.0.1"),)),
        ("[::1]:8080:80", (PortSpec(80, "8080", "::1"),)),
        ("53:53/sctp", (PortSpec(53, "53", protocol="sctp"),)),
        (
            "9090-9091:8080-8081",
            (PortSpec(8080, "9090"), PortSpec(8081, "9091")),
        ),
        ("3000-3001", (PortSpec(3000), PortSpec(3001))),
        ("8000-8010:80", (PortSpec(80, "8000-8010"),)),
    ],
)
def test_short_ports(raw: str | int, expected: tuple[PortSpec, ...]) -> None:
    assert parse_port(raw) == expected
    assert one({"ports": [raw]}).ports == expected


@pytest.mark.parametrize("raw", ["abc", "80/xyz", "1:2:3:", "70000", "a:80", "9090-9092:8080-8081"])
def test_bad_short_ports(raw: str) -> None:
    err = error({"ports": [raw]})
    assert err.service == "web" and err.key == "ports"
    assert err.message.startswith("services.web.ports: Invalid ")


def test_bad_port_message_is_compose_s() -> None:
    assert error({"ports": ["abc"]}).message == (
        'services.web.ports: Invalid port "abc", should be '
        "[[remote_ip:]remote_port[-remote_port]:]port[/protocol]"
    )
    assert error({"ports": ["9090-9092:8080-8081"]}).message.endswith(
        "Invalid ranges specified for container and host Ports: 8080-8081 and 9090-9092"
    )


def test_port_of_wrong_type() -> None:
    err = error({"ports": [["80"]]})
    assert err.message == (
        "services.web.ports contains an invalid type, it should be a number, or an object"
    )
    assert (err.service, err.key) == ("web", "ports")
    assert error({"ports": "80:80"}).message == (
        "services.web.ports contains an invalid type, it should be an array"
    )


def test_long_ports() -> None:
    ports = one(
        {
            "ports": [
                {"target": 80, "published": 8080, "protocol": "udp", "mode": "host"},
                {"target": 443, "published": "8443", "host_ip": "127.0.0.1"},
                {"target": 22},
            ]
        }
    ).ports
    assert ports == (
        PortSpec(80, "8080", protocol="udp", mode="host"),
        PortSpec(443, "8443", "127.0.0.1"),
        PortSpec(22),
    )
    assert error({"ports": [{"published": 80}]}).key == "ports"
    assert error({"ports": [{"target": "80"}]}).message == (
        "services.web.ports.target contains an invalid type, it should be a number"
    )
    assert error({"ports": [{"target": 80, "bogus": 1}]}).message == (
        "Unsupported config option for services.web.ports: 'bogus'"
    )


# --- volumes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/data", VolumeMount(type="volume", target="/data")),
        ("db:/var/lib/db", VolumeMount(type="volume", source="db", target="/var/lib/db")),
        (
            "db:/var/lib/db:ro,nocopy",
            VolumeMount(
                type="volume", source="db", target="/var/lib/db", read_only=True, nocopy=True
            ),
        ),
        ("/src:/code", VolumeMount(type="bind", source="/src", target="/code")),
        (
            "/src:/code:ro,z,rshared",
            VolumeMount(
                type="bind",
                source="/src",
                target="/code",
                read_only=True,
                selinux="z",
                propagation="rshared",
            ),
        ),
        (
            "/src:/code:cached",
            VolumeMount(type="bind", source="/src", target="/code", consistency="cached"),
        ),
    ],
)
def test_short_volumes(raw: str, expected: VolumeMount) -> None:
    assert parse_volume(raw) == expected
    assert one({"volumes": [raw]}, volumes={"db": None}).volumes == (expected,)


def test_anonymous_volume() -> None:
    assert parse_volume("/data").anonymous
    assert not parse_volume("db:/data").anonymous
    assert not parse_volume("/x:/data").anonymous


@pytest.mark.parametrize("raw", ["a:b:c:d", ":/x", "/x:", "/src:/code:bogus"])
def test_bad_short_volumes(raw: str) -> None:
    err = error({"volumes": [raw]})
    assert (err.service, err.key) == ("web", "volumes")


def test_bad_volume_format_message() -> None:
    assert error({"volumes": ["a:b:c:d"]}).message == (
        "services.web.volumes: Volume a:b:c:d has incorrect format, should be "
        "external:internal[:mode]"
    )


def test_undeclared_named_volume() -> None:
    assert error({"volumes": ["db:/x"]}).message == (
        'Named volume "db:/x" is used in service "web" but no declaration was found in the '
        "volumes section."
    )


def test_long_volumes() -> None:
    mounts = one(
        {
            "volumes": [
                {"type": "bind", "source": "/src", "target": "/code", "read_only": True},
                {
                    "type": "bind",
                    "source": "/run",
                    "target": "/run",
                    "bind": {"propagation": "rslave", "create_host_path": False},
                },
                {"type": "volume", "source": "db", "target": "/db", "volume": {"nocopy": True}},
                {"type": "volume", "target": "/anon"},
                {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": "64m", "mode": 0o1777}},
            ]
        },
        volumes={"db": {}},
    ).volumes
    assert mounts == (
        VolumeMount(type="bind", source="/src", target="/code", read_only=True),
        VolumeMount(
            type="bind",
            source="/run",
            target="/run",
            propagation="rslave",
            create_host_path=False,
        ),
        VolumeMount(type="volume", source="db", target="/db", nocopy=True),
        VolumeMount(type="volume", target="/anon"),
        VolumeMount(type="tmpfs", target="/tmp", tmpfs_size_bytes=64 << 20, tmpfs_mode=0o1777),
    )
    assert mounts[3].anonymous


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "bind", "target": "/x"},
        {"type": "tmpfs", "source": "x", "target": "/x"},
        {"type": "weird", "target": "/x"},
        {"type": "volume", "source": "v"},
        {"type": "volume", "target": "/x", "bind": {}},
        {"type": "bind", "source": "/x", "target": "/x", "bind": {"propagation": "bad"}},
    ],
)
def test_bad_long_volumes(spec: dict[str, Any]) -> None:
    assert error({"volumes": [spec]}, volumes={"v": None}).key == "volumes"


def test_duplicate_mount_point() -> None:
    assert "Duplicate mount point: /x" in error({"volumes": ["/a:/x", "/b:/x"]}).message


# --- durations, sizes, healthcheck ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1m30s", 90 * SECOND_NS),
        ("10s", 10 * SECOND_NS),
        ("1.5s", 1_500_000_000),
        ("500ms", 500_000_000),
        ("1h", 3600 * SECOND_NS),
        ("2us", 2000),
        ("2µs", 2000),
        ("7ns", 7),
        ("0", 0),
        ("-1s", -SECOND_NS),
        (".5m", 30 * SECOND_NS),
    ],
)
def test_go_durations(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("text", ["", "10", "1x", "s", "1s2", "1.2.3s"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ComposeModelError, match="time: invalid duration"):
        parse_duration_ns(text)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1024, 1024),
        ("1024", 1024),
        ("512m", 512 << 20),
        ("512M", 512 << 20),
        ("1g", 1 << 30),
        ("1gb", 1 << 30),
        ("1.5k", 1536),
        ("100b", 100),
        ("", 0),
    ],
)
def test_byte_sizes(value: str | int, size: int) -> None:
    assert parse_bytes(value) == size


def test_bad_byte_sizes() -> None:
    with pytest.raises(ComposeModelError, match="should specify the units"):
        parse_bytes("12x")
    with pytest.raises(ComposeModelError, match="to an integer"):
        parse_bytes("abcm")


def test_healthcheck() -> None:
    check = one(
        {
            "healthcheck": {
                "test": ["CMD", "curl", "-f", "http://localhost"],
                "interval": "1m30s",
                "timeout": "10s",
                "retries": 3,
                "start_period": "40s",
            }
        }
    ).healthcheck
    assert check == Healthcheck(
        test=("CMD", "curl", "-f", "http://localhost"),
        interval_ns=90 * SECOND_NS,
        timeout_ns=10 * SECOND_NS,
        start_period_ns=40 * SECOND_NS,
        retries=3,
    )
    assert one({"healthcheck": {"test": "curl -f x"}}).healthcheck == Healthcheck(
        test=("CMD-SHELL", "curl -f x")
    )
    disabled = one({"healthcheck": {"disable": True}}).healthcheck
    assert disabled is not None and disabled.disabled


def test_bad_healthchecks() -> None:
    assert error({"healthcheck": {"interval": "5"}}).message == (
        'services.web.healthcheck.interval: time: invalid duration "5"'
    )
    assert error({"healthcheck": {"interval": 5}}).message == (
        "services.web.healthcheck.interval contains an invalid type, it should be a string"
    )
    assert error({"healthcheck": {"test": ["RUN", "x"]}}).key == "healthcheck"
    assert error({"healthcheck": {"retries": "3"}}).key == "healthcheck"
    assert error({"healthcheck": {"disable": True, "test": ["CMD", "x"]}}).key == "healthcheck"
    assert error({"healthcheck": {"intervall": "5s"}}).message == (
        "Unsupported config option for services.web.healthcheck: 'intervall'"
    )


# --- resources, restart, ulimits, logging ---------------------------------------------


def test_resources_legacy_keys() -> None:
    resources = one(
        {
            "mem_limit": "1g",
            "memswap_limit": "2g",
            "mem_reservation": "512m",
            "cpus": 0.5,
            "cpu_shares": 512,
            "cpuset": "0,1",
            "pids_limit": 100,
            "shm_size": "64m",
        }
    ).resources
    assert resources == Resources(
        memory_bytes=1 << 30,
        memory_swap_bytes=2 << 30,
        memory_reservation_bytes=512 << 20,
        nano_cpus=500_000_000,
        cpu_shares=512,
        cpuset="0,1",
        pids_limit=100,
        shm_size_bytes=64 << 20,
    )
    assert one({"memswap_limit": -1}).resources.memory_swap_bytes == -1


def test_resources_deploy() -> None:
    service = one(
        {
            "deploy": {
                "replicas": 2,
                "resources": {
                    "limits": {"cpus": "1.5", "memory": "256M", "pids": 10},
                    "reservations": {"memory": "128M"},
                },
            }
        }
    )
    assert service.replicas == 2
    assert service.resources == Resources(
        memory_bytes=256 << 20,
        memory_reservation_bytes=128 << 20,
        nano_cpus=1_500_000_000,
        pids_limit=10,
    )
    # the same value twice is fine; distinct values are refused, as compose-go does
    assert one(
        {"mem_limit": "256m", "deploy": {"resources": {"limits": {"memory": "256M"}}}}
    ).resources.memory_bytes == (256 << 20)
    assert error(
        {"mem_limit": "1g", "deploy": {"resources": {"limits": {"memory": "256M"}}}}
    ).message == (
        "services.web: can't set distinct values on 'mem_limit' and "
        "'deploy.resources.limits.memory'"
    )


def test_bad_resources() -> None:
    assert error({"mem_limit": "1q"}).key == "mem_limit"
    assert error({"mem_limit": True}).message == (
        "services.web.mem_limit contains an invalid type, it should be a number, or a string"
    )
    assert error({"cpus": "lots"}).key == "cpus"
    assert error({"cpu_shares": "512"}).message == (
        "services.web.cpu_shares contains an invalid type, it should be a number"
    )
    assert error({"deploy": {"placement": ["node.role==manager"]}}).message == (
        "services.web.deploy.placement contains an invalid type, it should be an object"
    )
    assert error({"deploy": {"labels": {"a": ["b"]}}}).key == "deploy"
    assert error({"deploy": {"resources": {"limits": {"gpus": 1}}}}).message == (
        "Unsupported config option for services.web.deploy.resources.limits: 'gpus'"
    )


@pytest.mark.parametrize(
    ("raw", "policy"),
    [
        ("no", RestartPolicy()),
        ("always", RestartPolicy("always")),
        ("unless-stopped", RestartPolicy("unless-stopped")),
        ("on-failure", RestartPolicy("on-failure")),
        ("on-failure:5", RestartPolicy("on-failure", 5)),
    ],
)
def test_restart(raw: str, policy: RestartPolicy) -> None:
    assert one({"restart": raw}).restart == policy


@pytest.mark.parametrize("raw", ["sometimes", "always:3", "on-failure:x"])
def test_bad_restart(raw: str) -> None:
    assert error({"restart": raw}).key == "restart"


def test_ulimits() -> None:
    assert one({"ulimits": {"nproc": 65535, "nofile": {"soft": 20000, "hard": 40000}}}).ulimits == (
        Ulimit("nproc", 65535, 65535),
        Ulimit("nofile", 20000, 40000),
    )
    assert error({"ulimits": {"nofile": {"soft": 2}}}).key == "ulimits"
    assert error({"ulimits": {"nofile": {"soft": 3, "hard": 2}}}).key == "ulimits"
    assert error({"ulimits": {"nofile": "many"}}).message == (
        "services.web.ulimits.nofile contains an invalid type, it should be a number, or an object"
    )


def test_logging() -> None:
    logging = one({"logging": {"driver": "json-file", "options": {"max-size": "1m"}}}).logging
    assert logging is not None
    assert (logging.driver, logging.options) == ("json-file", {"max-size": "1m"})
    assert error({"logging": {"drvier": "x"}}).key == "logging"


# --- networking and references ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "mode"),
    [
        ("bridge", NetworkMode("bridge")),
        ("host", NetworkMode("host")),
        ("none", NetworkMode("none")),
        ("service:db", NetworkMode("service", "db")),
        ("container:abc", NetworkMode("container", "abc")),
    ],
)
def test_network_mode(raw: str, mode: NetworkMode) -> None:
    service = one({"network_mode": raw})
    assert service.network_mode == mode
    assert str(mode) == raw
    assert service.networks == ()  # no default network when a mode is given


def test_network_mode_and_networks_conflict() -> None:
    err = error({"network_mode": "host", "networks": {"front": None}}, networks={"front": {}})
    assert err.message == "'network_mode' and 'networks' cannot be combined"
    assert error({"network_mode": "service:"}).key == "network_mode"


def test_service_networks() -> None:
    p = project_from_dict(
        project(
            {
                "web": {
                    "image": "x",
                    "networks": {
                        "front": {"aliases": ["www"], "ipv4_address": "172.20.0.5"},
                        "back": None,
                    },
                }
            },
            networks={
                "front": {"driver": "bridge", "labels": {"a": "b"}},
                "back": {"external": True},
                "named": {"name": "custom"},
                "old": {"external": {"name": "legacy"}},
            },
        )
    )
    assert p.services["web"].networks == (
        ServiceNetwork("front", aliases=("www",), ipv4_address="172.20.0.5"),
        ServiceNetwork("back"),
    )
    assert {k: (n.name, n.external) for k, n in p.networks.items()} == {
        "front": ("app_front", False),
        "back": ("back", True),
        "named": ("custom", False),
        "old": ("legacy", True),
    }
    assert "default" not in p.networks  # nobody uses it


def test_undefined_network() -> None:
    assert error({"networks": {"nowhere": None}}).message == (
        'Service "web" uses an undefined network "nowhere"'
    )


def test_links_volumes_from_depends_on() -> None:
    service = one(
        {
            "links": ["db", "cache:redis"],
            "volumes_from": ["data", "data2:ro", "container:box", "container:box2:ro"],
            "depends_on": {
                "db": {"condition": "service_healthy"},
                "cache": {"condition": "service_started", "restart": True, "required": False},
            },
        }
    )
    assert service.links == (Link("db", "db"), Link("cache", "redis"))
    assert service.volumes_from == (
        VolumesFrom("data"),
        VolumesFrom("data2", read_only=True),
        VolumesFrom("box", "container"),
        VolumesFrom("box2", "container", read_only=True),
    )
    assert service.volumes_from[1].mode == "ro"
    assert service.depends_on == (
        DependsOn("db", "service_healthy"),
        DependsOn("cache", "service_started", restart=True, required=False),
    )
    assert error({"depends_on": {"db": {"condition": "service_ready"}}}).key == "depends_on"
    assert error({"volumes_from": ["a:b:c"]}).key == "volumes_from"
    assert error({"links": [""]}).key == "links"


def test_devices() -> None:
    assert one(
        {
            "devices": [
                "/dev/fuse",
                "/dev/sda:/dev/xvda",
                "/dev/snd:rw",
                "/dev/tty0:/dev/tty0:r",
                {"source": "/dev/kvm", "target": "/dev/kvm", "permissions": "rw"},
            ]
        }
    ).devices == (
        DeviceMapping("/dev/fuse", "/dev/fuse"),
        DeviceMapping("/dev/sda", "/dev/xvda"),
        DeviceMapping("/dev/snd", "/dev/snd", "rw"),
        DeviceMapping("/dev/tty0", "/dev/tty0", "r"),
        DeviceMapping("/dev/kvm", "/dev/kvm", "rw"),
    )
    assert error({"devices": ["/a:/b:xyz"]}).key == "devices"


# --- the other keys --------------------------------------------------------------------


def test_everything_else() -> None:
    service = one(
        {
            "cap_add": ["NET_ADMIN"],
            "cap_drop": ["ALL"],
            "privileged": True,
            "security_opt": ["no-new-privileges:true"],
            "user": "1000:1000",
            "working_dir": "/code",
            "entrypoint": ["/bin/sh", "-c"],
            "command": "echo 'hello world'",
            "tty": True,
            "stdin_open": True,
            "init": True,
            "stop_signal": "SIGINT",
            "stop_grace_period": "1m",
            "sysctls": {"net.core.somaxconn": "1024"},
            "tmpfs": ["/run", "/tmp:size=64m"],
            "extra_hosts": {"somehost": "162.242.195.82"},
            "dns": ["8.8.8.8"],
            "dns_search": ["example.com"],
            "hostname": "h",
            "domainname": "example.com",
            "container_name": "the-web",
            "profiles": ["debug"],
            "expose": ["3000", 8000, "9000-9001/udp"],
            "pid": "host",
            "ipc": "shareable",
            "read_only": True,
            "group_add": ["mail", 1001],
            "mac_address": "02:42:ac:11:00:02",
            "labels": {"a": "b"},
            "platform": "linux/amd64",
            "env_file": [{"path": "/src/.env", "required": True}],
            "x-custom": {"anything": 1},
        }
    )
    assert service.cap_add == ("NET_ADMIN",) and service.cap_drop == ("ALL",)
    assert service.privileged and service.tty and service.stdin_open and service.init
    assert service.security_opt == ("no-new-privileges:true",)
    assert (service.user, service.working_dir) == ("1000:1000", "/code")
    assert service.entrypoint == ("/bin/sh", "-c")
    assert service.command == ("echo", "hello world")
    assert service.stop_signal == "SIGINT"
    assert service.stop_grace_period_ns == 60 * SECOND_NS
    assert service.sysctls == {"net.core.somaxconn": "1024"}
    assert service.tmpfs == ("/run", "/tmp:size=64m")
    assert service.extra_hosts == {"somehost": "162.242.195.82"}
    assert (service.dns, service.dns_search) == (("8.8.8.8",), ("example.com",))
    assert (service.hostname, service.domainname) == ("h", "example.com")
    assert service.container_name == "the-web"
    assert service.profiles == ("debug",)
    assert service.expose == ("3000", "8000", "9000-9001/udp")
    assert (service.pid, service.ipc) == ("host", "shareable")
    assert service.read_only
    assert service.group_add == ("mail", "1001")
    assert service.mac_address == "02:42:ac:11:00:02"
    assert service.extra["platform"] == "linux/amd64"
    assert service.config["x-custom"] == {"anything": 1}


def test_string_scalars_for_list_keys() -> None:
    service = one({"dns": "1.1.1.1", "dns_search": "local", "tmpfs": "/run"})
    assert (service.dns, service.dns_search, service.tmpfs) == (("1.1.1.1",), ("local",), ("/run",))


def test_command_forms() -> None:
    assert one({"command": ["sh", "-c", "echo $$HOME"]}).command == ("sh", "-c", "echo $$HOME")
    assert one({"command": 'sh -c "a b"'}).command == ("sh", "-c", "a b")
    assert one({"entrypoint": ""}).entrypoint == ()
    assert one({}).command is None
    assert error({"command": "echo 'unterminated"}).key == "command"
    assert error({"command": 42}).message == (
        "services.web.command contains an invalid type, it should be an array"
    )


def test_scale_and_replicas() -> None:
    assert one({}).replicas == 1
    assert one({"scale": 3}).replicas == 3
    assert one({"deploy": {"replicas": 0}}).replicas == 0
    assert one({"scale": 2, "deploy": {"replicas": 2}}).replicas == 2
    assert error({"scale": 2, "deploy": {"replicas": 3}}).message == (
        "services.web: can't set distinct values on 'scale' and 'deploy.replicas'"
    )
    assert "Remove the custom name to scale the service" in (
        error({"scale": 2, "container_name": "x"}).message
    )


def test_build_mapping() -> None:
    build = one(
        {
            "build": {
                "context": "/src",
                "dockerfile": "Dockerfile.dev",
                "args": {"A": "1", "B": None},
                "target": "dev",
                "cache_from": ["img:cache"],
                "shm_size": "2g",
            }
        }
    ).build
    assert build is not None
    assert (build.context, build.dockerfile, build.target) == ("/src", "Dockerfile.dev", "dev")
    assert build.args == {"A": "1", "B": None}
    assert build.cache_from == ("img:cache",)
    assert build.shm_size_bytes == 2 << 30
    assert error({"build": {"context": "/src", "dockerfiel": "x"}}).message == (
        "Unsupported config option for services.web.build: 'dockerfiel'"
    )


# --- errors that name the service and the key -----------------------------------------


def test_unknown_service_key() -> None:
    err = error({"imagee": "busybox"})
    assert err.message == "Unsupported config option for services.web: 'imagee'"
    assert (err.service, err.key) == ("web", "imagee")
    assert str(err) == err.message


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"image": 3}, "services.web.image contains an invalid type, it should be a string"),
        ({"tty": "yes"}, "services.web.tty contains an invalid type, it should be a boolean"),
        (
            {"cap_add": "ALL"},
            "services.web.cap_add contains an invalid type, it should be an array",
        ),
        (
            {"environment": {"A": [1]}},
            "services.web.environment.A contains an invalid type, it should be a string, "
            "number, boolean, or a null",
        ),
        ({"user": 1000}, "services.web.user contains an invalid type, it should be a string"),
        (
            {"platform": ["linux"]},
            "services.web.platform contains an invalid type, it should be a string",
        ),
    ],
)
def test_wrong_types(spec: dict[str, Any], message: str) -> None:
    err = error(spec)
    assert err.message == message
    assert err.service == "web"
    assert err.key == next(iter(spec))


def test_service_without_image_or_build() -> None:
    with pytest.raises(ComposeModelError) as info:
        project_from_dict(project({"web": {"command": "x"}}))
    assert info.value.message == (
        "Service web has neither an image nor a build context specified. At least one must "
        "be provided."
    )


def test_service_not_a_mapping() -> None:
    with pytest.raises(ComposeModelError, match=r"services\.web contains an invalid type"):
        project_from_dict(project({"web": ["image"]}))


def test_project_level_errors() -> None:
    with pytest.raises(ComposeModelError, match="Unsupported config option for the project"):
        project_from_dict({"name": "app", "services": {}, "service": {}})
    with pytest.raises(ComposeModelError, match="not a valid project name"):
        project_from_dict({"name": "My App", "services": {}})
    with pytest.raises(ComposeModelError, match=r"networks\.n"):
        project_from_dict({"name": "app", "services": {}, "networks": {"n": {"drvier": "x"}}})


def test_volumes_top_level() -> None:
    p = project_from_dict(
        project(
            {"db": {"image": "x", "volumes": ["data:/d", "ext:/e"]}},
            volumes={"data": {"driver": "local"}, "ext": {"external": True}},
        )
    )
    assert {k: (v.name, v.external, v.driver) for k, v in p.volumes.items()} == {
        "data": ("app_data", False, "local"),
        "ext": ("ext", True, None),
    }


def test_values_are_frozen() -> None:
    service = one({})
    with pytest.raises(AttributeError):
        service.image = "other"  # type: ignore[misc]
