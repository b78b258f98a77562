"""One service: its dict from the loader, type-checked and parsed into a :class:`Service`.

Role: :func:`service_from_dict` refuses unknown keys, type-checks every key, and builds
each field: the network, mount and resource keys through their modules' builders, and
here the keys with no other home (``command``/``entrypoint``, ``build``, ``healthcheck``,
``restart``, ``logging``, ``depends_on``) and the replica count.

Invariants:
- No key is dropped silently: it is interpreted, kept in :attr:`Service.extra` after a
  type check (the compose-spec keys only the runner may use), or refused as docker-compose
  1.29.2's "Unsupported config option for services.web: 'foo'" (``x-`` keys excepted).
- ``scale`` and ``deploy.replicas`` are one setting; a ``container_name`` refuses more
  than one replica (docker-compose 1.29.2).
- A service with neither ``networks`` nor ``network_mode`` joins the project's
  ``default`` network (docker-compose 1.29.2 ``get_networks``; compose-go the same).
"""

from __future__ import annotations

import shlex
from functools import partial

from dockyard.compose.model.checks import _Ctx, _scalar_text, _words
from dockyard.compose.model.mounts import _devices, _volumes, _volumes_from
from dockyard.compose.model.network import _expose, _links, _network_mode, _networks, _ports
from dockyard.compose.model.resources import _deploy, _resources, _size, _ulimits
from dockyard.compose.model.scalars import parse_duration_ns
from dockyard.compose.model.values import (
    Build,
    ComposeModelError,
    DependsOn,
    Healthcheck,
    Logging,
    RestartPolicy,
    Service,
    ServiceNetwork,
)

# compose-spec keys the model keeps verbatim after a type check; the runner may use them.
_PASSTHROUGH: dict[str, tuple[type, ...]] = {
    "annotations": (dict,),
    "attach": (bool,),
    "blkio_config": (dict,),
    "cgroup": (str,),
    "cgroup_parent": (str,),
    "configs": (list,),
    "cpu_count": (int,),
    "cpu_percent": (int, float),
    "cpu_rt_period": (int, str),
    "cpu_rt_runtime": (int, str),
    "credential_spec": (dict,),
    # the loader resolves these into environment / the service itself and may keep them
    "env_file": (list, str),
    "extends": (dict, str),
    "isolation": (str,),
    "oom_kill_disable": (bool,),
    "oom_score_adj": (int,),
    "platform": (str,),
    "pull_policy": (str,),
    "runtime": (str,),
    "secrets": (list,),
    "storage_opt": (dict,),
    "userns_mode": (str,),
    "uts": (str,),
    "volume_driver": (str,),
}


# The service keys the model interprets, plus the passthrough ones.
_SERVICE_KEYS = _words(
    """
    build cap_add cap_drop command container_name cpu_period cpu_quota cpu_shares cpus
    cpuset depends_on deploy devices dns dns_opt dns_search domainname entrypoint
    environment expose external_links extra_hosts group_add healthcheck hostname image init
    ipc labels links logging mac_address mem_limit mem_reservation memswap_limit
    network_mode networks pid pids_limit ports privileged profiles read_only restart scale
    security_opt shm_size stdin_open stop_grace_period stop_signal sysctls tmpfs tty ulimits
    user volumes volumes_from working_dir
    """
) + tuple(_PASSTHROUGH)
_STRING_KEYS = _words(
    """
    container_name cpuset domainname hostname image ipc mac_address pid stop_signal user
    working_dir
    """
)
_BOOL_KEYS = _words("init privileged read_only stdin_open tty")
_DEPENDS_CONDITIONS = (
    "service_started",
    "service_healthy",
    "service_completed_successfully",
)
_RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")


