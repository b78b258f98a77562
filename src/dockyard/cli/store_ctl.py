"""etcdctl v2-style subcommands of `dockyard store`: ls, get, set, mk, mkdir, setdir, update,
updatedir, rm, rmdir, watch, exec-watch, member list and cluster-health.

Role: parse, call `dockyard.store.client`, print exactly what `ETCDCTL_API=2 etcdctl` 3.4 prints
(its `printResponseKey` formats `simple`, `extended` and `json`, its `Error:  <err>` lines and
its exit codes), so scripts written for etcdctl keep working. Behaviour was checked against the
real etcdctl 3.4.23; the Go sources are `etcdctl/ctlv2/command/*.go`.

Exit codes (etcdctl `error.go`): 0 success, 1 bad arguments (also usage errors, where click
would say 2), 2 no endpoint reachable, 4 an error answered by the server, 5 cluster unhealthy.

Deliberate differences from etcdctl:
- Connection options are per subcommand (`dockyard store get --endpoints ... /k`), because the
  `store` group's own options belong to another module; env vars (`ETCDCTL_ENDPOINTS`, ...) work.
- No cluster sync: the given endpoints are used as they are (as etcdctl `--no-sync`), but a
  connection failure still exits 2, as etcdctl's failing sync does.
- `exec-watch` runs the command for each event in turn (etcdctl starts them concurrently), and
  takes `<key> [--] <command> [args...]` with click's ordinary parsing.
- `--timeout`/`--total-timeout` accept Go durations (`2s`, `500ms`) or seconds.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click

from dockyard.store.client import (
    DEFAULT_ENDPOINTS,
    ConnectionFailedError,
    Node,
    Result,
    StoreClient,
    StoreClientError,
)

EXIT_SUCCESS = 0
EXIT_BAD_ARGS = 1
EXIT_BAD_CONNECTION = 2
EXIT_SERVER_ERROR = 4
EXIT_CLUSTER_NOT_HEALTHY = 5

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------------------------
# Output formats (etcdctl `printResponseKey`, Go client JSON)


def go_key(key: str) -> str:
    # The root node has no key on the wire; the Go client shows it as "".
    return "" if key == "/" else key


def go_node(node: Node) -> dict[str, Any]:
    """A node as etcd's Go client marshals it: every field present except omitempty ones, in
    struct order (key, dir, value, nodes, createdIndex, modifiedIndex, expiration, ttl)."""
    data: dict[str, Any] = {"key": go_key(node.key)}
    if node.dir:
        data["dir"] = True
    data["value"] = node.value or ""
    data["nodes"] = [go_node(n) for n in node.nodes] if node.nodes else None
    data["createdIndex"] = node.created_index
    data["modifiedIndex"] = node.modified_index
    if node.expiration is not None:
        data["expiration"] = node.expiration
    if node.ttl:
        data["ttl"] = node.ttl
    return data


def go_json(data: Any) -> str:
    """Go `json.Marshal`: compact, raw UTF-8, with <, >, &, U+2028 and U+2029 escaped."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


def format_result(result: Result, output: str) -> str:
    """The text etcdctl prints for a keys response (with its trailing newline)."""
    node = result.node
    if output == "simple":
        if result.action != "delete":
            return f"{node.value or ''}\n"
        prev_value = result.prev_node.value if result.prev_node is not None else ""
        return f"PrevNode.Value: {prev_value or ''}\n"
    if output == "extended":
        lines = [
            f"Key: {go_key(node.key)}",
            f"Created-Index: {node.created_index}",
            f"Modified-Index: {node.modified_index}",
        ]
        if result.prev_node is not None:
            lines.append(f"PrevNode.Value: {result.prev_node.value or ''}")
        lines += [f"TTL: {node.ttl or 0}", f"Index: {result.etcd_index}"]
        if result.action != "delete":
            lines += ["", node.value or ""]
        return "\n".join(lines) + "\n"
    if output == "json":
        prev = go_node(result.prev_node) if result.prev_node is not None else None
        return go_json({"action": result.action, "node": go_node(node), "prevNode": prev}) + "\n"
    return ""


def format_ls(result: Result, output: str, slash_dirs: bool) -> str:
    """etcdctl `printLs`: simple lists keys (a file lists itself), others print the response."""
    if output != "simple":
        return format_result(result, output)
    lines = [] if result.node.dir else [result.node.key]

    def walk(node: Node) -> Iterator[str]:
        yield f"{node.key}/" if node.dir and slash_dirs else node.key
        for child in node.nodes:
            yield from walk(child)

    for child in result.node.nodes:
        lines += walk(child)
    return "".join(f"{line}\n" for line in lines)


