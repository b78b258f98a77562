"""Fixtures for real-fault cluster tests: a leak-checked namespace lab and clusters inside it.

Every test that uses `lab` gets a fresh `Lab` (unique token, private /24) whose teardown runs
even when the test fails; the host is snapshotted before and after and the test errors if
anything of a lab is left. Root is required: without it the fixture fails, it never skips.

`NetnsCluster` runs one server per member namespace from an argv hook (`etcd_member_argv`
now; dockyard's members plug in through the same hook) and talks to them as the observer.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.netns import Lab, Member, host_snapshot, leaks
from tests.support.servers import ETCD_BINARY

CLIENT_PORT = 2379
PEER_PORT = 2380
POLL_INTERVAL_S = 0.05  # polling an external process: there is no event to await


@pytest.fixture
def host_guard() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.fail("the cluster integration tests need root (network namespaces, iptables)")
    before = host_snapshot()
    yield
    left = leaks(before, host_snapshot())
    assert not left, f"left on the host: {left}"


@pytest.fixture
def make_lab(host_guard: None) -> Iterator[Callable[[int | Sequence[str]], Lab]]:
    """Labs of any size (`make_lab(5)`, `make_lab(["a", "b"])`), all closed at teardown."""
    labs: list[Lab] = []

    def make(members: int | Sequence[str]) -> Lab:
        lab = Lab(members)
        labs.append(lab)
        lab.open()
        return lab

    try:
        yield make
    finally:
        errors = []
        for lab in reversed(labs):
            try:
                lab.close()
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]


@pytest.fixture
def lab(make_lab: Callable[[int | Sequence[str]], Lab]) -> Lab:
    return make_lab(3)


@dataclass(frozen=True)
class HttpResult:
    status: int  # 0: no answer (refused, reset, timed out)
    body: dict[str, Any]
    headers: dict[str, str]
    error: str = ""


@dataclass
class ClusterMember:
    member: Member
    data_dir: Path
    log_path: Path
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None  # once started

    @property
    def client_url(self) -> str:
        return f"http://{self.member.address}:{CLIENT_PORT}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


ArgvHook = Callable[[Member, Sequence[Member], Path, str], list[str]]


def etcd_member_argv(
    member: Member, cluster: Sequence[Member], data_dir: Path, token: str
) -> list[str]:
    def peer(m: Member) -> str:
        return f"http://{m.address}:{PEER_PORT}"

    client = f"http://{member.address}:{CLIENT_PORT}"
    return [
        ETCD_BINARY,
        "--enable-v2=true",
        "--name", member.name,
        "--data-dir", str(data_dir),
        "--listen-client-urls", client,
        "--advertise-client-urls", client,
        "--listen-peer-urls", peer(member),
        "--initial-advertise-peer-urls", peer(member),
        "--initial-cluster", ",".join(f"{m.name}={peer(m)}" for m in cluster),
        "--initial-cluster-state", "new",
        "--initial-cluster-token", f"dyl{token}",
    ]  # fmt: skip


@dataclass
class NetnsCluster:
    lab: Lab
    base_dir: Path
    argv_hook: ArgvHook
    members: dict[str, ClusterMember] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cluster = list(self.lab.members.values())
        for m in cluster:
            data_dir = self.base_dir / f"{m.name}.data"
            argv = self.argv_hook(m, cluster, data_dir, self.lab.token)
            self.members[m.name] = ClusterMember(m, data_dir, self.base_dir / f"{m.name}.log", argv)

    # -------------------------------------------------------------- processes
    def start(self, name: str | None = None) -> None:
        """Start one member (or all of them, together, as a new cluster needs) with its data."""
        names = [name] if name else list(self.members)
        for n in names:
            cm = self.members[n]
            cm.process = self.lab.spawn(n, cm.argv, log_path=cm.log_path)
        for n in names:
            self.wait_serving(n)

    def process(self, name: str) -> subprocess.Popen[bytes]:
        process = self.members[name].process
        if process is None:
            raise AssertionError(f"{name} was never started")
        return process

    def kill9(self, name: str) -> None:
        self.lab.kill9(self.process(name))

    def wait_serving(self, name: str, timeout_s: float = 30.0) -> None:
        cm = self.members[name]
        process = self.process(name)

        def serving() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{cm.log()}")
            return self.request(name, "GET", "/version", timeout_s=1).status == 200

        wait_for(serving, timeout_s, f"{name} serving")

    # -------------------------------------------------------------- HTTP (as the observer)
    def request(
        self,
        name: str,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        timeout_s: float = 5.0,
        json_body: Any = None,
    ) -> HttpResult:
        url = self.members[name].client_url + path
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        if json_body is not None:
            data = json.dumps(json_body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if json_body is not None:
            req.add_header("Content-Type", "application/json")
        elif data is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        with self.lab.observe():
            try:
                with urllib.request.urlopen(req, timeout=timeout_s) as r:
                    return HttpResult(r.status, _json(r.read()), dict(r.headers))
            except urllib.error.HTTPError as e:
                return HttpResult(e.code, _json(e.read()), dict(e.headers))
            except (OSError, TimeoutError) as e:
                return HttpResult(0, {}, {}, repr(e))

    def put(self, name: str, key: str, value: str, timeout_s: float = 5.0) -> HttpResult:
        return self.request(name, "PUT", f"/v2/keys/{key}", {"value": value}, timeout_s)

    def get(self, name: str, key: str, quorum: bool = False, timeout_s: float = 5.0) -> HttpResult:
        query = "?quorum=true" if quorum else ""
        return self.request(name, "GET", f"/v2/keys/{key}{query}", timeout_s=timeout_s)

    def leader_as_seen_by(self, name: str) -> str | None:
        r = self.request(name, "GET", "/v2/members/leader", timeout_s=2)
        # A member that just restarted may lead before it has published its name: no name
        # yet means no leader the test can address.
        return str(r.body["name"]) if r.status == 200 and r.body.get("name") else None

    def wait_leader(
        self, among: Sequence[str] | None = None, not_: str | None = None, timeout_s: float = 20.0
    ) -> str:
        """Wait until every member of `among` names the same leader (not `not_`); return it."""
        asked = list(among or self.members)
        found: list[str] = []

        def agreed() -> bool:
            seen = {self.leader_as_seen_by(n) for n in asked}
            if len(seen) == 1 and None not in seen and not_ not in seen:
                found[:] = [str(next(iter(seen)))]
                return True
            return False

        wait_for(agreed, timeout_s, f"one leader among {asked} (not {not_})")
        return found[0]


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(POLL_INTERVAL_S)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {"raw": raw.decode(errors="replace")}
    return value if isinstance(value, dict) else {"value": value}


@pytest.fixture
def etcd_cluster(lab: Lab, tmp_path: Path) -> Iterator[NetnsCluster]:
    if not Path(ETCD_BINARY).exists():
        pytest.fail(f"{ETCD_BINARY} is required (Debian's etcd-server)")
    cluster = NetnsCluster(lab, tmp_path, etcd_member_argv)
    cluster.start()
    yield cluster
    # The lab kills every member by PID at teardown; nothing else to do here.
