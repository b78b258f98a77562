"""The namespace lab itself, and etcd 3.4 as a 3-member cluster inside it.

The harness tests prove reachability, that each fault cuts exactly the named direction, that
heal restores everything, and that teardown leaves the host as it was, also after a failure.
The etcd tests record the reference behaviour our cluster must match: kill -9 of the leader
elects another and the majority keeps writing; a partitioned minority refuses quorum reads
(500, errorCode 300 after etcd's 7 s request timeout) while the majority serves them; after
heal the minority catches up.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.cluster.conftest import NetnsCluster, wait_for
from tests.support.netns import NETNS_DIR, OBSERVER, Lab, NetnsError, host_snapshot, leaks

pytestmark = pytest.mark.integration

PROBE_PORT = 40123
PROBE_TIMEOUT_S = 3.0  # every datagram that may flow arrives well within this
ABSENCE_GRACE_S = 0.3  # a lost datagram cannot be awaited: wait this long after the others


def delivered(lab: Lab) -> set[tuple[str, str]]:
    """Send one UDP datagram along every ordered pair (members and observer); what arrived."""
    nodes = [*lab.names, OBSERVER]
    expected = {(a, b) for a in nodes for b in nodes if a != b} - set(lab.cuts)
    got: set[tuple[str, str]] = set()
    with contextlib.ExitStack() as stack:
        socks: dict[str, socket.socket] = {}
        for n in nodes:
            with lab.inside(n):
                s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            s.bind((lab.address(n), PROBE_PORT))
            s.setblocking(False)
            socks[n] = s
        for a in nodes:
            for b in nodes:
                if a != b:
                    socks[a].sendto(f"{a}>{b}".encode(), (lab.address(b), PROBE_PORT))
        by_fd = {s.fileno(): s for s in socks.values()}
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        grace_end: float | None = None
        while True:
            now = time.monotonic()
            if grace_end is None and expected <= got:
                grace_end = now + ABSENCE_GRACE_S
            end = grace_end if grace_end is not None else deadline
            if now >= end:
                break
            readable, _, _ = select.select(list(by_fd), [], [], end - now)
            for fd in readable:
                with contextlib.suppress(BlockingIOError):
                    while True:
                        data = by_fd[fd].recv(64)
                        src, dst = data.decode().split(">")
                        got.add((src, dst))
    return got


def all_pairs(lab: Lab) -> set[tuple[str, str]]:
    nodes = [*lab.names, OBSERVER]
    return {(a, b) for a in nodes for b in nodes if a != b}


# ---------------------------------------------------------------------- the harness
def test_members_and_observer_reach_each_other(lab: Lab) -> None:
    assert len(set(m.address for m in lab.members.values())) == 3
    assert lab.subnet is not None and lab.subnet.subnet_of(lab.subnet.supernet(new_prefix=16))
    assert delivered(lab) == all_pairs(lab)


def test_one_way_drop_cuts_exactly_that_direction(lab: Lab) -> None:
    lab.partition("n1", "n2", one_way=True)
    assert lab.cuts == {("n1", "n2")}
    assert delivered(lab) == all_pairs(lab) - {("n1", "n2")}
    lab.heal()
    assert lab.cuts == set()
    assert delivered(lab) == all_pairs(lab)


def test_partition_isolate_bridge_and_heal(lab: Lab) -> None:
    lab.partition("n1", "n3")
    assert delivered(lab) == all_pairs(lab) - {("n1", "n3"), ("n3", "n1")}
    lab.heal()
    lab.isolate("n2")
    cut = {("n2", "n1"), ("n1", "n2"), ("n2", "n3"), ("n3", "n2")}
    # Isolation is between members: the observer (the clients) still reaches n2 both ways.
    assert delivered(lab) == all_pairs(lab) - cut
    lab.heal()
    lab.split(["n1", "n2"], ["n2", "n3"])  # a bridge: n2 alone sees both sides
    assert delivered(lab) == all_pairs(lab) - {("n1", "n3"), ("n3", "n1")}
    lab.heal()
    assert delivered(lab) == all_pairs(lab)


def test_five_members_bridge_partition(make_lab: Callable[[int], Lab]) -> None:
    lab = make_lab(5)
    lab.split(["n1", "n2", "n3"], ["n3", "n4", "n5"])  # n3 is the bridge
    cross = {(a, b) for a in ("n1", "n2") for b in ("n4", "n5")}
    assert delivered(lab) == all_pairs(lab) - cross - {(b, a) for a, b in cross}
    lab.heal()
    assert delivered(lab) == all_pairs(lab)


def test_pause_resume_and_kill9_by_pid(lab: Lab) -> None:
    process = lab.spawn("n1", ["sleep", "1000"])
    lab.pause(process)
    wait_for(lambda: _proc_state(process.pid) == "T", 5, "SIGSTOP to take effect")
    lab.resume(process)
    wait_for(lambda: _proc_state(process.pid) in {"S", "R"}, 5, "SIGCONT to take effect")
    lab.kill9(process)
    assert process.returncode == -9


def _proc_state(pid: int) -> str:
    """The state letter from /proc/<pid>/stat; "" if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def test_teardown_leaves_the_host_as_before_even_on_failure(host_guard: None) -> None:
    before = host_snapshot()
    lab = Lab(["a", "b"])
    with pytest.raises(RuntimeError, match="boom"), lab:
        tracked = lab.spawn("a", ["sleep", "1000"])
        paused = lab.spawn("b", ["sleep", "1000"])
        # An untracked orphan: only `ip netns pids` can find it.
        lab.run("b", ["sh", "-c", "sleep 1000 >/dev/null 2>&1 &"])
        # `ip netns exec` joins the namespace just after Popen returns: await it.
        wait_for(lambda: len(_pids_in(lab, "b")) == 2, 5, "both sleeps inside b")
        pids_in_b = _pids_in(lab, "b")
        lab.pause(paused)
        lab.partition("a", "b")
        assert NETNS_DIR.joinpath(lab.switch_netns).exists()
        raise RuntimeError("boom")
    assert tracked.returncode == -9 and paused.returncode == -9
    for pid in pids_in_b:  # dead: gone, or a zombie its (foreign) parent has yet to reap
        assert _proc_state(pid) in {"", "Z"}, pid
    assert not any(NETNS_DIR.joinpath(m.netns).exists() for m in lab.members.values())
    assert not NETNS_DIR.joinpath(lab.switch_netns).exists()
    assert leaks(before, host_snapshot()) == []
    lab.close()  # idempotent
    with pytest.raises(NetnsError), lab.observe():
        pass


