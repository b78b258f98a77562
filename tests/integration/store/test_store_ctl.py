"""`dockyard store <etcdctl v2 command>` as a subprocess, compared with `ETCDCTL_API=2 etcdctl`
3.4 run on the same server: same stdout, stderr and exit code, once indexes and each tool's
own key prefix are normalised."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from dockyard.store.client import StoreClient
from tests.support.servers import ServerProcess, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ETCDCTL = "/usr/bin/etcdctl"
GLOBAL_WITH_VALUE = {"-o", "--output"}


@dataclass(frozen=True)
class Run:
    rc: int
    out: str
    err: str


def _split_global(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Leading `-o X` is global for etcdctl; for dockyard it goes on the subcommand."""
    args = list(args)
    options: list[str] = []
    while args and args[0] in GLOBAL_WITH_VALUE:
        options += args[:2]
        args = args[2:]
    return options, args


def etcdctl_argv(url: str, args: Sequence[str]) -> list[str]:
    return [ETCDCTL, "--endpoints", url, *args]


def dockyard_argv(url: str, args: Sequence[str]) -> list[str]:
    options, rest = _split_global(args)
    # `member list` is a group plus a command: the options belong to the command.
    split = 2 if rest[:1] == ["member"] else 1
    return [
        sys.executable,
        "-m",
        "dockyard",
        "store",
        *rest[:split],
        "--endpoints",
        url,
        *options,
        *rest[split:],
    ]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "2"
    return env


def run(argv: Sequence[str], stdin: str = "") -> Run:
    p = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, env=_env(), timeout=30
    )
    return Run(p.returncode, p.stdout, p.stderr)


def normalise(text: str, prefix: str) -> str:
    return re.sub(r"\d+", "N", text.replace(prefix, "/P"))


@pytest.fixture
def prefixes() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"/e{tag}", f"/d{tag}"


def compare(url: str, prefixes: tuple[str, str], script: Sequence[Sequence[str]]) -> list[Run]:
    """Run each step with etcdctl on one prefix and dockyard on the other; all must match."""
    e_prefix, d_prefix = prefixes
    runs = []
    for step in script:
        e = run(etcdctl_argv(url, [a.replace("/P", e_prefix) for a in step]))
        d = run(dockyard_argv(url, [a.replace("/P", d_prefix) for a in step]))
        for what in ("rc", "out", "err"):
            expected = normalise(str(getattr(e, what)), e_prefix)
            actual = normalise(str(getattr(d, what)), d_prefix)
            assert actual == expected, (
                f"{' '.join(step)}: {what} differs\netcdctl: {e}\ndockyard: {d}"
            )
        runs.append(d)
    return runs


def test_files_outputs_and_errors(store_server: ServerProcess, prefixes: tuple[str, str]) -> None:
    runs = compare(
        store_server.url,
        prefixes,
        [
            ["set", "/P/k", "v1"],
            ["-o", "json", "set", "/P/k", "v<&>ü"],
            ["-o", "extended", "get", "/P/k"],
            ["get", "/P/k"],
            ["mk", "/P/k", "x"],
            ["-o", "extended", "mk", "/P/new", "n", "--ttl", "100"],
            ["update", "/P/nope", "x"],
            ["-o", "extended", "update", "/P/new", "n2"],
            ["set", "/P/k", "v", "--swap-with-value", "nope"],
            ["set", "/P/k", "v", "--swap-with-index", "1", "--swap-with-value", "zz"],
            ["set", "/P/k", "v3", "--swap-with-value", "v<&>ü"],
            ["get", "/P/missing/deeper"],
            ["-o", "json", "get", "/P/missing"],
            ["rm", "/P/k", "--with-value", "wrong"],
            ["rm", "/P/k"],
            ["rm", "/P/k"],
            ["-o", "extended", "rm", "/P/new"],
            ["set", "/P/cad", "1"],
            ["-o", "json", "rm", "/P/cad", "--with-value", "1"],
        ],
    )
    assert runs[0].out == "v1\n" and runs[0].rc == 0
    assert runs[4].rc == 4 and runs[4].err.startswith("Error:  105: Key already exists")


