"""Restart policy decisions (model/restart.py), against moby's restartmanager rules."""

from __future__ import annotations

import pytest

from dockyard.engine.model import restart as rp

ALWAYS = rp.RestartPolicy("always")
UNLESS = rp.RestartPolicy("unless-stopped")


def decide(policy: rp.RestartPolicy, **kw: int | bool) -> rp.RestartDecision:
    args: dict[str, int | bool] = {
        "restart_count": 0,
        "backoff_ms": 0,
        "exit_code": 1,
        "manually_stopped": False,
        "ran_ms": 50,
    }
    args.update(kw)
    return rp.on_exit(policy, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "auto_remove", "expected"),
    [
        (None, False, rp.RestartPolicy("no", 0)),
        ({"Name": "", "MaximumRetryCount": 0}, False, rp.RestartPolicy("no", 0)),
        ({"Name": "on-failure", "MaximumRetryCount": 3}, False, rp.RestartPolicy("on-failure", 3)),
        ({"Name": "always"}, False, ALWAYS),
        ({"Name": "no"}, True, rp.RestartPolicy()),
    ],
)
def test_parse(body: dict[str, object] | None, auto_remove: bool, expected: object) -> None:
    assert rp.parse_policy(body, auto_remove=auto_remove) == expected


@pytest.mark.parametrize(
    ("body", "auto_remove", "message"),
    [
        ({"Name": "sometimes"}, False, "invalid restart policy 'sometimes'"),
        (
            {"Name": "always", "MaximumRetryCount": 2},
            False,
            "maximum retry count cannot be used with restart policy 'always'",
        ),
        ({"Name": "on-failure", "MaximumRetryCount": -1}, False, "cannot be negative"),
        ({"Name": "always"}, True, "can't create 'AutoRemove' container with restart policy"),
    ],
)
def test_parse_refuses(body: dict[str, object], auto_remove: bool, message: str) -> None:
    with pytest.raises(rp.InvalidRestartPolicy, match=message):
        rp.parse_policy(body, auto_remove=auto_remove)


def test_backoff_doubles_from_100_ms_caps_at_a_minute_and_resets_after_10_s() -> None:
    backoff, delays = 0, []
    for _ in range(12):
        decision = decide(ALWAYS, backoff_ms=backoff)
        backoff = decision.backoff_ms
        delays.append(decision.delay_ms)
    assert delays[:4] == [100, 200, 400, 800]
    assert delays[-1] == rp.MAX_BACKOFF_MS and max(delays) == rp.MAX_BACKOFF_MS
    assert decide(ALWAYS, backoff_ms=6400, ran_ms=10_000).delay_ms == 100
    assert decide(ALWAYS, backoff_ms=6400, ran_ms=9_999).delay_ms == 12_800


def test_which_exits_restart() -> None:
    assert not decide(rp.RestartPolicy()).restart
    assert decide(ALWAYS, exit_code=0, manually_stopped=True).restart
    assert decide(UNLESS, exit_code=0).restart
    assert not decide(UNLESS, manually_stopped=True).restart
    on_failure = rp.RestartPolicy("on-failure", 2)
    assert not decide(on_failure, exit_code=0).restart
    assert decide(on_failure, restart_count=1).restart
    assert not decide(on_failure, restart_count=2).restart
    assert decide(rp.RestartPolicy("on-failure", 0), restart_count=1000).restart


def test_at_daemon_start_always_ignores_the_users_stop_and_unless_stopped_does_not() -> None:
    kw = {"restart_count": 0, "exit_code": 137}
    assert rp.at_daemon_start(ALWAYS, manually_stopped=True, **kw)
    assert not rp.at_daemon_start(UNLESS, manually_stopped=True, **kw)
    assert rp.at_daemon_start(UNLESS, manually_stopped=False, **kw)
    assert not rp.at_daemon_start(rp.RestartPolicy(), manually_stopped=False, **kw)
    assert not rp.at_daemon_start(
        rp.RestartPolicy("on-failure", 1), manually_stopped=False, restart_count=1, exit_code=1
    )


@pytest.mark.unit
def test_start_order_puts_link_targets_and_namespace_owners_first() -> None:
    containers = [
        ("web", "/web", ["/db", "cache"]),
        ("sidecar", "/sidecar", ["web"]),
        ("db", "/db", []),
        ("cache", "/cache", ["db", "/gone"]),
    ]
    order = rp.start_order(containers)
    assert sorted(order) == ["cache", "db", "sidecar", "web"]
    for cid, _, wants in containers:
        for dep in wants:
            dep = dep.lstrip("/")
            if dep in order:
                assert order.index(dep) < order.index(cid), (dep, cid)


@pytest.mark.unit
def test_start_order_survives_cycles_and_keeps_the_given_order_otherwise() -> None:
    assert rp.start_order([("a", "/a", ["b"]), ("b", "/b", ["a"])]) == ["b", "a"]
    assert rp.start_order([("x", "/x", []), ("y", "/y", [])]) == ["x", "y"]
