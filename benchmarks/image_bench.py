"""Benchmark dockyard's image paths against the reference dockerd 20.10, on one machine.

One command starts both daemons through ``tests/support/dockerd.py`` and runs each row on
both, alternating runs so that noise falls on both columns, then prints one table (row,
dockerd, dockyard, ratio dockyard/dockerd; lower is better). ``--json`` records every
sample. ``--only ROW`` (repeatable) runs some rows; a row that fails on an engine (a
feature it lacks) is reported as not measurable with the error, and the other rows go on.

The image (made offline, once per run, not timed): ``debian:bookworm`` from dockyard's
``image bootstrap debian`` rootfs (121 MB, about 6,600 files, cached under ``--cache``),
``docker import``ed into dockerd with Docker Hub's Cmd and PATH, plus one layer built on
dockerd (``COPY payload``) of 40 MiB incompressible (4 random 10 MiB files) and 40 MiB
compressible (400 text files of 100 KiB): about 200 MB. ``docker save bench/image:1
debian:bookworm`` on dockerd writes the archive both engines load.

Rows:
- load: ``docker load -i archive.tar`` wall time, from a state with neither image nor any
  of their layers (both are removed before every run).
- build cold / cached: a 10-step Dockerfile (FROM, ENV, WORKDIR, COPY, RUN, RUN, COPY, RUN,
  LABEL, CMD) on the loaded ``debian:bookworm``, ``DOCKER_BUILDKIT=0 docker build
  --network none``: ``--no-cache`` first (cold), then the same build again (every step
  cached). The built images are removed after each run.
- push / pull: a Debian ``docker-registry`` on loopback, a fresh one (empty storage, new
  port) per run, so no blob is already there or mountable: ``docker push`` of the loaded
  image, then every local image and layer of it removed, then ``docker pull``; wall time of
  each. The pulled image must have the pushed image's ID.

Both daemons keep their data roots on one fresh ext4 filesystem with a journal, made for the
run on a sparse loop file (``--data-fs host``: under /tmp instead); see ``data_filesystem``
for why. The archive and the build context stay under /tmp.

Rules (as ``engine_bench.py``): every process is started and stopped by PID, also on
Ctrl-C, and the loop filesystem unmounted and removed; the run fails if anything had to be
removed by force; nothing is pinned. Runs alternate, the order flipping every rep.

Usage::

    .venv/bin/python benchmarks/image_bench.py [--quick] [--only load|build|push-pull]...
        [--reps N] [--cache DIR] [--data-fs loop|host] [--json F]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.support.dockerd import (  # noqa: E402 - needs the repo root on sys.path
    DaemonProcess,
    run_docker_cli,
    start_dockerd,
    start_dockyard_daemon,
)

ROWS = ("load", "build", "push-pull")
IMAGE = "bench/image:1"
BASE = "debian:bookworm"
BUILT = "bench/built:1"
DEBIAN_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CACHE = Path("/var/tmp/dockyard-image-bench")
COMMAND_TIMEOUT_S = 900.0
MIB = 1 << 20
DATA_FS_GIB = 16  # sparse: only what the daemons write takes space
RANDOM_FILES, RANDOM_FILE_BYTES = 4, 10 * MIB
TEXT_FILES, TEXT_FILE_BYTES = 400, 100 * 1024
PAYLOAD_SEED = 20261129
# Ten steps, FROM included; RUN steps need a container, COPY steps the build context.
DOCKERFILE = f"""\
FROM {BASE}
ENV APP_HOME=/srv/app
WORKDIR /srv/app
COPY src/ /srv/app/src/
RUN useradd --create-home --shell /bin/bash app
RUN mkdir -p /srv/app/data && printf '%s\\n' alpha beta gamma > /srv/app/data/list
COPY app.conf /etc/app.conf
RUN cat /srv/app/src/*.txt | sha256sum > /srv/app/data/checksum && chown -R app /srv/app
LABEL org.example.bench="image_bench"
CMD ["bash", "-c", "cat /srv/app/data/checksum"]
"""


class BenchError(Exception):
    pass


def docker(
    daemon: DaemonProcess, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The docker CLI against `daemon`; BenchError (with its stderr) on a non-zero exit."""
    result = run_docker_cli(args, env={**daemon.env, **(env or {})}, timeout_s=COMMAND_TIMEOUT_S)
    if result.returncode != 0:
        raise BenchError(f"{daemon.kind}: docker {' '.join(args)}: {result.stderr.strip()}")
    return result


def timed_s(daemon: DaemonProcess, *args: str, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    docker(daemon, *args, env=env)
    return time.perf_counter() - started


def image_id(daemon: DaemonProcess, ref: str) -> str:
    return docker(daemon, "image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def remove_images(daemon: DaemonProcess, *refs: str) -> None:
    """Remove `refs` (those present) and dangling images; only busybox may be left."""
    present = [
        r for r in refs if run_docker_cli(["image", "inspect", r], env=daemon.env).returncode == 0
    ]
    if present:
        docker(daemon, "rmi", "-f", *present)
    docker(daemon, "image", "prune", "-f")
    left = docker(daemon, "images", "-a", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    if set(left) - {"busybox:latest"}:
        raise BenchError(f"{daemon.kind}: images left after removal: {left}")


# ---------------------------------------------------------------------------
# The image and the build context (made once, not timed)


def debian_rootfs(cache: Path) -> Path:
    """The bootstrap rootfs of debian:bookworm (mmdebstrap once; then from `cache`)."""
    from dockyard.engine.images.bootstrap_debian import bootstrap_debian, recipe_for
    from dockyard.engine.images.store import ImageStore

    done = bootstrap_debian(
        ImageStore(cache / "root" / "images"),
        cache / "root" / "cache" / "bootstrap" / "debian",
        recipe_for("bookworm"),
        progress=lambda message: print(message, file=sys.stderr),
    )
    if done.rootfs_path is None:
        raise BenchError(f"no cached rootfs under {cache}: remove it and run again")
    return done.rootfs_path


def write_payload(directory: Path) -> int:
    """40 MiB incompressible + 40 MiB compressible files, the same bytes every run."""
    rng = random.Random(PAYLOAD_SEED)
    words = [f"{rng.choice(['log', 'user', 'item', 'event'])}-{n}" for n in range(512)]
    total = 0
    (directory / "random").mkdir(parents=True)
    (directory / "text").mkdir()
    for n in range(RANDOM_FILES):
        data = rng.randbytes(RANDOM_FILE_BYTES)
        (directory / "random" / f"blob{n:02}.bin").write_bytes(data)
        total += len(data)
    for n in range(TEXT_FILES):
        lines: list[str] = []
        size = 0
        while size < TEXT_FILE_BYTES:
            line = f"{n:04} {' '.join(rng.choices(words, k=12))}\n"
            lines.append(line)
            size += len(line)
        text = "".join(lines).encode()[:TEXT_FILE_BYTES]
        (directory / "text" / f"part{n:04}.txt").write_bytes(text)
        total += len(text)
    return total


def make_archive(dockerd: DaemonProcess, rootfs: Path, work: Path) -> Path:
    """`docker save` of bench/image:1 and its base, built on dockerd."""
    with open(rootfs, "rb") as tar:
        result = subprocess.run(
            [
                "/usr/local/bin/docker",
                "import",
                "--change",
                'CMD ["bash"]',
                "--change",
                f"ENV {DEBIAN_PATH_ENV}",
                "-",
                BASE,
            ],
            stdin=tar,
            env=dockerd.env,
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    if result.returncode != 0:
        raise BenchError(f"docker import on dockerd: {result.stderr.decode(errors='replace')}")
    context = work / "image-context"
    write_payload(context / "payload")
    (context / "Dockerfile").write_text(f"FROM {BASE}\nCOPY payload /payload\n")
    docker(
        dockerd,
        "build",
        "--network",
        "none",
        "-t",
        IMAGE,
        str(context),
        env={"DOCKER_BUILDKIT": "0"},
    )
    shutil.rmtree(context)
    archive = work / "image.tar"
    docker(dockerd, "save", "-o", str(archive), IMAGE, BASE)
    return archive


def write_build_context(directory: Path) -> None:
    (directory / "src").mkdir(parents=True)
    for n in range(20):
        (directory / "src" / f"module{n:02}.txt").write_text(f"module {n}\n" * 200)
    (directory / "app.conf").write_text("listen = 8080\nworkers = 2\n")
    (directory / "Dockerfile").write_text(DOCKERFILE)


# ---------------------------------------------------------------------------
# Rows


def load_s(daemon: DaemonProcess, archive: Path) -> float:
    remove_images(daemon, IMAGE, BASE)
    elapsed = timed_s(daemon, "load", "-i", str(archive))
    if not image_id(daemon, IMAGE) or not image_id(daemon, BASE):
        raise BenchError(f"{daemon.kind}: docker load did not create {IMAGE} and {BASE}")
    return elapsed


def ensure_loaded(daemon: DaemonProcess, archive: Path) -> None:
    if run_docker_cli(["image", "inspect", IMAGE, BASE], env=daemon.env).returncode != 0:
        docker(daemon, "load", "-i", str(archive))


def build_s(daemon: DaemonProcess, context: Path) -> tuple[float, float]:
    """(cold, cached) wall times of the legacy builder, the built images removed after."""
    env = {"DOCKER_BUILDKIT": "0"}
    args = ("build", "--network", "none", "-t", BUILT, str(context))
    try:
        cold = timed_s(daemon, "build", "--no-cache", *args[1:], env=env)
        first = image_id(daemon, BUILT)
        cached = timed_s(daemon, *args, env=env)
        if image_id(daemon, BUILT) != first:
            raise BenchError(f"{daemon.kind}: the cached build made a different image")
        output = docker(daemon, "run", "--rm", "--network", "none", BUILT).stdout
        if len(output.split()[0]) != 64:
            raise BenchError(f"{daemon.kind}: the built image's CMD printed {output!r}")
    finally:
        if run_docker_cli(["image", "inspect", BUILT], env=daemon.env).returncode == 0:
            docker(daemon, "rmi", "-f", BUILT)
        docker(daemon, "image", "prune", "-f")
    return cold, cached


@contextlib.contextmanager
def fresh_registry(base: Path) -> Iterator[Any]:
    """A docker-registry with empty storage on a new loopback port (a RegistryProcess)."""
    from tests.support.registry import running_registry

    directory = Path(tempfile.mkdtemp(prefix="registry-", dir=base))
    try:
        with running_registry(directory) as registry:
            yield registry
    finally:
        shutil.rmtree(directory, ignore_errors=True)


MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json,"
    "application/vnd.oci.image.manifest.v1+json"
)


def push_pull_s(
    daemon: DaemonProcess, archive: Path, base: Path, rep: int, failures: dict[str, str]
) -> tuple[float, float | None]:
    """(push, pull) wall times; pull None (and the reason in `failures`) if it failed."""
    ensure_loaded(daemon, archive)
    pushed_id = image_id(daemon, IMAGE)
    with fresh_registry(base) as registry:
        repository, tag = f"bench/{daemon.kind}", str(rep)
        ref = f"{registry.host}/{repository}:{tag}"
        docker(daemon, "tag", IMAGE, ref)
        push = timed_s(daemon, "push", ref)
        status, _, _ = registry.request(
            "HEAD", f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}
        )
        if status != 200:
            raise BenchError(f"{daemon.kind}: after docker push the registry answers {status}")
        # Nothing of the image may stay: the pull must download and extract every layer.
        remove_images(daemon, ref, IMAGE, BASE)
        try:
            pull: float | None = timed_s(daemon, "pull", ref)
            if image_id(daemon, ref) != pushed_id:
                raise BenchError(f"{daemon.kind}: pulled {image_id(daemon, ref)}, not {pushed_id}")
        except BenchError as exc:
            failures[f"pull on {daemon.kind}"] = str(exc)[:500]
            pull = None
        remove_images(daemon, ref)
    return push, pull


@contextlib.contextmanager
def data_filesystem(base: Path, kind: str) -> Iterator[Path]:
    """Where both daemons keep their data roots: a fresh ext4 with a journal, or /tmp.

    This machine's root ext4 has no journal, and without one ext4 skips inodes deleted in
    the last minutes when it allocates (fs/ext4/ialloc.c, recently_deleted): after a
    `docker rmi` of 13,000 files every file creation scans them, 0.6-0.8 ms instead of
    0.06 ms, for minutes, and GNU tar takes 5.5 s instead of 0.3 s on the debian rootfs.
    A journaled filesystem made for the run has no such history.
    """
    if kind == "host":
        yield base
        return
    image = base / "data.ext4"
    mount_point = base / "data"
    mount_point.mkdir()
    subprocess.run(["truncate", "-s", f"{DATA_FS_GIB}G", str(image)], check=True)
    try:
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mount_point)], check=True)
        try:
            yield mount_point
        finally:
            if subprocess.run(["umount", str(mount_point)], check=False).returncode:
                subprocess.run(["umount", "-l", str(mount_point)], check=False)
    finally:
        image.unlink()


def measure_row(
    daemons: Sequence[DaemonProcess],
    reps: int,
    measure: Callable[[DaemonProcess, int], Any],
    failures: dict[str, str],
    row: str,
) -> dict[str, list[Any]]:
    """Samples per engine; an engine whose run fails is dropped from the row, and says why.

    Runs alternate, and the order flips every rep (ABBA), so that drift over the row falls
    on both engines alike.
    """
    working = list(daemons)
    samples: dict[str, list[Any]] = {}
    for rep in range(reps):
        for daemon in list(working if rep % 2 == 0 else reversed(working)):
            try:
                samples.setdefault(daemon.kind, []).append(measure(daemon, rep))
            except BenchError as exc:
                failures[f"{row} on {daemon.kind}"] = str(exc)[:500]
                working.remove(daemon)
                samples.pop(daemon.kind, None)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--only", action="append", choices=ROWS, help="repeatable")
    parser.add_argument("--quick", action="store_true", help="one run per row")
    parser.add_argument("--reps", type=int, help="runs per row and engine (default 3)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="debian rootfs cache")
    parser.add_argument("--json", type=Path, help="write every sample here")
    parser.add_argument(
        "--data-fs",
        choices=("loop", "host"),
        default="loop",
        help="data roots on a fresh journaled ext4 loop filesystem (default) or under /tmp",
    )
    args = parser.parse_args()
    rows_wanted = args.only or list(ROWS)
    reps = args.reps or (1 if args.quick else 3)

    base = Path(tempfile.mkdtemp(prefix="image-bench-"))
    daemons: list[DaemonProcess] = []
    leaks: list[str] = []
    failures: dict[str, str] = {}
    rows: list[tuple[str, dict[str, float]]] = []
    report: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "reps": reps,
        "rows_wanted": rows_wanted,
        "data_fs": args.data_fs,
    }
    samples_s: dict[str, Any] = {}
    stack = contextlib.ExitStack()
    try:
        rootfs = debian_rootfs(args.cache)
        data = stack.enter_context(data_filesystem(base, args.data_fs))
        dockerd = start_dockerd(data)
        daemons.append(dockerd)
        daemons.append(start_dockyard_daemon(data))
        archive = make_archive(dockerd, rootfs, base)
        report["archive_bytes"] = archive.stat().st_size
        report["image_ids"] = {IMAGE: image_id(dockerd, IMAGE), BASE: image_id(dockerd, BASE)}
        print(f"archive: {archive.stat().st_size / 1e6:.1f} MB", file=sys.stderr)

        if "load" in rows_wanted:
            load = measure_row(daemons, reps, lambda d, _: load_s(d, archive), failures, "load")
            samples_s["load"] = load
            rows.append(
                ("docker load, 200 MB (s)", {k: statistics.median(v) for k, v in load.items()})
            )
        if "build" in rows_wanted:
            context = base / "build-context"
            write_build_context(context)

            def one_build(daemon: DaemonProcess, _: int) -> tuple[float, float]:
                ensure_loaded(daemon, archive)
                return build_s(daemon, context)

            builds = measure_row(daemons, reps, one_build, failures, "build")
            samples_s["build"] = builds
            for index, label in ((0, "cold"), (1, "cached")):
                rows.append(
                    (
                        f"10-step build, {label} (s)",
                        {k: statistics.median(s[index] for s in v) for k, v in builds.items()},
                    )
                )
        if "push-pull" in rows_wanted:
            transfers = measure_row(
                daemons,
                reps,
                lambda d, rep: push_pull_s(d, archive, base, rep, failures),
                failures,
                "push",
            )
            samples_s["push_pull"] = transfers
            for index, label in ((0, "push"), (1, "pull")):
                times = {
                    k: [s[index] for s in v if s[index] is not None] for k, v in transfers.items()
                }
                rows.append(
                    (
                        f"{label} 200 MB, loopback registry (s)",
                        {k: statistics.median(v) for k, v in times.items() if v},
                    )
                )
        report["samples_s"] = samples_s
        report["rows"] = rows
        report["not_measurable"] = failures
        print(f"{'row':40} {'dockerd':>10} {'dockyard':>10} {'ratio':>7}")
        for label, values in rows:
            ref, ours = values.get("dockerd"), values.get("dockyard")
            ratio = f"{ours / ref:.2f}" if ref and ours is not None else "-"
            cells = [f"{v:10.2f}" if v is not None else f"{'n/a':>10}" for v in (ref, ours)]
            print(f"{label:40} {cells[0]} {cells[1]} {ratio:>7}")
        for where, error in failures.items():
            print(f"not measurable: {where}: {error}")
    finally:
        for daemon in daemons:
            leaks += [f"{daemon.kind}: {leak}" for leak in daemon.stop()]
        stack.close()  # the data filesystem, once the daemons are gone
        report["leaks"] = leaks
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, default=str))
        shutil.rmtree(base, ignore_errors=True)  # the archive, contexts and daemon logs
    if leaks:
        print(f"left behind (now removed): {leaks}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