def _command(ctx: _Ctx, key: str, value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        # docker-py split_command / compose-go shellwords: a string is shell-split, not run
        # by a shell (use ["sh", "-c", ...] for that).
        try:
            return tuple(shlex.split(value))
        except ValueError as err:
            raise ctx.fail(key, f"{ctx.path(key)}: {err}") from None
    return ctx.strings(key, value)


def _healthcheck(ctx: _Ctx, value: object) -> Healthcheck:
    key = "healthcheck"
    spec = ctx.check(key, value, dict)
    ctx.unknown(
        ctx.path(key),
        list(spec),
        ("test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"),
    )
    if ctx.check(f"{key}.disable", spec.get("disable", False), bool):
        if "test" in spec and spec["test"] not in (["NONE"], "NONE"):
            # compose-go: "healthcheck.disable and healthcheck.test can't be set at the same time"
            raise ctx.fail(key, f"{ctx.path(key)}: test and disable can't be set at the same time")
        return Healthcheck(test=("NONE",))
    test: tuple[str, ...] | None = None
    if "test" in spec:
        raw = spec["test"]
        if isinstance(raw, str):
            # compose 1.29.2: a string test runs in the shell
            test = ("CMD-SHELL", raw)
        else:
            test = ctx.strings(f"{key}.test", raw)
            if test and test[0] not in ("CMD", "CMD-SHELL", "NONE"):
                raise ctx.fail(
                    key,
                    f"{ctx.path(key)}.test: the first item must be CMD, CMD-SHELL or NONE",
                )

    def duration(name: str) -> int | None:
        if name not in spec:
            return None
        full = f"{ctx.path(key)}.{name}"
        return ctx.wrap(key, partial(parse_duration_ns, spec[name], full))

    retries = spec.get("retries")
    return Healthcheck(
        test=test,
        interval_ns=duration("interval"),
        timeout_ns=duration("timeout"),
        start_period_ns=duration("start_period"),
        start_interval_ns=duration("start_interval"),
        retries=None if retries is None else ctx.check(f"{key}.retries", retries, int),
    )


def _restart(ctx: _Ctx, value: object) -> RestartPolicy:
    text = ctx.check("restart", value, str)
    name, _, count = text.partition(":")
    if name not in _RESTART_POLICIES or (count and (name != "on-failure" or not count.isdigit())):
        # moby runconfig/opts ParseRestartPolicy wording
        raise ctx.fail("restart", f"{ctx.path('restart')}: invalid restart policy {text!r}")
    return RestartPolicy(name=name, maximum_retry_count=int(count or 0))


def _logging(ctx: _Ctx, value: object) -> Logging:
    spec = ctx.check("logging", value, dict)
    ctx.unknown(ctx.path("logging"), list(spec), ("driver", "options"))
    driver = spec.get("driver")
    if driver is not None:
        ctx.check("logging.driver", driver, str)
    return Logging(driver=driver, options=ctx.options("logging.options", spec.get("options") or {}))


def _depends_on(ctx: _Ctx, value: object) -> tuple[DependsOn, ...]:
    out = []
    for name, spec in ctx.check("depends_on", value, dict).items():
        key = f"depends_on.{name}"
        spec = ctx.check(key, spec if spec is not None else {}, dict)
        ctx.unknown(ctx.path(key), list(spec), ("condition", "restart", "required"))
        condition = ctx.check(f"{key}.condition", spec.get("condition", "service_started"), str)
        if condition not in _DEPENDS_CONDITIONS:
            raise ctx.fail(
                "depends_on",
                f"{ctx.path(key)}.condition must be one of {', '.join(_DEPENDS_CONDITIONS)}",
            )
        out.append(
            DependsOn(
                service=name,
                condition=condition,
                restart=ctx.check(f"{key}.restart", spec.get("restart", False), bool),
                required=ctx.check(f"{key}.required", spec.get("required", True), bool),
            )
        )
    return tuple(out)


def _build(ctx: _Ctx, value: object) -> Build:
    if isinstance(value, str):
        return Build(context=value)
    spec = ctx.check("build", value, str, dict)
    ctx.unknown(
        ctx.path("build"),
        list(spec),
        _words(
            "context dockerfile args target labels cache_from network shm_size "
            "extra_hosts pull no_cache isolation platforms ssh secrets tags "
            "additional_contexts dockerfile_inline cache_to privileged"
        ),
    )
    context = ctx.check("build.context", spec.get("context", "."), str)

    def optional(key: str) -> str | None:
        return None if spec.get(key) is None else ctx.check(f"build.{key}", spec[key], str)

    return Build(
        context=context,
        dockerfile=optional("dockerfile"),
        args=ctx.mapping("build.args", spec.get("args") or {}),
        target=optional("target"),
        labels=ctx.mapping("build.labels", spec.get("labels") or {}),
        cache_from=ctx.strings("build.cache_from", spec.get("cache_from") or []),
        network=optional("network"),
        shm_size_bytes=None
        if spec.get("shm_size") is None
        else _size(ctx, "build.shm_size", spec["shm_size"]),
        extra_hosts=ctx.mapping("build.extra_hosts", spec.get("extra_hosts") or {}),
        pull=ctx.check("build.pull", spec.get("pull", False), bool),
        no_cache=ctx.check("build.no_cache", spec.get("no_cache", False), bool),
    )


def service_from_dict(name: str, spec: object) -> Service:
    """One service's dict, type-checked and parsed."""
    ctx = _Ctx(name)
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise ComposeModelError(
            f"services.{name} contains an invalid type, it should be an object", name, None
        )
    ctx.unknown(f"services.{name}", list(spec), _SERVICE_KEYS)
    for key in _STRING_KEYS:
        if key in spec:
            ctx.check(key, spec[key], str)
    for key in _BOOL_KEYS:
        if key in spec:
            ctx.check(key, spec[key], bool)
    extra = {}
    for key, types in _PASSTHROUGH.items():
        if key in spec:
            extra[key] = ctx.check(key, spec[key], *types)

    image = spec.get("image")
    build = _build(ctx, spec["build"]) if spec.get("build") is not None else None
    if image is None and build is None:
        # docker-compose 1.29.2 / compose-go
        raise ComposeModelError(
            f"Service {name} has neither an image nor a build context specified. "
            "At least one must be provided.",
            name,
            "image",
        )

    deploy_replicas, deploy_resources = (
        _deploy(ctx, spec["deploy"]) if spec.get("deploy") is not None else (None, {})
    )
    scale = spec.get("scale")
    if scale is not None:
        ctx.check("scale", scale, int)
    if scale is not None and deploy_replicas is not None and scale != deploy_replicas:
        raise ctx.fail(
            "scale", f"services.{name}: can't set distinct values on 'scale' and 'deploy.replicas'"
        )
    replicas = scale if scale is not None else deploy_replicas if deploy_replicas is not None else 1
    if replicas < 0:
        raise ctx.fail("scale", f"{ctx.path('scale')} must not be negative")
    container_name = spec.get("container_name")
    if container_name is not None and replicas > 1:
        # docker-compose 1.29.2 Service.scale refuses the same
        raise ctx.fail(
            "container_name",
            f'The "{name}" service is using the custom container name "{container_name}". '
            "Docker requires each container to have a unique name. Remove the custom name to "
            "scale the service.",
        )

    network_mode = _network_mode(ctx, spec["network_mode"]) if "network_mode" in spec else None
    networks = _networks(ctx, spec["networks"]) if spec.get("networks") is not None else ()
    if network_mode is not None and networks:
        # docker-compose 1.29.2 validate_network_mode
        raise ctx.fail("networks", "'network_mode' and 'networks' cannot be combined")
    if network_mode is None and not networks:
        networks = (ServiceNetwork(name="default"),)

    grace = spec.get("stop_grace_period")
    return Service(
        name=name,
        config=spec,
        image=image,
        build=build,
        container_name=container_name,
        replicas=replicas,
        profiles=ctx.strings("profiles", spec.get("profiles") or []),
        command=_command(ctx, "command", spec.get("command")),
        entrypoint=_command(ctx, "entrypoint", spec.get("entrypoint")),
        environment=ctx.mapping("environment", spec.get("environment") or {}),
        labels=ctx.mapping("labels", spec.get("labels") or {}),
        ports=_ports(ctx, spec["ports"]) if spec.get("ports") is not None else (),
        expose=_expose(ctx, spec["expose"]) if spec.get("expose") is not None else (),
        volumes=_volumes(ctx, spec["volumes"]) if spec.get("volumes") is not None else (),
        volumes_from=_volumes_from(ctx, spec.get("volumes_from") or []),
        tmpfs=ctx.strings("tmpfs", spec.get("tmpfs") or [], scalar_ok=True),
        links=_links(ctx, spec.get("links") or []),
        external_links=ctx.strings("external_links", spec.get("external_links") or []),
        depends_on=_depends_on(ctx, spec.get("depends_on") or {}),
        network_mode=network_mode,
        networks=networks,
        healthcheck=_healthcheck(ctx, spec["healthcheck"]) if "healthcheck" in spec else None,
        resources=_resources(ctx, spec, deploy_resources),
        restart=_restart(ctx, spec["restart"]) if "restart" in spec else RestartPolicy(),
        ulimits=_ulimits(ctx, spec.get("ulimits") or {}),
        logging=_logging(ctx, spec["logging"]) if spec.get("logging") is not None else None,
        cap_add=ctx.strings("cap_add", spec.get("cap_add") or []),
        cap_drop=ctx.strings("cap_drop", spec.get("cap_drop") or []),
        privileged=spec.get("privileged", False),
        security_opt=ctx.strings("security_opt", spec.get("security_opt") or []),
        devices=_devices(ctx, spec.get("devices") or []),
        user=spec.get("user"),
        working_dir=spec.get("working_dir"),
        tty=spec.get("tty", False),
        stdin_open=spec.get("stdin_open", False),
        init=spec.get("init"),
        stop_signal=spec.get("stop_signal"),
        stop_grace_period_ns=None
        if grace is None
        else ctx.wrap(
            "stop_grace_period",
            lambda: parse_duration_ns(grace, ctx.path("stop_grace_period")),
        ),
        sysctls=ctx.mapping("sysctls", spec.get("sysctls") or {}),
        extra_hosts=ctx.mapping("extra_hosts", spec.get("extra_hosts") or {}),
        dns=ctx.strings("dns", spec.get("dns") or [], scalar_ok=True),
        dns_search=ctx.strings("dns_search", spec.get("dns_search") or [], scalar_ok=True),
        dns_opt=ctx.strings("dns_opt", spec.get("dns_opt") or [], scalar_ok=True),
        hostname=spec.get("hostname"),
        domainname=spec.get("domainname"),
        pid=spec.get("pid"),
        ipc=spec.get("ipc"),
        read_only=spec.get("read_only", False),
        group_add=tuple(
            _scalar_text(ctx.check("group_add", item, str, int))
            for item in ctx.check("group_add", spec.get("group_add") or [], list)
        ),
        mac_address=spec.get("mac_address"),
        extra=extra,
    )