def test_a_failed_setup_removes_what_it_made(host_guard: None) -> None:
    before = host_snapshot()
    lab = Lab(["good", "bad/name"])  # `ip netns add` refuses the second namespace
    with pytest.raises(NetnsError, match="netns add"):
        lab.open()
    assert not NETNS_DIR.joinpath(lab.switch_netns).exists()
    assert leaks(before, host_snapshot()) == []


def _pids_in(lab: Lab, name: str) -> list[int]:
    out = subprocess.run(
        ["ip", "netns", "pids", lab.netns_of(name)], capture_output=True, text=True, check=True
    ).stdout
    return [int(p) for p in out.split()]


def test_without_root_the_lab_fails_loudly() -> None:
    """As an unprivileged user (nobody), opening a lab raises NetnsError naming root."""
    # Import as root (the interpreter lives under /root), then drop to nobody, then open.
    code = (
        "import os\n"
        "from tests.support.netns import Lab, NetnsError\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "try:\n    Lab(1).open()\nexcept NetnsError as e:\n    print('refused:', e)\n"
    )
    repo = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo,
        env={"PYTHONPATH": str(repo), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "refused:" in result.stdout and "root" in result.stdout, result.stderr


# ---------------------------------------------------------------------- etcd 3.4 reference
def test_etcd_kill9_leader_elects_new_leader_and_majority_writes(
    etcd_cluster: NetnsCluster,
) -> None:
    c = etcd_cluster
    leader = c.wait_leader()
    assert c.put(leader, "k", "before").status in (200, 201)
    c.kill9(leader)
    survivors = [n for n in c.members if n != leader]
    started = time.monotonic()
    new_leader = c.wait_leader(among=survivors, not_=leader, timeout_s=15)
    elected_after_s = time.monotonic() - started
    assert new_leader in survivors and elected_after_s < 15
    for i, n in enumerate(survivors):
        assert c.put(n, "k", f"after-{i}").status == 200
    for n in survivors:
        r = c.get(n, "k", quorum=True)
        assert (r.status, r.body["node"]["value"]) == (200, "after-1")
    # Restarted with its data, the old leader rejoins and catches up.
    c.start(leader)
    wait_for(
        lambda: c.get(leader, "k").body.get("node", {}).get("value") == "after-1",
        20,
        "the old leader to catch up",
    )


def test_etcd_sigstop_leader_then_sigcont(etcd_cluster: NetnsCluster) -> None:
    c = etcd_cluster
    leader = c.wait_leader()
    c.lab.pause(c.process(leader))
    survivors = [n for n in c.members if n != leader]
    new_leader = c.wait_leader(among=survivors, not_=leader, timeout_s=15)
    assert c.put(new_leader, "k", "while-paused").status in (200, 201)
    c.lab.resume(c.process(leader))
    # The resumed old leader learns the higher term and follows.
    assert c.wait_leader(timeout_s=20) in c.members
    wait_for(
        lambda: c.get(leader, "k").body.get("node", {}).get("value") == "while-paused",
        20,
        "the resumed member to catch up",
    )


@pytest.mark.parametrize("minority_role", ["follower", "leader"])
def test_etcd_partitioned_minority_refuses_quorum_reads(
    etcd_cluster: NetnsCluster, minority_role: str
) -> None:
    c = etcd_cluster
    leader = c.wait_leader()
    assert c.put(leader, "k", "v1").status in (200, 201)
    minority = leader if minority_role == "leader" else next(n for n in c.members if n != leader)
    majority = [n for n in c.members if n != minority]
    c.lab.isolate(minority)
    majority_leader = c.wait_leader(among=majority, not_=minority, timeout_s=15)
    assert c.put(majority_leader, "k", "v2").status == 200
    for n in majority:
        r = c.get(n, "k", quorum=True)
        assert (r.status, r.body["node"]["value"]) == (200, "v2")
    # etcd 3.4: the quorum read waits for its request timeout (5 s + 2 x election timeout)
    # and fails with 500 / errorCode 300 "Raft Internal Error", "etcdserver: request timed out".
    r = c.get(minority, "k", quorum=True, timeout_s=15)
    assert r.status == 500 and r.body["errorCode"] == 300, r
    # A plain GET is served locally, stale; /health says there is no quorum.
    assert c.get(minority, "k").body["node"]["value"] == "v1"
    assert c.request(minority, "GET", "/health").status == 503
    c.lab.heal()
    c.wait_leader(timeout_s=20)
    wait_for(
        lambda: c.get(minority, "k", quorum=True).body.get("node", {}).get("value") == "v2",
        20,
        "the healed minority to catch up",
    )