# --------------------------------------------------------------------------------------------
# Connection options and error handling


def parse_duration_s(text: str) -> float:
    """A Go duration (`2s`, `500ms`, `1m30s`) or plain seconds."""
    with contextlib.suppress(ValueError):
        return float(text)
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise click.BadParameter(f"invalid duration {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


@dataclass
class Ctl:
    """What every subcommand needs: how to connect and how to print."""

    endpoints: list[str]
    output: str
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    username: str | None
    password: str | None
    timeout_s: float
    total_timeout_s: float

    def client(self, endpoints: Sequence[str] | None = None) -> StoreClient:
        return StoreClient(
            list(endpoints or self.endpoints),
            ca_file=self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
            username=self.username,
            password=self.password,
            timeout_s=self.total_timeout_s,
            connect_timeout_s=self.timeout_s,
        )

    def print_result(self, result: Result) -> None:
        click.echo(format_result(result, self.output), nl=False)


def fail(code: int, error: BaseException | str) -> NoReturn:
    """etcdctl `handleError`: `Error:  <err>` on stderr (Println's extra space included)."""
    click.echo(f"Error:  {error}", err=True)
    if isinstance(error, ConnectionFailedError):
        click.echo(error.detail(), err=True)
    sys.exit(code)


def server_call(ctl: Ctl, call: Callable[[StoreClient], Result]) -> Result:
    """Run one request; a server error exits 4 and no reachable endpoint exits 2."""
    with ctl.client() as client:
        try:
            return call(client)
        except ConnectionFailedError as e:
            fail(EXIT_BAD_CONNECTION, e)
        except StoreClientError as e:
            fail(EXIT_SERVER_ERROR, e)


def _endpoints(endpoints: str | None, endpoint: str | None, peers: str | None) -> list[str]:
    # etcdctl `getPeersFlagValue`: flag, env, deprecated flags and envs, then the default.
    for candidate in (
        endpoints,
        os.environ.get("ETCDCTL_ENDPOINTS"),
        endpoint,
        os.environ.get("ETCDCTL_ENDPOINT"),
        peers,
        os.environ.get("ETCDCTL_PEERS"),
    ):
        if candidate:
            return [e for e in candidate.split(",") if e]
    return list(DEFAULT_ENDPOINTS)


def _credentials(username: str | None) -> tuple[str | None, str | None]:
    username = username or os.environ.get("ETCDCTL_USERNAME") or None
    if not username:
        return None, None
    if ":" in username:
        user, _, password = username.partition(":")
        return user, password
    return username, click.prompt("Password", hide_input=True, default="", show_default=False)


def connection_options(f: F) -> F:
    """Add etcdctl's global options to one subcommand and pass them as `ctl: Ctl`."""
    options = [
        click.option(
            "--endpoints",
            default=None,
            help="comma-separated machine addresses "
            f"(default {','.join(DEFAULT_ENDPOINTS)}; env ETCDCTL_ENDPOINTS)",
        ),
        click.option("--endpoint", default=None, hidden=True),
        click.option("--peers", "-C", default=None, hidden=True),
        click.option(
            "--cert-file",
            default=None,
            help="identify HTTPS client using this SSL certificate file",
        ),
        click.option(
            "--key-file", default=None, help="identify HTTPS client using this SSL key file"
        ),
        click.option(
            "--ca-file",
            default=None,
            help="verify certificates of HTTPS servers using this CA bundle",
        ),
        click.option(
            "--username", "-u", default=None, help="username[:password]; prompts if no password"
        ),
        click.option(
            "--output",
            "-o",
            default="simple",
            type=click.Choice(["simple", "json", "extended"]),
            show_default=True,
            help="output format",
        ),
        click.option(
            "--timeout",
            "timeout_text",
            default="2s",
            show_default=True,
            help="connection timeout per request",
        ),
        click.option(
            "--total-timeout",
            "total_timeout_text",
            default="5s",
            show_default=True,
            help="timeout for one request (watches excepted)",
        ),
        click.option("--no-sync", is_flag=True, hidden=True, help="accepted; never syncs anyway"),
    ]

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        user, password = _credentials(kwargs.pop("username"))
        kwargs.pop("no_sync")
        ctl = Ctl(
            endpoints=_endpoints(
                kwargs.pop("endpoints"), kwargs.pop("endpoint"), kwargs.pop("peers")
            ),
            output=kwargs.pop("output"),
            ca_file=kwargs.pop("ca_file") or os.environ.get("ETCDCTL_CA_FILE") or None,
            cert_file=kwargs.pop("cert_file") or os.environ.get("ETCDCTL_CERT_FILE") or None,
            key_file=kwargs.pop("key_file") or os.environ.get("ETCDCTL_KEY_FILE") or None,
            username=user,
            password=password,
            timeout_s=parse_duration_s(kwargs.pop("timeout_text")),
            total_timeout_s=parse_duration_s(kwargs.pop("total_timeout_text")),
        )
        return f(*args, ctl=ctl, **kwargs)

    decorated: Any = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


class CtlUsageError(click.UsageError):
    exit_code = EXIT_BAD_ARGS


class CtlCommand(click.Command):
    """A click command whose usage errors exit 1, as urfave/cli's do in etcdctl."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as e:
            raise CtlUsageError(e.format_message(), e.ctx) from e


class CtlGroup(click.Group):
    command_class = CtlCommand

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as e:
            raise CtlUsageError(e.format_message(), e.ctx) from e


def _arg(args: Sequence[str], i: int, what: str) -> str:
    if i < len(args):
        return args[i]
    fail(EXIT_BAD_ARGS, f"{what} required")


def _arg_or_stdin(args: Sequence[str], i: int, what: str) -> str:
    # etcdctl `argOrStdin`: a missing value is read from stdin; empty means "value required".
    if i < len(args):
        return args[i]
    text = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    if text == "":
        fail(EXIT_BAD_ARGS, f"{what} required")
    return text


def _ttl(ttl: int) -> int | None:
    return ttl if ttl > 0 else None  # etcdctl: 0 (the default) means no TTL


# --------------------------------------------------------------------------------------------
# Commands

ARGS = click.argument("args", nargs=-1)
TTL = click.option("--ttl", default=0, type=int, help="key time-to-live in seconds")


@click.command("ls", cls=CtlCommand)
@click.option("--sort", is_flag=True, help="returns result in sorted order")
@click.option("--recursive", "-r", is_flag=True, help="returns all key names recursively")
@click.option("-p", "slash", is_flag=True, help="append slash (/) to directories")
@click.option("--quorum", "-q", is_flag=True, help="require quorum for get request")
@ARGS
@connection_options
def ls_cmd(
    ctl: Ctl, args: tuple[str, ...], sort: bool, recursive: bool, slash: bool, quorum: bool
) -> None:
    """retrieve a directory"""
    key = args[0] if args else "/"
    result = server_call(ctl, lambda c: c.get(key, recursive=recursive, sorted=sort, quorum=quorum))
    click.echo(format_ls(result, ctl.output, slash), nl=False)


@click.command("get", cls=CtlCommand)
@click.option("--sort", is_flag=True, help="returns result in sorted order")
@click.option("--quorum", "-q", is_flag=True, help="require quorum for get request")
@ARGS
@connection_options
def get_cmd(ctl: Ctl, args: tuple[str, ...], sort: bool, quorum: bool) -> None:
    """retrieve the value of a key"""
    key = _arg(args, 0, "key")
    result = server_call(ctl, lambda c: c.get(key, sorted=sort, quorum=quorum))
    if result.node.dir:
        click.echo(f"{go_key(result.node.key)}: is a directory", err=True)
        sys.exit(EXIT_BAD_ARGS)
    ctl.print_result(result)


@click.command("set", cls=CtlCommand)
@TTL
@click.option("--swap-with-value", default="", help="previous value")
@click.option("--swap-with-index", default=0, type=int, help="previous index")
@ARGS
@connection_options
def set_cmd(
    ctl: Ctl, args: tuple[str, ...], ttl: int, swap_with_value: str, swap_with_index: int
) -> None:
    """set the value of a key"""
    key = _arg(args, 0, "key")
    value = _arg_or_stdin(args, 1, "value")
    result = server_call(
        ctl,
        lambda c: c.set(
            key,
            value,
            ttl=_ttl(ttl),
            prev_value=swap_with_value or None,
            prev_index=swap_with_index if swap_with_index > 0 else None,
        ),
    )
    ctl.print_result(result)


@click.command("mk", cls=CtlCommand)
@TTL
@click.option("--in-order", is_flag=True, help="create in-order key under directory <key>")
@ARGS
@connection_options
def mk_cmd(ctl: Ctl, args: tuple[str, ...], ttl: int, in_order: bool) -> None:
    """make a new key with a given value"""
    key = _arg(args, 0, "key")
    value = _arg_or_stdin(args, 1, "value")
    if in_order:
        result = server_call(ctl, lambda c: c.append(key, value, ttl=_ttl(ttl)))
    else:
        result = server_call(ctl, lambda c: c.create(key, value, ttl=_ttl(ttl)))
    ctl.print_result(result)


def _dir_command(name: str, doc: str, prev_exist: bool | None) -> click.Command:
    """mkdir (prevExist=false), setdir (plain set) and updatedir (prevExist=true): silent on
    success in simple output, as etcdctl."""

    @click.command(name, cls=CtlCommand, help=doc)
    @TTL
    @ARGS
    @connection_options
    def command(ctl: Ctl, args: tuple[str, ...], ttl: int) -> None:
        key = _arg(args, 0, "key")
        result = server_call(
            ctl, lambda c: c.set(key, None, ttl=_ttl(ttl), prev_exist=prev_exist, dir=True)
        )
        if ctl.output != "simple":
            ctl.print_result(result)

    return command


mkdir_cmd = _dir_command("mkdir", "make a new directory", False)
setdir_cmd = _dir_command(
    "setdir", "create a new directory or update an existing directory TTL", None
)
updatedir_cmd = _dir_command("updatedir", "update an existing directory", True)


@click.command("update", cls=CtlCommand)
@TTL
@ARGS
@connection_options
def update_cmd(ctl: Ctl, args: tuple[str, ...], ttl: int) -> None:
    """update an existing key with a given value"""
    key = _arg(args, 0, "key")
    value = _arg_or_stdin(args, 1, "value")
    ctl.print_result(server_call(ctl, lambda c: c.update(key, value, ttl=_ttl(ttl))))


def _print_delete(ctl: Ctl, result: Result) -> None:
    # etcdctl rm/rmdir: a deleted dir prints nothing in simple output.
    if not result.node.dir or ctl.output != "simple":
        ctl.print_result(result)


@click.command("rm", cls=CtlCommand)
@click.option(
    "--dir",
    "is_dir",
    is_flag=True,
    help="removes the key if it is an empty directory or a key-value pair",
)
@click.option("--recursive", "-r", is_flag=True, help="removes the key and all child keys")
@click.option("--with-value", default="", help="previous value")
@click.option("--with-index", default=0, type=int, help="previous index")
@ARGS
@connection_options
def rm_cmd(
    ctl: Ctl, args: tuple[str, ...], is_dir: bool, recursive: bool, with_value: str, with_index: int
) -> None:
    """remove a key or a directory"""
    key = _arg(args, 0, "key")
    result = server_call(
        ctl,
        lambda c: c.delete(
            key,
            recursive=recursive,
            dir=is_dir,
            prev_value=with_value or None,
            prev_index=with_index if with_index > 0 else None,
        ),
    )
    _print_delete(ctl, result)


@click.command("rmdir", cls=CtlCommand)
@ARGS
@connection_options
def rmdir_cmd(ctl: Ctl, args: tuple[str, ...]) -> None:
    """removes the key if it is an empty directory or a key-value pair"""
    key = _arg(args, 0, "key")
    _print_delete(ctl, server_call(ctl, lambda c: c.delete(key, dir=True)))


def _events(ctl: Ctl, key: str, after_index: int, recursive: bool) -> Iterator[Result]:
    """etcd client/v2 `Watcher.Next`: one-shot watches, each from the last `modifiedIndex + 1`;
    `--after-index N` starts at N + 1. Errors (a 401 included) end the command, as etcdctl."""
    index = after_index + 1 if after_index > 0 else None
    with ctl.client() as client:
        while True:
            try:
                result = client.watch(key, index=index, recursive=recursive)
            except ConnectionFailedError as e:
                fail(EXIT_BAD_CONNECTION, e)
            except StoreClientError as e:
                fail(EXIT_SERVER_ERROR, e)
            index = result.node.modified_index + 1
            yield result


@click.command("watch", cls=CtlCommand)
@click.option("--forever", "-f", is_flag=True, help="forever watch a key until CTRL+C")
@click.option("--after-index", default=0, type=int, help="watch after the given index")
@click.option("--recursive", "-r", is_flag=True, help="returns all values for key and child keys")
@ARGS
@connection_options
def watch_cmd(
    ctl: Ctl, args: tuple[str, ...], forever: bool, after_index: int, recursive: bool
) -> None:
    """watch a key for changes"""
    key = _arg(args, 0, "key")
    try:
        for result in _events(ctl, key, after_index, recursive):
            if result.node.dir:
                continue  # etcdctl ignores directory events
            if recursive:
                click.echo(f"[{result.action}] {result.node.key}")
            ctl.print_result(result)
            if not forever:
                return
    except KeyboardInterrupt:
        sys.exit(EXIT_SUCCESS)  # etcdctl exits 0 on SIGINT


def watch_environment(result: Result, environ: dict[str, str]) -> dict[str, str]:
    """etcdctl `environResponse`: the event, for the executed command."""
    return {
        **environ,
        "ETCD_WATCH_ACTION": result.action,
        "ETCD_WATCH_MODIFIED_INDEX": str(result.node.modified_index),
        "ETCD_WATCH_KEY": result.node.key,
        "ETCD_WATCH_VALUE": result.node.value or "",
    }


@click.command(
    "exec-watch",
    cls=CtlCommand,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--after-index", default=0, type=int, help="watch after the given index")
@click.option("--recursive", "-r", is_flag=True, help="watch all values for key and child keys")
@ARGS
@connection_options
def exec_watch_cmd(ctl: Ctl, args: tuple[str, ...], after_index: int, recursive: bool) -> None:
    """watch a key for changes and exec an executable: <key> [--] <command> [args...]"""
    rest = list(args)
    if len(rest) >= 2 and rest[1] == "--":
        del rest[1]
    if len(rest) < 2:
        fail(EXIT_BAD_ARGS, "key and command to exec required")
    key, command = rest[0], rest[1:]
    try:
        for result in _events(ctl, key, after_index, recursive):
            if result.node.dir:
                click.echo(f"Ignored dir {result.node.key} change", err=True)
                continue
            try:
                # stdout is flushed first so the command's output follows ours in order.
                sys.stdout.flush()
                subprocess.run(
                    command, env=watch_environment(result, dict(os.environ)), check=False
                )
            except OSError as e:
                click.echo(str(e), err=True)
                sys.exit(EXIT_BAD_ARGS)
    except KeyboardInterrupt:
        sys.exit(EXIT_SUCCESS)


@click.group("member", cls=CtlGroup)
def member_group() -> None:
    """member add, remove and list subcommands"""


@member_group.command("list", cls=CtlCommand)
@ARGS
@connection_options
def member_list_cmd(ctl: Ctl, args: tuple[str, ...]) -> None:
    """enumerate existing cluster members"""
    if args:
        click.echo("No arguments accepted", err=True)
        sys.exit(EXIT_BAD_ARGS)
    with ctl.client() as client:
        try:
            members = client.members()
        except ConnectionFailedError as e:
            fail(EXIT_BAD_CONNECTION, e)  # etcdctl fails in its cluster sync first
        except StoreClientError as e:
            click.echo(str(e), err=True)
            sys.exit(EXIT_BAD_ARGS)
        try:
            leader = client.leader()
        except StoreClientError as e:
            click.echo(f"Failed to get leader:  {e}", err=True)
            sys.exit(EXIT_BAD_ARGS)
    for m in members:
        if not m.name:
            click.echo(f"{m.id}[unstarted]: peerURLs={','.join(m.peer_urls)}")
        else:
            is_leader = "true" if m.id == leader.id else "false"
            click.echo(
                f"{m.id}: name={m.name} peerURLs={','.join(m.peer_urls)} "
                f"clientURLs={','.join(m.client_urls)} isLeader={is_leader}"
            )


@member_group.command("add", cls=CtlCommand)
@ARGS
@connection_options
def member_add_cmd(ctl: Ctl, args: tuple[str, ...]) -> None:
    """add a new member to the etcd cluster: member add <name> <peerURL>[,<peerURL>...]"""
    if len(args) != 2:
        click.echo("Provide a name and a single member peerURL", err=True)
        sys.exit(EXIT_BAD_ARGS)
    name, urls = args[0], [u for u in args[1].split(",") if u]
    with ctl.client() as client:
        try:
            added = client.add_member(urls)
            members = client.members()
        except ConnectionFailedError as e:
            fail(EXIT_BAD_CONNECTION, e)
        except StoreClientError as e:
            click.echo(str(e), err=True)
            sys.exit(EXIT_BAD_ARGS)
    click.echo(f"Added member named {name} with ID {added.id} to cluster")
    # etcdctl's hint: the environment the new member starts with.
    initial = [
        f"{name if m.id == added.id else m.name}={u}"
        for m in members
        for u in m.peer_urls
        if m.name or m.id == added.id
    ]
    click.echo("")
    click.echo(f'ETCD_NAME="{name}"')
    click.echo(f'ETCD_INITIAL_CLUSTER="{",".join(initial)}"')
    click.echo('ETCD_INITIAL_CLUSTER_STATE="existing"')


@member_group.command("remove", cls=CtlCommand)
@ARGS
@connection_options
def member_remove_cmd(ctl: Ctl, args: tuple[str, ...]) -> None:
    """remove an existing member from the etcd cluster: member remove <memberID>"""
    if len(args) != 1:
        click.echo("Provide a single member ID", err=True)
        sys.exit(EXIT_BAD_ARGS)
    with ctl.client() as client:
        try:
            client.remove_member(args[0])
        except ConnectionFailedError as e:
            fail(EXIT_BAD_CONNECTION, e)
        except StoreClientError as e:
            click.echo(str(e), err=True)
            sys.exit(EXIT_BAD_ARGS)
    click.echo(f"Removed member {args[0]} from cluster")


@member_group.command("update", cls=CtlCommand)
@ARGS
@connection_options
def member_update_cmd(ctl: Ctl, args: tuple[str, ...]) -> None:
    """update an existing member in the etcd cluster: member update <memberID> <peerURLs>"""
    if len(args) != 2:
        click.echo("Provide an ID and a list of comma separated peerURL", err=True)
        sys.exit(EXIT_BAD_ARGS)
    with ctl.client() as client:
        try:
            client.update_member(args[0], [u for u in args[1].split(",") if u])
        except ConnectionFailedError as e:
            fail(EXIT_BAD_CONNECTION, e)
        except StoreClientError as e:
            click.echo(str(e), err=True)
            sys.exit(EXIT_BAD_ARGS)
    click.echo(f"Updated member with ID {args[0]} in cluster")


@click.command("cluster-health", cls=CtlCommand)
@click.option(
    "--forever", "-f", is_flag=True, help="forever check the health every 10 second until CTRL+C"
)
@connection_options
def cluster_health_cmd(ctl: Ctl, forever: bool) -> None:
    """check the health of the etcd cluster"""
    with ctl.client() as client:
        try:
            members = client.members()
        except StoreClientError as e:
            click.echo("cluster may be unhealthy: failed to list members")
            fail(EXIT_SERVER_ERROR, e)
    try:
        while True:
            healthy = _check_members(ctl, members)
            click.echo("cluster is healthy" if healthy else "cluster is unhealthy")
            if not forever:
                sys.exit(EXIT_SUCCESS if healthy else EXIT_CLUSTER_NOT_HEALTHY)
            click.echo("\nnext check after 10 second...\n")
            time.sleep(10)  # etcdctl's fixed period between checks
    except KeyboardInterrupt:
        sys.exit(EXIT_SUCCESS)


def _check_members(ctl: Ctl, members: Sequence[Any]) -> bool:
    """etcdctl `handleClusterHealth`: the first answering client URL decides for a member; the
    cluster is healthy if any member is."""
    healthy = False
    for m in members:
        if not m.client_urls:
            click.echo(f"member {m.id} is unreachable: no available published client urls")
            continue
        checked = False
        for url in m.client_urls:
            with ctl.client([url]) as client:
                try:
                    ok = client.health()
                except ConnectionFailedError as e:
                    reason = e.errors[0][1] if e.errors else str(e)
                    failure = f'Get "{url}/health": {reason}'
                    click.echo(f"failed to check the health of member {m.id} on {url}: {failure}")
                    continue
                except StoreClientError as e:
                    click.echo(f"failed to check the health of member {m.id} on {url}: {e}")
                    continue
            checked = True
            if ok:
                healthy = True
                click.echo(f"member {m.id} is healthy: got healthy result from {url}")
            else:
                click.echo(f"member {m.id} is unhealthy: got unhealthy result from {url}")
            break
        if not checked:
            click.echo(
                f"member {m.id} is unreachable: [{' '.join(m.client_urls)}] are all unreachable"
            )
    return healthy


COMMANDS: tuple[click.Command, ...] = (
    ls_cmd,
    get_cmd,
    set_cmd,
    mk_cmd,
    mkdir_cmd,
    setdir_cmd,
    update_cmd,
    updatedir_cmd,
    rm_cmd,
    rmdir_cmd,
    watch_cmd,
    exec_watch_cmd,
    member_group,
    cluster_health_cmd,
)


def register(group: click.Group) -> None:
    for command in COMMANDS:
        group.add_command(command)
