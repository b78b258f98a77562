"""``dockyard compose`` (and ``dockyard up``): parse, load, run, print.

Role: the command line of Compose. Each command loads the project (``-f``, ``-p``,
``--project-directory``, ``--env-file``, ``--profile``, as docker compose), opens one
engine client from the docker CLI's environment (``DOCKER_HOST``…) and hands the work to
:class:`~dockyard.compose.runner.Runner`.

Invariants:
- Every failure a user can cause ends as one line on stderr and exit status 1 (a file
  error names the file, service and key; an engine error is Docker's message): never a
  traceback. Ctrl-C during an attached ``up`` stops the project's containers (Compose's
  "Gracefully stopping...") and exits 130 as docker compose v2 does.
- Output follows Compose: progress on stderr (plain lines when not a terminal), results
  (``ps``, ``config``, logs) on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import secrets
import shlex
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote

import click

from dockyard.compose import labels as lb
from dockyard.compose.client import EngineClient, EngineError, tls_context
from dockyard.compose.graph import build_graph
from dockyard.compose.hijack import (
    StreamModes,
    open_hijack,
    raw_terminal,
    resize_with_retry,
    stream_modes,
    terminal_size,
)
from dockyard.compose.http import HTTPError
from dockyard.compose.loader.core import LoadedProject
from dockyard.compose.loader.errors import ComposeFileError
from dockyard.compose.model import ComposeModelError, Project, parse_port, project_from_dict
from dockyard.compose.plan import UpOptions
from dockyard.compose.progress import Progress, color_for, format_log_line, log_prefix
from dockyard.compose.runner import (
    ComposeRunError,
    Runner,
    UpSettings,
    container_body,
    endpoint_config,
    service_image,
)

__all__ = ["compose", "register"]

_T = TypeVar("_T")

EXIT_INTERRUPTED = 130
# exec/run: everything after SERVICE is the command, its own options included
_PASSTHROUGH = {"ignore_unknown_options": True, "allow_interspersed_args": False}


@dataclass(frozen=True)
class _Global:
    files: tuple[str, ...]
    project_name: str | None
    project_directory: str | None
    env_files: tuple[str, ...]
    profiles: tuple[str, ...]


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


def _load(g: _Global, services: Sequence[str] = ()) -> tuple[LoadedProject, Project]:
    from dockyard.compose.loader.files import load_project

    loaded = load_project(
        g.files,
        g.project_directory,
        g.env_files,
        g.profiles,
        project_name=g.project_name,
        explicit_services=tuple(services),
    )
    for warning in loaded.warnings:
        click.echo(f"WARNING: {warning}", err=True)
    try:
        project = project_from_dict(loaded.config)
        # a dependency cycle is a file error: report it before any engine is contacted
        build_graph(project)
    except ComposeModelError as err:
        # the model does not know the file; the loader's files are where the key was read
        raise ComposeFileError(err.message, file=", ".join(loaded.config_files)) from None
    return loaded, project


def _execute(
    g: _Global,
    work: Callable[[Runner], Awaitable[_T]],
    *,
    services: Sequence[str] = (),
    quiet: bool = False,
) -> _T:
    """Load, connect, run ``work``; every expected failure becomes one line and exit 1."""
    try:
        loaded, project = _load(g, services)
    except (ComposeFileError, ComposeModelError) as err:
        _fail(str(err))

    async def main() -> _T:
        async with EngineClient.from_env() as client:
            progress = Progress(sys.stderr, quiet=quiet)
            # Compose v2 redraws pending progress lines every 100 ms on a terminal
            progress.animate(asyncio.get_running_loop().call_later)
            runner = Runner(client, loaded, project, progress)
            try:
                return await work(runner)
            finally:
                progress.stop()

    try:
        return asyncio.run(main())
    except (ComposeRunError, EngineError, ComposeModelError) as err:
        _fail(str(err))
    except (OSError, HTTPError) as err:
        # the engine went away mid-command (a reset socket, a read timeout)
        _fail(f"error during connect: {err}")  # the docker CLI's prefix
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


def _global(ctx: click.Context) -> _Global:
    obj = ctx.find_object(_Global)
    if obj is None:
        return _Global((), None, None, (), ())
    return obj


def _scale(values: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in values:
        name, sep, count = item.partition("=")
        if not sep or not count.isdigit():
            raise click.BadParameter(
                f"invalid scale {item!r}: want SERVICE=NUM", param_hint="--scale"
            )
        out[name] = int(count)
    return out


# --- logs ------------------------------------------------------------------------------


async def _print_logs(
    runner: Runner,
    containers: Sequence[Mapping[str, Any]],
    *,
    follow: bool,
    tail: str,
    timestamps: bool,
    color: bool,
    only: Mapping[str, Any] | None = None,
) -> None:
    """Each container's output, prefixed; all to stdout as Compose prints them. With
    ``only``, that container's alone, padded as if all of ``containers`` were shown."""
    names = [str((c.get("Names") or ["/"])[0]).lstrip("/") for c in containers]
    width = max((len(n) for n in names), default=0)
    order = list(runner.project.services)

    async def one(container: Mapping[str, Any], name: str) -> None:
        service = (container.get("Labels") or {}).get(lb.LABEL_SERVICE, "")
        index = order.index(service) if service in order else 0
        prefix = log_prefix(name, width, color=color_for(index) if color else None)
        info = await runner.client.inspect_container(str(container["Id"]))
        tty = bool((info.get("Config") or {}).get("Tty"))
        pending = ""
        async for line in runner.client.logs(
            str(container["Id"]), follow=follow, tail=tail, timestamps=timestamps, tty=tty
        ):
            pending += line.data.decode(errors="replace")
            complete, _, pending = pending.rpartition("\n")
            if complete:
                for out in format_log_line(prefix, complete + "\n"):
                    print(out, flush=True)
        if pending:
            print(prefix + pending, flush=True)

    if only is not None:
        await one(only, names[containers.index(only)])
    elif follow:
        await asyncio.gather(*(one(c, n) for c, n in zip(containers, names, strict=True)))
    else:
        for c, n in zip(containers, names, strict=True):
            await one(c, n)