def test_directories_and_listings(store_server: ServerProcess, prefixes: tuple[str, str]) -> None:
    compare(
        store_server.url,
        prefixes,
        [
            ["mkdir", "/P/d"],
            ["mkdir", "/P/d"],
            ["-o", "json", "mkdir", "/P/d2"],
            ["-o", "extended", "setdir", "/P/d3"],
            ["setdir", "/P/d3"],
            ["get", "/P/d"],
            ["set", "/P/d/x", "1"],
            ["set", "/P/d/sub/y", "2"],
            ["set", "/P/d/sub/_hidden", "h"],
            ["ls", "--sort", "/P/d"],
            ["ls", "-p", "--recursive", "--sort", "/P"],
            ["ls", "/P/d/x"],
            ["-o", "json", "ls", "--sort", "/P/d"],
            ["-o", "extended", "ls", "/P/d2"],
            ["ls", "/P/none"],
            ["set", "/P/d", "v"],
            ["update", "/P/d", "v"],
            ["rm", "/P/d"],
            ["rm", "/P/d", "--dir"],
            ["rmdir", "/P/d"],
            ["rmdir", "/P/d/x"],
            ["rm", "--recursive", "/P/d"],
            ["-o", "json", "rm", "/P/d2", "--dir"],
            ["updatedir", "/P/nodir", "--ttl", "5"],
            ["-o", "json", "updatedir", "/P/d3", "--ttl", "60"],
            ["rmdir", "/P/d3"],
            ["mk", "--in-order", "/P/q", "job1"],
            ["-o", "json", "mk", "--in-order", "/P/q", "job2"],
            ["ls", "--sort", "/P/q"],
        ],
    )


def test_argument_errors(store_server: ServerProcess, prefixes: tuple[str, str]) -> None:
    compare(
        store_server.url,
        prefixes,
        [
            ["get"],
            ["set"],
            ["set", "/P/k"],
            ["mk", "/P/k"],
            ["rm"],
            ["mkdir"],
            ["watch"],
            ["exec-watch", "/P/k"],
        ],
    )
    # Usage errors exit 1 as urfave/cli's do (the messages are each library's own).
    e = run(etcdctl_argv(store_server.url, ["set", "/x", "v", "--ttl", "abc"]))
    d = run(dockyard_argv(store_server.url, ["set", "/x", "v", "--ttl", "abc"]))
    assert e.rc == d.rc == 1
    assert "ttl" in d.err


def test_value_from_stdin(store_server: ServerProcess, prefixes: tuple[str, str]) -> None:
    _, d_prefix = prefixes
    assert (
        run(dockyard_argv(store_server.url, ["set", f"{d_prefix}/in"]), stdin="from stdin").out
        == "from stdin\n"
    )
    assert run(dockyard_argv(store_server.url, ["get", f"{d_prefix}/in"])).out == "from stdin\n"


def test_member_list_and_cluster_health(
    store_server: ServerProcess, prefixes: tuple[str, str]
) -> None:
    runs = compare(store_server.url, prefixes, [["member", "list"], ["cluster-health"]])
    assert f"clientURLs={store_server.url} isLeader=true" in runs[0].out
    assert runs[1].out.endswith("cluster is healthy\n")


