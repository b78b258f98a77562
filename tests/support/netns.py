"""A private network of namespaces for real-fault tests: members, a switch, and the faults.

Topology; nothing is created in the host's own network namespace::

    netns dyl<token>-sw   bridge dyb<token>, address .1 (the observer: the test's clients)
                            |- dyv<token><i> ==veth== eth0 in netns dyl<token>-<member>
    netns dyl<token>-<m>  eth0 with address .(11+i)/24 in 10.213.<x>.0/24, lo up

Rules:
- Every name carries the lab's random token (`LAB_NAME_RE`), so labs never collide and anything
  left behind is recognisable. The /24 is checked against the host's routes and addresses.
- The test process talks to members from the switch namespace: `Lab.observe()` moves the calling
  thread there with setns(2) (per thread; the rest of the process stays put). Sockets keep the
  namespace they were opened in, so open and close them inside the block: an open socket keeps a
  deleted namespace (and its veth) alive.
- Faults are iptables DROP rules in the receiving namespace's INPUT chain: `drop(src, dst)` loses
  every packet src sends to dst and nothing else. Member-to-member faults never match the
  observer's address, so a partitioned member still answers clients (as in Jepsen).
- Processes run in a member namespace through `ip netns exec`, which execs: the Popen's PID is
  the process's PID. Each gets its own session and is stopped by that PID only, never by name.
- `close()` runs on every exit path (context manager, and on a failed setup), is idempotent, and
  removes in order: tracked processes (SIGKILL by PID, reaped), any other process still inside a
  lab namespace (`ip netns pids`, by PID), fault rules, member namespaces (deleting one destroys
  its veth end and so the pair), then the switch namespace with the bridge.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import re
import secrets
import signal
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from tests.support.processes import wait_pid_gone

IP = "/usr/sbin/ip" if Path("/usr/sbin/ip").exists() else "/sbin/ip"
IPTABLES = "/usr/sbin/iptables"
IPTABLES_SAVE = "/usr/sbin/iptables-save"
NETNS_DIR = Path("/run/netns")
OBSERVER = "observer"  # the switch namespace's address: where the test's clients live
SUBNET_SECOND_OCTET = 213  # 10.213.<x>.0/24: unusual, checked against the host's routes anyway
MEMBER_HOST_OFFSET = 11  # member i has host address .(11 + i); .1 is the observer
PROCESS_EXIT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0
CLONE_NEWNET = 0x40000000
LAB_NAME_RE = re.compile(r"dy[lbv][0-9a-f]{6}")

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    """A namespace, link or rule command failed, or the host cannot run the lab."""


def _run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if check and result.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise NetnsError(f"setns failed: {os.strerror(errno)}")


def _host_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host routes or has an address in (all routing tables)."""
    networks: list[ipaddress.IPv4Network] = []
    text = _run([IP, "-4", "-o", "route", "show", "table", "all"]).stdout
    text += _run([IP, "-4", "-o", "addr", "show"]).stdout
    for match in re.finditer(r"(?<![\w.])(\d+\.\d+\.\d+\.\d+(?:/\d+)?)", text):
        with contextlib.suppress(ValueError):
            networks.append(ipaddress.IPv4Network(match.group(1), strict=False))
    return networks


def pick_subnet(rng: secrets.SystemRandom | None = None) -> ipaddress.IPv4Network:
    """A free 10.213.<x>.0/24: no host route or address overlaps it."""
    rng = rng or secrets.SystemRandom()
    taken = _host_networks()
    candidates = list(range(256))
    rng.shuffle(candidates)
    for third in candidates:
        subnet = ipaddress.IPv4Network(f"10.{SUBNET_SECOND_OCTET}.{third}.0/24")
        # A default route (0.0.0.0/0) overlaps everything and is not a collision.
        if not any(subnet.overlaps(n) for n in taken if n.prefixlen > 0):
            return subnet
    raise NetnsError(f"no free /24 in 10.{SUBNET_SECOND_OCTET}.0.0/16")


@dataclass(frozen=True)
class Member:
    name: str
    index: int
    netns: str  # the namespace's name under /run/netns
    address: str  # IPv4, without prefix length
    switch_port: str  # the veth end on the bridge, in the switch namespace