# --- commands ----------------------------------------------------------------------------


@click.group("compose", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-f", "--file", "files", multiple=True, help="Compose configuration files.")
@click.option("-p", "--project-name", default=None, help="Project name.")
@click.option("--project-directory", default=None, help="Alternate working directory.")
@click.option("--env-file", "env_files", multiple=True, help="Alternate environment files.")
@click.option("--profile", "profiles", multiple=True, help="Profiles to enable.")
@click.pass_context
def compose(
    ctx: click.Context,
    files: tuple[str, ...],
    project_name: str | None,
    project_directory: str | None,
    env_files: tuple[str, ...],
    profiles: tuple[str, ...],
) -> None:
    """Define and run multi-container applications (Docker Compose)."""
    env_profiles = tuple(p for p in os.environ.get("COMPOSE_PROFILES", "").split(",") if p)
    ctx.obj = _Global(files, project_name, project_directory, env_files, profiles or env_profiles)


@compose.command("config")
@click.option("--services", "show_services", is_flag=True, help="Print the service names.")
@click.option("--volumes", "show_volumes", is_flag=True, help="Print the volume names.")
@click.option(
    "--hash", "hash_of", default=None, help='Print the service config hash ("*" for all).'
)
@click.option("-q", "--quiet", is_flag=True, help="Only validate the configuration.")
@click.pass_context
def config_command(
    ctx: click.Context, show_services: bool, show_volumes: bool, hash_of: str | None, quiet: bool
) -> None:
    """Validate and print the resolved Compose file."""
    g = _global(ctx)
    try:
        loaded, project = _load(g)
    except (ComposeFileError, ComposeModelError) as err:
        _fail(str(err))
    if quiet:
        return
    if show_services:
        for name in project.services:
            click.echo(name)
    elif show_volumes:
        for key in project.volumes:
            click.echo(key)
    elif hash_of is not None:
        wanted = list(project.services) if hash_of == "*" else hash_of.split(",")
        for name in wanted:
            if name not in project.services:
                _fail(f"No such service: {name}")
            # The hash of the file alone (no image id: config never asks the engine), as
            # `docker compose config --hash`; `up` stores the hash made with the image id.
            click.echo(f"{name} {lb.config_hash(project, project.services[name], None)}")
    else:
        from ruamel.yaml import YAML

        yaml = YAML()
        yaml.default_flow_style = False
        out = io.StringIO()
        # top-level sections left empty by the loader are not printed (docker compose config)
        yaml.dump({k: v for k, v in loaded.config.items() if v not in ({}, [], None)}, out)
        click.echo(out.getvalue(), nl=False)


def _up_options(function: Callable[..., Any]) -> Callable[..., Any]:
    decorators = [
        click.option("-d", "--detach", is_flag=True, help="Run containers in the background."),
        click.option("--build", is_flag=True, help="Build images before starting containers."),
        click.option(
            "--no-build", is_flag=True, help="Don't build an image, even if it's missing."
        ),
        click.option(
            "--force-recreate", is_flag=True, help="Recreate containers even if unchanged."
        ),
        click.option("--no-recreate", is_flag=True, help="Don't recreate existing containers."),
        click.option("--no-deps", is_flag=True, help="Don't start linked services."),
        click.option("--scale", multiple=True, help="Scale SERVICE to NUM instances."),
        click.option(
            "--remove-orphans", is_flag=True, help="Remove containers of removed services."
        ),
        click.option(
            "--abort-on-container-exit", is_flag=True, help="Stop all if any container stops."
        ),
        click.option("--exit-code-from", default=None, help="Return this service's exit code."),
        click.option("--wait", is_flag=True, help="Wait for services to be running|healthy."),
        click.option(
            "--pull",
            type=click.Choice(["always", "missing", "never"]),
            default="missing",
            help="Pull image before running.",
        ),
        click.option(
            "-t", "--timeout", type=int, default=None, help="Shutdown timeout in seconds."
        ),
        click.argument("services", nargs=-1),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


@compose.command("up")
@_up_options
@click.pass_context
def up_command(ctx: click.Context, /, **kwargs: Any) -> None:
    """Create and start containers."""
    _up(_global(ctx), **kwargs)


def _up(
    g: _Global,
    *,
    detach: bool,
    build: bool,
    no_build: bool,
    force_recreate: bool,
    no_recreate: bool,
    no_deps: bool,
    scale: tuple[str, ...],
    remove_orphans: bool,
    abort_on_container_exit: bool,
    exit_code_from: str | None,
    wait: bool,
    pull: str,
    timeout: int | None,
    services: tuple[str, ...],
) -> None:
    # docker-compose 1.29.2 main.py up: the incompatible combinations and their texts
    if force_recreate and no_recreate:
        _fail("--force-recreate and --no-recreate cannot be combined.")
    if build and no_build:
        _fail("--build and --no-build cannot be combined.")
    if detach and (abort_on_container_exit or exit_code_from):
        _fail("-d and --abort-on-container-exit cannot be combined.")
    if exit_code_from:
        abort_on_container_exit = True
    settings = UpSettings(
        plan=UpOptions(
            force_recreate=force_recreate,
            no_recreate=no_recreate,
            no_deps=no_deps,
            scale=_scale(scale),
            remove_orphans=remove_orphans or _env_flag("COMPOSE_REMOVE_ORPHANS"),
            profiles=g.profiles,
        ),
        build=build,
        no_build=no_build,
        pull=pull,
        wait=wait,
        timeout_s=timeout,
    )

    async def work(runner: Runner) -> int:
        if exit_code_from is not None and exit_code_from not in runner.project.services:
            raise ComposeRunError(f"No such service: {exit_code_from}")
        ids = await runner.up(services, settings)
        if detach or wait:
            return 0
        return await _attach(runner, ids, abort_on_container_exit, exit_code_from, timeout)

    code = _execute(g, work, services=services)
    sys.exit(code)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


async def _attach(
    runner: Runner,
    ids: Sequence[str],
    abort_on_exit: bool,
    exit_code_from: str | None,
    timeout_s: int | None,
) -> int:
    """Follow the containers' logs until they all exit, one exits (``abort_on_exit``) or
    Ctrl-C; then stop the others (docker-compose 1.29.2 ``up`` without ``-d``)."""
    order = list(runner.project.services)

    def position(c: Mapping[str, Any]) -> tuple[int, int]:
        labels = c.get("Labels") or {}
        service = labels.get(lb.LABEL_SERVICE, "")
        number = labels.get(lb.LABEL_CONTAINER_NUMBER, "0")
        return (order.index(service) if service in order else len(order), int(number or 0))

    # in the file's service order, then by number: the same every run
    containers = sorted((c for c in await runner.containers() if c["Id"] in set(ids)), key=position)
    if not containers:
        return 0
    names = {str(c["Id"]): str((c.get("Names") or ["/"])[0]).lstrip("/") for c in containers}
    click.echo(f"Attaching to {', '.join(names.values())}")
    color = sys.stdout.isatty()
    tasks: dict[asyncio.Task[None], str] = {}
    for container in containers:
        task = asyncio.create_task(
            _print_logs(
                runner,
                containers,
                follow=True,
                tail="all",
                timestamps=False,
                color=color,
                only=container,
            )
        )
        tasks[task] = str(container["Id"])
    exit_codes: dict[str, int] = {}  # service -> exit code, first exit first
    try:
        pending: set[asyncio.Task[None]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
                cid = tasks[task]
                # the log stream ends when the container stops; wait gives its status
                code = await runner.client.wait_container(cid)
                click.echo(f"{names[cid]} exited with code {code}")  # 1.29.2 LogPrinter
                service = next(
                    (c.get("Labels") or {}).get(lb.LABEL_SERVICE, "")
                    for c in containers
                    if c["Id"] == cid
                )
                exit_codes.setdefault(service, code)
            if abort_on_exit and exit_codes:
                break
    except asyncio.CancelledError:
        # Ctrl-C: asyncio.run cancels the main task; stop the project as Compose does
        click.echo("Gracefully stopping... (press Ctrl+C again to force)", err=True)
        for task in tasks:
            task.cancel()
        await _stop_all(runner, timeout_s)
        return EXIT_INTERRUPTED
    if not abort_on_exit:
        return 0
    click.echo("Aborting on container exit...", err=True)
    for task in pending:
        task.cancel()
    await _stop_all(runner, timeout_s)
    if exit_code_from is not None:
        if exit_code_from in exit_codes:
            return exit_codes[exit_code_from]
        chosen = [
            str(c["Id"])
            for c in containers
            if (c.get("Labels") or {}).get(lb.LABEL_SERVICE) == exit_code_from
        ]
        if not chosen:
            raise ComposeRunError(f"no container of service {exit_code_from} was started")
        info = await runner.client.inspect_container(chosen[0])
        return int((info.get("State") or {}).get("ExitCode", 0))
    # Compose v2: the exit code of the container that stopped the run
    return next(iter(exit_codes.values()))


async def _stop_all(runner: Runner, timeout_s: int | None) -> None:
    # logs were printed since the last progress block: draw a new one below them
    runner.progress.reset()
    await runner.for_each(
        [],
        ("Stopping", "Stopped"),
        lambda cid: runner.client.stop_container(cid, timeout_s),
        reverse=True,
        only_running=True,
    )


@compose.command("down")
@click.option("-v", "--volumes", is_flag=True, help="Remove named and anonymous volumes.")
@click.option("--rmi", type=click.Choice(["all", "local"]), default=None, help="Remove images.")
@click.option("--remove-orphans", is_flag=True, help="Remove containers of removed services.")
@click.option("-t", "--timeout", type=int, default=None, help="Shutdown timeout in seconds.")
@click.pass_context
def down_command(
    ctx: click.Context, volumes: bool, rmi: str | None, remove_orphans: bool, timeout: int | None
) -> None:
    """Stop and remove containers, networks (and volumes, images)."""
    _execute(
        _global(ctx),
        lambda r: r.down(
            remove_orphans=remove_orphans, volumes=volumes, rmi=rmi, timeout_s=timeout
        ),
    )


def _ports_text(ports: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for port in ports:
        private = f"{port.get('PrivatePort')}/{port.get('Type', 'tcp')}"
        if port.get("PublicPort"):
            parts.append(f"{port.get('IP') or '0.0.0.0'}:{port['PublicPort']}->{private}")
        else:
            parts.append(private)
    return ", ".join(sorted(set(parts)))


@compose.command("ps")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show stopped containers too.")
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs.")
@click.option("--services", "show_services", is_flag=True, help="Display services.")
@click.argument("services", nargs=-1)
@click.pass_context
def ps_command(
    ctx: click.Context, show_all: bool, quiet: bool, show_services: bool, services: tuple[str, ...]
) -> None:
    """List containers."""

    async def work(runner: Runner) -> None:
        items = await runner.service_containers(services, all=show_all)
        if quiet:
            for c in items:
                click.echo(c["Id"])
            return
        if show_services:
            seen = dict.fromkeys((c.get("Labels") or {}).get(lb.LABEL_SERVICE, "") for c in items)
            for name in seen:
                click.echo(name)
            return
        rows = [("NAME", "IMAGE", "COMMAND", "SERVICE", "STATUS", "PORTS")]
        for c in items:
            command = str(c.get("Command") or "")
            rows.append(
                (
                    str((c.get("Names") or ["/"])[0]).lstrip("/"),
                    str(c.get("Image") or ""),
                    f'"{command[:20]}{"…" if len(command) > 20 else ""}"',
                    (c.get("Labels") or {}).get(lb.LABEL_SERVICE, ""),
                    str(c.get("Status") or ""),
                    _ports_text(c.get("Ports") or []),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            click.echo(
                "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )

    _execute(_global(ctx), work)


def _simple(
    name: str,
    verb: tuple[str, str],
    help_text: str,
    operation: Callable[[Runner, str, dict[str, Any]], Awaitable[None]],
    *,
    reverse: bool,
    only_running: bool | None,
    extra: Sequence[Callable[[Callable[..., Any]], Callable[..., Any]]] = (),
) -> None:
    @click.argument("services", nargs=-1)
    @click.pass_context
    def command(ctx: click.Context, /, services: tuple[str, ...], **options: Any) -> None:
        async def work(runner: Runner) -> None:
            await runner.for_each(
                services,
                verb,
                lambda cid: operation(runner, cid, options),
                reverse=reverse,
                only_running=only_running,
            )

        _execute(_global(ctx), work)

    command.__doc__ = help_text
    for decorator in extra:
        command = decorator(command)
    compose.command(name)(command)


_TIMEOUT = click.option("-t", "--timeout", type=int, default=None, help="Timeout in seconds.")

_simple(
    "start",
    ("Starting", "Started"),
    "Start services.",
    lambda r, cid, o: r.client.start_container(cid),
    reverse=False,
    only_running=False,
)
_simple(
    "stop",
    ("Stopping", "Stopped"),
    "Stop services.",
    lambda r, cid, o: r.client.stop_container(cid, o.get("timeout")),
    reverse=True,
    only_running=True,
    extra=[_TIMEOUT],
)
_simple(
    "restart",
    ("Restarting", "Started"),
    "Restart services.",
    lambda r, cid, o: r.client.restart_container(cid, o.get("timeout")),
    reverse=False,
    only_running=None,
    extra=[_TIMEOUT],
)
_simple(
    "kill",
    ("Killing", "Killed"),
    "Force stop service containers.",
    lambda r, cid, o: r.client.kill_container(cid, o.get("signal") or "SIGKILL"),
    reverse=True,
    only_running=True,
    extra=[click.option("-s", "--signal", default="SIGKILL", help="Signal to send.")],
)


@compose.command("rm")
@click.option("-f", "--force", is_flag=True, help="Don't ask to confirm removal.")
@click.option("-s", "--stop", is_flag=True, help="Stop the containers first if needed.")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes too.")
@click.argument("services", nargs=-1)
@click.pass_context
def rm_command(
    ctx: click.Context, force: bool, stop: bool, volumes: bool, services: tuple[str, ...]
) -> None:
    """Remove stopped service containers."""

    async def work(runner: Runner) -> None:
        if stop:
            await _stop_services(runner, services)
        items = [
            c for c in await runner.service_containers(services) if c.get("State") != "running"
        ]
        if not items:
            click.echo("No stopped containers", err=True)
            return
        names = [str((c.get("Names") or ["/"])[0]).lstrip("/") for c in items]
        if not force:
            # docker-compose 1.29.2 rm: "Going to remove ..." then a confirmation
            click.echo(f"Going to remove {', '.join(names)}", err=True)
            if not click.confirm("Are you sure?", default=False, err=True):
                return
        for c, name in zip(items, names, strict=True):
            runner.progress.update("Container", name, "Removing")
            await runner.client.remove_container(str(c["Id"]), force=True, volumes=volumes)
            runner.progress.update("Container", name, "Removed", done=True)

    _execute(_global(ctx), work)


async def _stop_services(runner: Runner, services: Sequence[str]) -> None:
    await runner.for_each(
        services,
        ("Stopping", "Stopped"),
        lambda cid: runner.client.stop_container(cid),
        reverse=True,
        only_running=True,
    )


@compose.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Follow log output.")
@click.option("--tail", default="all", help="Number of lines from the end of each log.")
@click.option("--no-color", is_flag=True, help="Produce monochrome output.")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.argument("services", nargs=-1)
@click.pass_context
def logs_command(
    ctx: click.Context,
    follow: bool,
    tail: str,
    no_color: bool,
    timestamps: bool,
    services: tuple[str, ...],
) -> None:
    """View output from containers."""
    color = not no_color and sys.stdout.isatty()

    async def work(runner: Runner) -> None:
        items = await runner.service_containers(services)
        await _print_logs(
            runner, items, follow=follow, tail=tail, timestamps=timestamps, color=color
        )

    try:
        _execute(_global(ctx), work)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


@compose.command("build")
@click.argument("services", nargs=-1)
@click.pass_context
def build_command(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Build or rebuild services."""

    async def work(runner: Runner) -> None:
        names = list(services) or list(runner.project.services)
        for name in names:
            if name not in runner.project.services:
                raise ComposeRunError(f"No such service: {name}")
            service = runner.project.services[name]
            if service.build is None:
                # docker-compose 1.29.2 build: "<svc> uses an image, skipping"
                click.echo(f"{name} uses an image, skipping", err=True)
                continue
            await runner.build_service(service)

    _execute(_global(ctx), work)


@compose.command("pull")
@click.option("--ignore-pull-failures", is_flag=True, help="Pull what it can.")
@click.argument("services", nargs=-1)
@click.pass_context
def pull_command(ctx: click.Context, ignore_pull_failures: bool, services: tuple[str, ...]) -> None:
    """Pull service images."""

    async def work(runner: Runner) -> None:
        # Build-only services have nothing to pull (1.29.2 and v2 skip them).
        await _transfer(
            runner,
            [
                (name, image, name)
                for name in _known_services(runner, services)
                if (image := runner.project.services[name].image) is not None
            ],
            runner.pull_image,
            ignore_failures=ignore_pull_failures,
        )

    _execute(_global(ctx), work)


@compose.command("push")
@click.option("--ignore-push-failures", is_flag=True, help="Push what it can.")
@click.argument("services", nargs=-1)
@click.pass_context
def push_command(ctx: click.Context, ignore_push_failures: bool, services: tuple[str, ...]) -> None:
    """Push service images."""

    async def work(runner: Runner) -> None:
        wanted: dict[str, str] = {}  # image -> the first service naming it: pushed once
        for name in _known_services(runner, services):
            service = runner.project.services[name]
            if service.build is not None and service.image is not None:
                wanted.setdefault(service.image, name)  # 1.29.2: built images with a name
        await _transfer(
            runner,
            [(name, image, image) for image, name in wanted.items()],
            runner.push_image,
            ignore_failures=ignore_push_failures,
        )

    _execute(_global(ctx), work)


async def _transfer(
    runner: Runner,
    items: Sequence[tuple[str, str, str]],
    move: Callable[[str, str], Awaitable[None]],
    *,
    ignore_failures: bool,
) -> None:
    """Pull or push (`move(image, label)`) every (service, image, label) at once, as 1.29.2
    (parallel_pull) and Compose v2 do; each runs to its end. A failure then fails the
    command, or with --ignore-*-failures is a warning naming the service (1.29.2)."""

    async def one(image: str, label: str) -> EngineError | None:
        try:
            await move(image, label)
        except EngineError as err:
            runner.progress.update("Image", label, "Error", done=True)
            return err
        return None

    with _animated(runner.progress):
        results = await asyncio.gather(*(one(image, label) for _, image, label in items))
    failures = [(item[0], err) for item, err in zip(items, results, strict=True) if err]
    if failures and not ignore_failures:
        raise failures[0][1]
    for name, err in failures:
        runner.progress.warn(f"{name}: {err}")


def _known_services(runner: Runner, services: Sequence[str]) -> list[str]:
    """The named services (all when none), each checked before any work starts."""
    for name in services:
        if name not in runner.project.services:
            raise ComposeRunError(f"No such service: {name}")
    return list(services) or list(runner.project.services)


@contextlib.contextmanager
def _animated(progress: Progress) -> Iterator[None]:
    """Spinners animate on a terminal for the duration of the block (on the running loop)."""
    progress.animate(asyncio.get_running_loop().call_later)
    try:
        yield
    finally:
        progress.stop()


@compose.command("exec", context_settings=_PASSTHROUGH)
@click.option("-d", "--detach", is_flag=True, help="Run the command in the background.")
@click.option("--privileged", is_flag=True, help="Give extended privileges to the process.")
@click.option("-u", "--user", default=None, help="Run as this user.")
@click.option("-w", "--workdir", default=None, help="Working directory.")
@click.option("-e", "--env", "env", multiple=True, help="Set environment variables.")
@click.option("--index", type=int, default=1, help="Index of the container.")
@click.option("-T", "--no-TTY", "no_tty", is_flag=True, help="Disable pseudo-TTY allocation.")
@click.option("-i", "--interactive", is_flag=True, hidden=True, help="Keep STDIN open (default).")
@click.argument("service")
@click.argument("command", nargs=-1, required=True)
@click.pass_context
def exec_command(
    ctx: click.Context,
    detach: bool,
    privileged: bool,
    user: str | None,
    workdir: str | None,
    env: tuple[str, ...],
    index: int,
    no_tty: bool,
    interactive: bool,
    service: str,
    command: tuple[str, ...],
) -> None:
    """Execute a command in a running container.

    As docker compose: stdin is attached unless -d; a TTY is allocated unless -T or stdin
    is not a terminal; the exit status is the command's.
    """
    del interactive  # compose v2's -i defaults to true; stdin is attached unless -d

    async def work(runner: Runner) -> int:
        cid = await _container_of(runner, service, index)
        modes = stream_modes(
            detach=detach, no_tty=no_tty, interactive=True, stdin_is_terminal=_stdin_is_terminal()
        )
        client = runner.client
        exec_id = await client.exec_create(
            cid,
            {
                "Cmd": list(command),
                "AttachStdin": modes.stdin,
                "AttachStdout": not detach,
                "AttachStderr": not detach,
                "Env": _exec_environment(env, runner.loaded.environ),
                "User": user or "",
                "WorkingDir": workdir or "",
                "Privileged": privileged,
                "Tty": modes.tty,
            },
        )
        if detach:
            await client.request(
                "POST", f"/exec/{exec_id}/start", body={"Detach": True, "Tty": modes.tty}
            )
            return 0

        async def resize(rows: int, columns: int) -> None:
            await client.resize_exec(exec_id, rows, columns)

        start_body = json.dumps({"Detach": False, "Tty": modes.tty}).encode()
        signum = await _interactive(
            client, f"/exec/{quote(exec_id)}/start", start_body, modes, resize
        )
        if signum is not None:
            return 128 + signum
        info = await client.exec_inspect(exec_id)
        return int(info.get("ExitCode") or 0)

    sys.exit(_execute(_global(ctx), work, quiet=True))


def _exec_environment(items: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """``-e KEY=VALUE`` as given; ``-e KEY`` takes KEY's value from the environment and is
    dropped when unset (compose v2 exec: ``opts.ToMapping(...).Resolve(os.LookupEnv)``)."""
    out = []
    for item in items:
        key, sep, _ = item.partition("=")
        if sep:
            out.append(item)
        elif (value := environ.get(key, os.environ.get(key))) is not None:
            out.append(f"{key}={value}")
    return out


def _stdin_is_terminal() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, ValueError, OSError):
        return False  # no stdin at all (closed, or replaced by an object without a fd)


async def _interactive(
    client: EngineClient,
    target: str,
    body: bytes | None,
    modes: StreamModes,
    resize: Callable[[int, int], Awaitable[None]],
    *,
    start: Callable[[], Awaitable[None]] | None = None,
) -> int | None:
    """Hijack ``target``, run ``start`` once the stream is up (``run``: attach, then start,
    so no output is lost), and pump stdio until the engine ends the stream. With a TTY the
    local terminal is raw for the session and its size follows SIGWINCH (docker CLI
    ``monitorTtySize``). Returns the SIGTERM/SIGHUP that ended it early, else None."""
    session = await open_hijack(
        client.address,
        tls_context(client.address),
        client.api_path(target),
        body=body,
        tty=modes.tty,
    )
    try:
        if start is not None:
            await start()
        stdin_fd = sys.stdin.fileno() if modes.stdin and sys.stdin is not None else None

        async def follow_size() -> None:
            size = terminal_size(sys.stdout.fileno()) or terminal_size(sys.stdin.fileno())
            if size is not None:
                await resize(*size)

        with raw_terminal(sys.stdin.fileno()) if modes.tty else contextlib.nullcontext():
            if modes.tty:
                await resize_with_retry(follow_size, first=True)
            return await session.pump(
                stdin_fd=stdin_fd,
                stdout=sys.stdout.buffer,
                stderr=sys.stderr.buffer,
                on_resize=follow_size if modes.tty else None,
            )
    finally:
        await session.close()


async def _container_of(runner: Runner, service: str, index: int) -> str:
    items = await runner.service_containers([service], all=False)
    for c in items:
        if (c.get("Labels") or {}).get(lb.LABEL_CONTAINER_NUMBER) == str(index):
            return str(c["Id"])
    # docker compose v2: "service "web" is not running container #1"
    raise ComposeRunError(f'service "{service}" is not running container #{index}')


@compose.command("top")
@click.argument("services", nargs=-1)
@click.pass_context
def top_command(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Display the running processes."""

    async def work(runner: Runner) -> None:
        for c in await runner.service_containers(services, all=False):
            top = await runner.client.top(str(c["Id"]))
            click.echo(str((c.get("Names") or ["/"])[0]).lstrip("/"))
            rows = [list(top.get("Titles") or []), *(list(p) for p in top.get("Processes") or [])]
            widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
            for row in rows:
                click.echo(
                    "   ".join(
                        str(cell).ljust(w) for cell, w in zip(row, widths, strict=False)
                    ).rstrip()
                )
            click.echo("")

    _execute(_global(ctx), work)


@compose.command("port")
@click.option("--protocol", default="tcp", help="tcp or udp.")
@click.option("--index", type=int, default=1, help="Index of the container.")
@click.argument("service")
@click.argument("private_port", type=int)
@click.pass_context
def port_command(
    ctx: click.Context, protocol: str, index: int, service: str, private_port: int
) -> None:
    """Print the public port for a port binding."""

    async def work(runner: Runner) -> None:
        cid = await _container_of(runner, service, index)
        info = await runner.client.inspect_container(cid)
        ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
        bindings = ports.get(f"{private_port}/{protocol}") or []
        if not bindings:
            raise ComposeRunError(f"no port {private_port}/{protocol} for container {service}")
        first = bindings[0]
        click.echo(f"{first.get('HostIp') or '0.0.0.0'}:{first.get('HostPort')}")

    _execute(_global(ctx), work)


@compose.command("version")
@click.option("--short", is_flag=True, help="Shows only the version number.")
@click.option("-f", "--format", "fmt", type=click.Choice(["pretty", "json"]), default="pretty")
def version_command(short: bool, fmt: str) -> None:
    """Show the dockyard compose version (no file or engine needed, as Compose)."""
    from dockyard import __version__

    if short:
        click.echo(__version__)
    elif fmt == "json":
        click.echo(json.dumps({"version": __version__}))
    else:
        click.echo(f"dockyard compose version {__version__}")


@compose.command("images")
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs.")
@click.argument("services", nargs=-1)
@click.pass_context
def images_command(ctx: click.Context, quiet: bool, services: tuple[str, ...]) -> None:
    """List images used by the created containers."""

    async def work(runner: Runner) -> None:
        rows = [("CONTAINER", "REPOSITORY", "TAG", "IMAGE ID")]
        for c in await runner.service_containers(services):
            image_id = str(c.get("ImageID") or "")
            if quiet:
                click.echo(image_id)
                continue
            name = str(c.get("Image") or "")
            repository, _, tag = (
                name.rpartition(":") if ":" in name.split("/")[-1] else (name, "", "latest")
            )
            rows.append(
                (
                    str((c.get("Names") or ["/"])[0]).lstrip("/"),
                    repository,
                    tag,
                    image_id.removeprefix("sha256:")[:12],
                )
            )
        if not quiet:
            widths = [max(len(row[i]) for row in rows) for i in range(4)]
            for row in rows:
                click.echo(
                    "   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                )

    _execute(_global(ctx), work)


@compose.command("events")
@click.option("--json", "as_json", is_flag=True, help="Output events as a stream of json objects.")
@click.argument("services", nargs=-1)
@click.pass_context
def events_command(ctx: click.Context, as_json: bool, services: tuple[str, ...]) -> None:
    """Receive real time events from containers."""
    import json

    async def work(runner: Runner) -> None:
        filters = {**lb.project_filter(runner.project.name), "type": ["container"]}
        async for event in runner.client.events(filters):
            attributes = (event.get("Actor") or {}).get("Attributes") or {}
            service = attributes.get(lb.LABEL_SERVICE, "")
            if services and service not in services:
                continue
            if as_json:
                click.echo(json.dumps(event, sort_keys=True))
            else:
                action = event.get("Action") or event.get("status")
                click.echo(
                    f"{event.get('timeNano', '')} container {action} "
                    f"{(event.get('Actor') or {}).get('ID', event.get('id', ''))} "
                    f"(name={attributes.get('name', '')}, image={attributes.get('image', '')})"
                )

    try:
        _execute(_global(ctx), work)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


@compose.command("run", context_settings=_PASSTHROUGH)
@click.option("-d", "--detach", is_flag=True, help="Run in the background, print the name.")
@click.option("--rm", "remove", is_flag=True, help="Remove the container when it exits.")
@click.option("-e", "env", multiple=True, help="Set an environment variable (KEY=VAL or KEY).")
@click.option("-l", "--label", "labels", multiple=True, help="Add or override a label.")
@click.option("-u", "--user", default=None, help="Run as this user.")
@click.option("-w", "--workdir", default=None, help="Working directory inside the container.")
@click.option("--entrypoint", default=None, help="Override the image's entrypoint.")
@click.option("-v", "--volume", "volumes", multiple=True, help="Bind mount a volume.")
@click.option("-p", "--publish", "publish", multiple=True, help="Publish a container port.")
@click.option("--service-ports", is_flag=True, help="Publish the service's ports.")
@click.option("--use-aliases", is_flag=True, help="Use the service's network aliases.")
@click.option("--no-deps", is_flag=True, help="Don't start linked services.")
@click.option("--name", default=None, help="Assign a name to the container.")
@click.option("-T", "--no-TTY", "no_tty", is_flag=True, help="Disable pseudo-TTY allocation.")
@click.option("-i", "--interactive", is_flag=True, hidden=True, help="Keep STDIN open (default).")
@click.argument("service")
@click.argument("command", nargs=-1)
@click.pass_context
def run_command(
    ctx: click.Context,
    detach: bool,
    remove: bool,
    env: tuple[str, ...],
    labels: tuple[str, ...],
    user: str | None,
    workdir: str | None,
    entrypoint: str | None,
    volumes: tuple[str, ...],
    publish: tuple[str, ...],
    service_ports: bool,
    use_aliases: bool,
    no_deps: bool,
    name: str | None,
    no_tty: bool,
    interactive: bool,
    service: str,
    command: tuple[str, ...],
) -> None:
    """Run a one-off command on a service.

    As docker compose: stdin is attached unless -d; a TTY is allocated when stdin is a
    terminal, unless -T or the service says ``tty: false``; the exit status is the
    command's; --rm removes the container on every path.
    """
    del interactive  # compose v2's -i defaults to true; stdin is attached unless -d

    async def work(runner: Runner) -> int:
        project = runner.project
        if service not in project.services:
            raise ComposeRunError(f"No such service: {service}")
        svc = project.services[service]
        raw_service = runner.loaded.config.get("services", {}).get(service, {})
        modes = stream_modes(
            detach=detach,
            no_tty=no_tty,
            interactive=True,
            stdin_is_terminal=_stdin_is_terminal(),
            service_tty=raw_service.get("tty") if isinstance(raw_service, dict) else None,
        )
        deps = [d for d in build_graph(project).dependencies(service)]
        if deps and not no_deps:
            await runner.up(deps, UpSettings())
        await runner.ensure_images([service], UpSettings())
        await runner.ensure_networks([n.name for n in svc.networks])
        environment: dict[str, str | None] = dict(svc.environment)
        for item in env:
            key, sep, value = item.partition("=")
            # `-e KEY` takes KEY from the environment (1.29.2 run: build_override_environment)
            environment[key] = value if sep else runner.loaded.environ.get(key, os.environ.get(key))
        slug = secrets.token_hex(32)
        container_name = name or lb.oneoff_container_name(project.name, service, slug)
        container_labels = lb.container_labels(
            project.name,
            svc,
            number=None,
            config_hash=None,
            working_dir=runner.loaded.working_dir,
            config_files=runner.loaded.config_files,
            oneoff=True,
            slug=slug,
        )
        peers = {
            str((c.get("Labels") or {}).get(lb.LABEL_SERVICE)): str(c["Id"])
            for c in reversed(await runner.containers())
        }
        body = container_body(
            project,
            svc,
            image=service_image(project, svc),
            labels=container_labels,
            peers=peers,
            links=[],
            network_names={k: n.name for k, n in project.networks.items()},
            environment=environment,
            command=command or None,
            publish_ports=service_ports,
            tty=modes.tty,
            stdin_open=modes.stdin or svc.stdin_open,
        )
        _run_overrides(
            body,
            modes,
            attach_output=not detach,
            labels=labels,
            user=user,
            workdir=workdir,
            entrypoint=entrypoint,
            volumes=volumes,
            publish=publish,
            use_aliases=use_aliases,
            working_dir=runner.loaded.working_dir,
        )
        if detach and remove:
            # nobody waits for a detached container: the engine removes it when it exits
            # (docker run -d --rm; compose v2 run sets AutoRemove)
            body.setdefault("HostConfig", {})["AutoRemove"] = True
        client = runner.client
        cid = await client.create_container(container_name, body)
        started = False
        try:
            if svc.network_mode is None:
                # the create attached the first network (API < 1.44: one endpoint); the
                # others before the start, as 1.29.2 does
                for net in svc.networks[1:]:
                    endpoint = endpoint_config(svc, net.name, [])
                    if not use_aliases:
                        endpoint.pop("Aliases", None)
                    await client.connect_network(
                        project.networks[net.name].name,
                        {"Container": cid, "EndpointConfig": endpoint},
                    )
            if detach:
                await client.start_container(cid)
                started = True
                click.echo(container_name)
                return 0

            async def start() -> None:
                nonlocal started
                await client.start_container(cid)
                started = True

            async def resize(rows: int, columns: int) -> None:
                await client.resize_container(cid, rows, columns)

            # attach before the start, so the first bytes are not missed (1.29.2 run; the
            # docker CLI's run does the same)
            streams = "stdin=1&" if modes.stdin else ""
            target = f"/containers/{quote(cid)}/attach?stream=1&{streams}stdout=1&stderr=1"
            signum = await _interactive(client, target, None, modes, resize, start=start)
            if signum is not None:
                return 128 + signum
            return await client.wait_container(cid)
        finally:
            # --rm removes on every path (an exit, an error, Ctrl-C, SIGTERM); without it a
            # container that ran stays, one that never started is removed; a detached one
            # that started is the engine's to remove (AutoRemove)
            if not started or (remove and not detach):
                await client.remove_container(cid, force=True, volumes=remove)

    sys.exit(_execute(_global(ctx), work, quiet=True))


def _run_overrides(
    body: dict[str, Any],
    modes: StreamModes,
    *,
    attach_output: bool,
    labels: Sequence[str],
    user: str | None,
    workdir: str | None,
    entrypoint: str | None,
    volumes: Sequence[str],
    publish: Sequence[str],
    use_aliases: bool,
    working_dir: str,
) -> None:
    """Apply ``run``'s command-line overrides to a create body (compose v2 run.go
    ``applyRunOptions``; the stdio flags as the docker CLI's ``run -i -t``)."""
    body["AttachStdin"] = modes.stdin
    body["AttachStdout"] = attach_output
    body["AttachStderr"] = attach_output
    # docker CLI run -i: the engine closes the container's stdin when the client detaches
    body["StdinOnce"] = modes.stdin
    if user is not None:
        body["User"] = user
    if workdir is not None:
        body["WorkingDir"] = workdir
    if entrypoint is not None:
        # compose v2: the flag is split as a shell would (shellwords.Parse)
        try:
            body["Entrypoint"] = shlex.split(entrypoint)
        except ValueError as err:
            raise ComposeRunError(f"invalid --entrypoint {entrypoint!r}: {err}") from None
    for item in labels:
        key, _, value = item.partition("=")
        body.setdefault("Labels", {})[key] = value
    host = body.setdefault("HostConfig", {})
    for spec in volumes:
        source, sep, rest = spec.partition(":")
        if sep and source.startswith("."):
            # a relative host path is relative to the project directory (compose)
            spec = f"{os.path.normpath(os.path.join(working_dir, source))}:{rest}"
        host.setdefault("Binds", []).append(spec)
    for text in publish:
        try:
            ports = parse_port(text, "--publish")
        except ComposeModelError as err:
            raise ComposeRunError(str(err)) from None
        for port in ports:
            key = f"{port.target}/{port.protocol}"
            body.setdefault("ExposedPorts", {})[key] = {}
            host.setdefault("PortBindings", {}).setdefault(key, []).append(
                {"HostIp": port.host_ip, "HostPort": port.published or ""}
            )
    if not use_aliases:
        # a one-off container gets no service aliases unless asked (1.29.2 run
        # use_network_aliases=False; compose v2 UseNetworkAliases)
        endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
        for endpoint in endpoints.values():
            endpoint.pop("Aliases", None)


def register(main: click.Group) -> None:
    """Add ``compose`` and the ``up`` short form (``dockyard up`` = ``dockyard compose up``)
    to the ``dockyard`` command."""
    main.add_command(compose)

    @main.command("up")
    @click.option("-f", "--file", "files", multiple=True, help="Compose configuration files.")
    @click.option("-p", "--project-name", default=None, help="Project name.")
    @click.option("--project-directory", default=None, help="Alternate working directory.")
    @click.option("--env-file", "env_files", multiple=True, help="Alternate environment files.")
    @click.option("--profile", "profiles", multiple=True, help="Profiles to enable.")
    @_up_options
    def up_short(
        files: tuple[str, ...],
        project_name: str | None,
        project_directory: str | None,
        env_files: tuple[str, ...],
        profiles: tuple[str, ...],
        **kwargs: Any,
    ) -> None:
        """Create and start containers (short for `dockyard compose up`)."""
        _up(_Global(files, project_name, project_directory, env_files, profiles), **kwargs)
