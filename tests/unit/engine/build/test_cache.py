"""The classic builder's cache rules (moby image/cache/compare.go) and source checksums."""

from __future__ import annotations

import pytest

from dockyard.engine.images.build.cache import (
    CacheCandidate,
    configs_match,
    dir_hash,
    file_hash,
    pick_cached,
    sources_hash,
)
from dockyard.engine.images.model import ContainerConfig, HealthConfig

pytestmark = pytest.mark.unit

BASE = ContainerConfig(env=("PATH=/bin",), cmd=("/bin/sh", "-c", "#(nop) ", "ENV a=b"))


def test_equal_configs_match() -> None:
    assert configs_match(BASE, ContainerConfig(env=("PATH=/bin",), cmd=BASE.cmd))


@pytest.mark.parametrize(
    "other",
    [
        ContainerConfig(env=("PATH=/bin",), cmd=("/bin/sh", "-c", "echo")),
        ContainerConfig(env=("PATH=/usr/bin",), cmd=BASE.cmd),
        ContainerConfig(env=("PATH=/bin",), cmd=BASE.cmd, user="nobody"),
        ContainerConfig(env=("PATH=/bin",), cmd=BASE.cmd, labels=(("a", "b"),)),
        ContainerConfig(env=("PATH=/bin",), cmd=BASE.cmd, exposed_ports=("80/tcp",)),
        ContainerConfig(env=("PATH=/bin",), cmd=BASE.cmd, entrypoint=("x",)),
        ContainerConfig(env=("PATH=/bin",), cmd=BASE.cmd, volumes=("/v",)),
        ContainerConfig(env=("PATH=/bin",), cmd=BASE.cmd, tty=True),
    ],
)
def test_compared_fields_break_the_match(other: ContainerConfig) -> None:
    assert not configs_match(BASE, other)


def test_fields_docker_does_not_compare_do_not_break_it() -> None:
    # moby's compare ignores WorkingDir, Healthcheck, StopSignal, Shell and OnBuild.
    other = ContainerConfig(
        env=BASE.env,
        cmd=BASE.cmd,
        working_dir="/x",
        healthcheck=HealthConfig(test=("NONE",)),
        stop_signal="SIGKILL",
        shell=("/bin/bash", "-c"),
        on_build=("RUN x",),
    )
    assert configs_match(BASE, other)


def test_open_stdin_never_matches() -> None:
    assert not configs_match(ContainerConfig(open_stdin=True), ContainerConfig(open_stdin=True))


def test_the_newest_match_wins_and_no_match_is_none() -> None:
    candidates = [
        CacheCandidate("sha256:old", "2020-01-01T00:00:00Z", BASE),
        CacheCandidate("sha256:new", "2021-01-01T00:00:00Z", BASE),
        CacheCandidate("sha256:other", "2022-01-01T00:00:00Z", ContainerConfig()),
        CacheCandidate("sha256:none", "2023-01-01T00:00:00Z", None),
    ]
    assert pick_cached(candidates, BASE) == "sha256:new"
    assert pick_cached(candidates[2:], BASE) is None


def test_a_content_change_changes_the_source_hash() -> None:
    one = file_hash("a.txt", 0o644, 0, 0, 5, "c1")
    assert one.startswith("file:")
    assert one != file_hash("a.txt", 0o644, 0, 0, 5, "c2")
    assert one != file_hash("a.txt", 0o755, 0, 0, 5, "c1")
    assert dir_hash([("a", one)]) != dir_hash([("a", file_hash("a", 0o644, 0, 0, 5, "c2"))])
    assert dir_hash([("b", "x"), ("a", "y")]) == dir_hash([("a", "y"), ("b", "x")])


def test_several_sources_hash_as_multi() -> None:
    assert sources_hash(["file:1"]) == "file:1"
    multi = sources_hash(["file:1", "file:2"])
    assert multi.startswith("multi:")
    assert multi != sources_hash(["file:2", "file:1"])