class Lab:
    """N member namespaces on a private bridge, with processes and faults; see module rules.

    Use as a context manager (`with Lab(["n1", "n2", "n3"]) as lab:`); `close()` also works
    alone and may be called any number of times.
    """

    def __init__(self, members: Sequence[str] | int, token: str | None = None) -> None:
        names = [f"n{i + 1}" for i in range(members)] if isinstance(members, int) else [*members]
        if not names or len(set(names)) != len(names) or OBSERVER in names:
            raise ValueError(f"member names must be unique, non-empty, not {OBSERVER!r}: {names}")
        if len(names) > 200:
            raise ValueError("at most 200 members on one /24")
        self.token = token or secrets.token_hex(3)
        if not re.fullmatch(r"[0-9a-f]{6}", self.token):
            raise ValueError("token must be 6 lowercase hex digits")
        self.switch_netns = f"dyl{self.token}-sw"
        self.bridge = f"dyb{self.token}"
        self._names = names
        self.subnet: ipaddress.IPv4Network | None = None
        self.members: dict[str, Member] = {}
        self.observer_address = ""
        self._created_netns: list[str] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        self._cuts: set[tuple[str, str]] = set()
        self._closed = False

    # ------------------------------------------------------------------ setup and teardown
    def __enter__(self) -> Lab:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        if os.geteuid() != 0:
            raise NetnsError("network namespaces need root: run the cluster tests as root")
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        self.subnet = pick_subnet()
        hosts = list(self.subnet.hosts())
        self.observer_address = str(hosts[0])
        sw = self.switch_netns
        self._add_netns(sw)
        _run([IP, "-n", sw, "link", "set", "lo", "up"])
        _run([IP, "-n", sw, "link", "add", self.bridge, "type", "bridge"])
        _run([IP, "-n", sw, "addr", "add", f"{self.observer_address}/24", "dev", self.bridge])
        _run([IP, "-n", sw, "link", "set", self.bridge, "up"])
        for index, name in enumerate(self._names):
            member = Member(
                name=name,
                index=index,
                netns=f"dyl{self.token}-{name}",
                address=str(hosts[MEMBER_HOST_OFFSET - 1 + index]),
                switch_port=f"dyv{self.token}{index}",
            )
            self._add_netns(member.netns)
            ns = member.netns
            # Created in the switch namespace with its peer directly in the member's: the
            # host's namespace never sees either end.
            _run([IP, "-n", sw, "link", "add", member.switch_port, "type", "veth",
                  "peer", "name", "eth0", "netns", ns])  # fmt: skip
            _run([IP, "-n", sw, "link", "set", member.switch_port, "master", self.bridge, "up"])
            _run([IP, "-n", ns, "link", "set", "lo", "up"])
            _run([IP, "-n", ns, "addr", "add", f"{member.address}/24", "dev", "eth0"])
            _run([IP, "-n", ns, "link", "set", "eth0", "up"])
            self.members[name] = member

    def _add_netns(self, name: str) -> None:
        self._created_netns.append(name)  # before creation: a half-made one is removed too
        _run([IP, "netns", "add", name])

    def close(self) -> None:
        """Remove everything the lab made; safe to call again and after a failed setup."""
        if self._closed:
            return
        errors: list[str] = []
        for process in self._processes:
            try:
                self._kill_and_reap(process)
            except subprocess.TimeoutExpired:
                errors.append(f"pid {process.pid} survived SIGKILL")
        for ns in self._created_netns:
            if (NETNS_DIR / ns).exists():
                # Anything still inside (a daemon's forked child, a helper started with
                # `run`): by PID, as listed by the kernel for this namespace.
                pids = _run([IP, "netns", "pids", ns], check=False).stdout.split()
                for pid in (int(p) for p in pids):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    if not wait_pid_gone(pid, PROCESS_EXIT_TIMEOUT_S):
                        errors.append(f"pid {pid} in {ns} survived SIGKILL")
        try:
            self.heal()
        except NetnsError as e:
            errors.append(str(e))
        # Members first (each takes its veth pair with it), the switch and its bridge last.
        for ns in reversed(self._created_netns):
            if (NETNS_DIR / ns).exists():
                result = _run([IP, "netns", "del", ns], check=False)
                if result.returncode != 0:
                    errors.append(f"ip netns del {ns}: {result.stderr.strip()}")
        self._closed = True
        if errors:
            raise NetnsError("lab teardown incomplete: " + "; ".join(errors))

    # ------------------------------------------------------------------ addresses
    def address(self, name: str) -> str:
        return self.observer_address if name == OBSERVER else self.members[name].address

    def netns_of(self, name: str) -> str:
        return self.switch_netns if name == OBSERVER else self.members[name].netns

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.members)

    # ------------------------------------------------------------------ being inside
    @contextlib.contextmanager
    def inside(self, name: str) -> Iterator[None]:
        """Run the calling thread in a lab namespace (`OBSERVER` or a member) for the block."""
        if self._closed:
            raise NetnsError("the lab is closed")
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(NETNS_DIR / self.netns_of(name), os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield
            finally:
                _setns(original)
        finally:
            os.close(original)

    def observe(self) -> contextlib.AbstractContextManager[None]:
        """Be the client: the calling thread joins the switch namespace (reaches every member)."""
        return self.inside(OBSERVER)

    # ------------------------------------------------------------------ processes
    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start argv inside a member namespace; tracked and killed by PID at close()."""
        if self._closed:
            raise NetnsError("the lab is closed")
        out: IO[bytes] | int = subprocess.DEVNULL
        if log_path is not None:
            out = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            process = subprocess.Popen(
                [IP, "netns", "exec", self.netns_of(name), *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        finally:
            if not isinstance(out, int):
                out.close()
        self._processes.append(process)
        return process

    def run(
        self, name: str, argv: Sequence[str], check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command inside a namespace and wait for it."""
        return _run([IP, "netns", "exec", self.netns_of(name), *argv], check=check)

    @staticmethod
    def kill9(process: subprocess.Popen[bytes]) -> None:
        """kill -9 by PID, and reap it (its ports are free when this returns)."""
        Lab._kill_and_reap(process)

    @staticmethod
    def pause(process: subprocess.Popen[bytes]) -> None:
        """SIGSTOP: the process keeps its sockets but answers nothing."""
        if process.poll() is None:
            os.kill(process.pid, signal.SIGSTOP)

    @staticmethod
    def resume(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)

    @staticmethod
    def terminate(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> int:
        """SIGTERM (after SIGCONT, in case it is paused), SIGKILL if it does not exit in time."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                Lab._kill_and_reap(process)
        return int(process.returncode)

    @staticmethod
    def _kill_and_reap(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)  # works on a stopped process too
        process.wait(timeout=PROCESS_EXIT_TIMEOUT_S)

    # ------------------------------------------------------------------ faults
    @property
    def cuts(self) -> frozenset[tuple[str, str]]:
        """The (src, dst) pairs whose packets are currently dropped."""
        return frozenset(self._cuts)

    def drop(self, src: str, dst: str) -> None:
        """One way: every packet src sends to dst is lost; dst to src still flows."""
        if src == dst:
            raise ValueError("a member cannot be cut from itself")
        if (src, dst) in self._cuts:
            return
        self._iptables(dst, "-I", self.address(src))
        self._cuts.add((src, dst))

    def undrop(self, src: str, dst: str) -> None:
        if (src, dst) not in self._cuts:
            return
        self._iptables(dst, "-D", self.address(src))
        self._cuts.discard((src, dst))

    def partition(self, a: str, b: str, one_way: bool = False) -> None:
        """Cut a from b; both ways unless one_way (then only a's packets to b are lost)."""
        self.drop(a, b)
        if not one_way:
            self.drop(b, a)

    def split(self, side_a: Iterable[str], side_b: Iterable[str]) -> None:
        """Cut every member of side_a from every member of side_b, both ways.

        A member on both sides keeps both: `split([a, b, c], [c, d, e])` is a bridge partition
        where c alone sees everyone.
        """
        set_a, set_b = set(side_a), set(side_b)
        for x in sorted(set_a - set_b):
            for y in sorted(set_b - set_a):
                self.partition(x, y)

    def isolate(self, name: str) -> None:
        """Cut one member from every other member (clients on the observer still reach it)."""
        self.split([name], [m for m in self.members if m != name])

    def heal(self) -> None:
        for src, dst in sorted(self._cuts):
            self.undrop(src, dst)

    def _iptables(self, dst: str, op: str, src_address: str) -> None:
        ns = self.netns_of(dst)
        if not (NETNS_DIR / ns).exists():
            return  # the namespace (and its rules) is already gone
        _run([IP, "netns", "exec", ns, IPTABLES, "-w", op, "INPUT",
              "-s", src_address, "-j", "DROP"])  # fmt: skip


# ---------------------------------------------------------------------- leak checks
@dataclass(frozen=True)
class HostSnapshot:
    """What a lab could leave on the host: links, named namespaces, netns mounts, iptables."""

    links: frozenset[str]
    netns: frozenset[str]
    mounts: frozenset[str]
    iptables: tuple[str, ...]


def host_snapshot() -> HostSnapshot:
    links = _run([IP, "-o", "link", "show"]).stdout
    link_names = frozenset(
        m.group(1).split("@")[0] for m in re.finditer(r"^\d+: ([^:]+):", links, re.MULTILINE)
    )
    netns = frozenset(line.split()[0] for line in _run([IP, "netns", "list"]).stdout.splitlines())
    mounts = frozenset(
        fields[4]
        for fields in (
            line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines()
        )
        if fields[4].startswith(str(NETNS_DIR))
    )
    rules = tuple(
        re.sub(r"\[\d+:\d+\]", "", line)
        for line in _run([IPTABLES_SAVE]).stdout.splitlines()
        if not line.startswith("#")
    )
    return HostSnapshot(link_names, netns, mounts, rules)


def leaks(before: HostSnapshot, after: HostSnapshot) -> list[str]:
    """What a lab left behind between two snapshots.

    Links, namespaces and mounts added since `before` count when they carry a lab name (other
    suites may create their own meanwhile); the host's iptables must be exactly as before (labs
    never touch it).
    """
    found: list[str] = []
    for kind, old, new in (
        ("link", before.links, after.links),
        ("netns", before.netns, after.netns),
        ("mount", before.mounts, after.mounts),
    ):
        found += [f"{kind} {x}" for x in sorted(new - old) if LAB_NAME_RE.search(x)]
    if before.iptables != after.iptables:
        found.append(
            "host iptables changed: " + repr(sorted(set(after.iptables) ^ set(before.iptables)))
        )
    return found