def test_unreachable_endpoint(prefixes: tuple[str, str]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    runs = compare(dead, prefixes, [["get", "/P/k"], ["member", "list"], ["cluster-health"]])
    assert runs[0].rc == 2 and "connection refused" in runs[0].err
    assert runs[2].rc == 4 and runs[2].out == "cluster may be unhealthy: failed to list members\n"


def test_watch_after_index(store_server: ServerProcess, prefixes: tuple[str, str]) -> None:
    with StoreClient(store_server.url) as client:
        start = {p: client.get("/").etcd_index for p in prefixes}
        for p in prefixes:
            client.set(f"{p}/w", "first")
            client.set(f"{p}/w", "second")
            client.mkdir(f"{p}/wd/sub")
            client.set(f"{p}/wd/sub/x", "deep")
            client.delete(f"{p}/w")
    e_prefix, d_prefix = prefixes
    steps = [
        ["watch", "--after-index", "{i}", "/P/w"],
        ["-o", "extended", "watch", "--after-index", "{i}", "/P/w"],
        ["-o", "json", "watch", "--after-index", "{i}", "/P/w"],
        ["watch", "--recursive", "--after-index", "{i}", "/P/wd"],
    ]
    for step in steps:
        e = run(
            etcdctl_argv(
                store_server.url,
                [a.replace("/P", e_prefix).format(i=start[e_prefix]) for a in step],
            )
        )
        d = run(
            dockyard_argv(
                store_server.url,
                [a.replace("/P", d_prefix).format(i=start[d_prefix]) for a in step],
            )
        )
        assert (d.rc, normalise(d.out, d_prefix), d.err) == (
            e.rc,
            normalise(e.out, e_prefix),
            e.err,
        ), step
    assert d.out == f"[set] {d_prefix}/wd/sub/x\ndeep\n"  # the mkdir event is skipped


def _read_lines(p: subprocess.Popen[str], n: int) -> list[str]:
    assert p.stdout is not None
    return [p.stdout.readline() for _ in range(n)]


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()
        if p.stdout is not None:
            p.stdout.close()


def _popen(processes: list[subprocess.Popen[str]], argv: Sequence[str]) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env()
    )
    processes.append(p)
    return p


def test_watch_forever_and_exec_watch(
    store_server: ServerProcess, prefixes: tuple[str, str], processes: list[subprocess.Popen[str]]
) -> None:
    with StoreClient(store_server.url) as client:
        start = {p: client.get("/").etcd_index for p in prefixes}
        for p in prefixes:
            client.set(f"{p}/f", "one")
            client.set(f"{p}/f", "two")
            client.delete(f"{p}/f")
    show = 'echo "$ETCD_WATCH_ACTION $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_MODIFIED_INDEX"'
    outputs = {}
    for prefix, argv in ((prefixes[0], etcdctl_argv), (prefixes[1], dockyard_argv)):
        after = str(start[prefix])
        forever = _popen(
            processes,
            argv(store_server.url, ["watch", "--forever", "--after-index", after, f"{prefix}/f"]),
        )
        # etcdctl parses `exec-watch` arguments reliably in this order only.
        execw = _popen(
            processes,
            argv(store_server.url, ["exec-watch", "--after-index", after, "--recursive",
                                    f"{prefix}/f", "--", "sh", "-c", show]),
        )  # fmt: skip
        outputs[prefix] = (_read_lines(forever, 3), _read_lines(execw, 3))
        forever.send_signal(signal.SIGINT)
        assert forever.wait(timeout=10) == 0  # Ctrl-C ends a forever watch with 0
    e, d = (tuple(normalise("".join(lines), p) for lines in outputs[p]) for p in prefixes)
    assert d[0] == e[0], "watch --forever prints events in order"
    # etcdctl's exec-watch runs each command in its own goroutine, so the order of their
    # output is not defined; ours runs them in order. Compare the lines as sets.
    assert sorted(d[1].splitlines()) == sorted(e[1].splitlines())
    assert outputs[prefixes[1]][1][0].startswith(f"set {prefixes[1]}/f one ")


def test_exec_watch_without_separator_or_recursion(
    store_server: ServerProcess, prefixes: tuple[str, str], processes: list[subprocess.Popen[str]]
) -> None:
    _, d_prefix = prefixes
    with StoreClient(store_server.url) as client:
        start = client.set(f"{d_prefix}/x", "v").node.modified_index
    p = _popen(
        processes,
        dockyard_argv(
            store_server.url,
            [
                "exec-watch",
                "--after-index",
                str(start - 1),
                f"{d_prefix}/x",
                "sh",
                "-c",
                "echo $ETCD_WATCH_VALUE",
            ],
        ),
    )
    assert _read_lines(p, 1) == ["v\n"]
