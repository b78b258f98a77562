"""Install the reference docker-compose 1.29.2 in its own venv, once, from PyPI only.

Role: give the e2e tests and the compose benchmark the real docker-compose 1.29.2 (the last
Python Compose, the reference issue 7 measures against) without touching the project venv.

Rules:
- Idempotent: the venv lives at a fixed path outside any checkout (`DEFAULT_PREFIX`, under
  /var/tmp so it survives reboots of the tmpfs) and is reused when its completion marker is
  present and `docker-compose version` names 1.29.2. A venv found half-built or broken is
  removed and built again; venvs are not relocatable (their scripts name the interpreter by
  absolute path), so it is built in place, under an exclusive file lock so that concurrent
  test runs on the machine neither race nor see a half-built venv.
- The pins are what 1.29.2 still runs with on Python 3.11: docker-py 6.1.3 (7.x dropped the
  `ssl_version`/`assert_hostname` TLS arguments compose passes), requests < 2.32 (2.32
  broke docker-py < 7.1's `http+docker://` adapter), and PyYAML 5.4.1 (compose requires
  < 6), which has no wheel for 3.11 and whose setup.py breaks with Cython 3: it is built
  from source against `cython<3` with `--no-build-isolation` so pip uses that Cython.
- Failure is loud: `ReferenceComposeError` carries the pip command and its whole output;
  `docker_compose_or_fail()` turns it into `pytest.fail` for tests. Never a skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

COMPOSE_VERSION = "1.29.2"
DEFAULT_PREFIX = Path(f"/var/tmp/dockyard-compose-{COMPOSE_VERSION}")
# Written last: its presence means every step below succeeded.
READY_MARKER = "dockyard-installed"
PIP_TIMEOUT_S = 900.0
VERSION_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 180.0

# (pip arguments, why) in order; each step is one `pip install` in the venv.
INSTALL_STEPS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("setuptools<70", "wheel"),
        # PyYAML is built without build isolation, so its build tools must be in the venv:
        # ensurepip adds no setuptools from 3.12 on, and no wheel at all. Tested with 65.5.
        "the build tools of PyYAML 5.4.1's setup.py, of its era",
    ),
    (("cython<3",), "PyYAML 5.4.1's build does not work with Cython 3"),
    (
        ("--no-build-isolation", "PyYAML==5.4.1"),
        "no 3.11 wheel: built from source with the Cython above",
    ),
    (("docker==6.1.3", "requests<2.32"), "the docker-py and requests 1.29.2 still work with"),
    ((f"docker-compose=={COMPOSE_VERSION}",), "the reference itself"),
)


class ReferenceComposeError(Exception):
    """docker-compose 1.29.2 could not be installed or does not run."""


def compose_executable(prefix: Path = DEFAULT_PREFIX) -> Path:
    return prefix / "bin" / "docker-compose"


def installed_version(prefix: Path = DEFAULT_PREFIX) -> str | None:
    """The version `docker-compose version --short` prints, or None if it does not run."""
    exe = compose_executable(prefix)
    if not exe.exists():
        return None
    try:
        result = subprocess.run(
            [str(exe), "version", "--short"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_S,
            check=False,
            env=compose_env(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _is_ready(prefix: Path) -> bool:
    return (prefix / READY_MARKER).exists() and installed_version(prefix) == COMPOSE_VERSION


@contextlib.contextmanager
def _install_lock(prefix: Path) -> Iterator[None]:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    lock_path = prefix.parent / f".{prefix.name}.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _run_pip(prefix: Path, args: Sequence[str], why: str) -> None:
    argv = [
        str(prefix / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        *args,
    ]
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT_S,
            check=False,
            env=compose_env(),
        )
    except subprocess.TimeoutExpired as exc:
        raise ReferenceComposeError(f"{' '.join(argv)} ({why}) timed out:\n{exc.output}") from exc
    if result.returncode != 0:
        raise ReferenceComposeError(
            f"{' '.join(argv)} ({why}) exited {result.returncode}:\n"
            f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )


def install_docker_compose(prefix: Path = DEFAULT_PREFIX) -> Path:
    """Make sure docker-compose 1.29.2 runs from `prefix`; return its executable.

    Reuses a working install; otherwise (re)builds the venv under the lock.
    """
    if _is_ready(prefix):
        return compose_executable(prefix)
    with _install_lock(prefix):
        if _is_ready(prefix):  # another run finished it while we waited for the lock
            return compose_executable(prefix)
        shutil.rmtree(prefix, ignore_errors=True)
        # The interpreter running the tests (3.11): its venv module makes the new venv from
        # the base installation even when it is itself a venv.
        venv = subprocess.run(
            [sys.executable, "-m", "venv", str(prefix)],
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT_S,
            check=False,
        )
        if venv.returncode != 0:
            raise ReferenceComposeError(f"python -m venv {prefix} failed:\n{venv.stderr}")
        for args, why in INSTALL_STEPS:
            _run_pip(prefix, args, why)
        version = installed_version(prefix)
        if version != COMPOSE_VERSION:
            raise ReferenceComposeError(
                f"{compose_executable(prefix)} version --short printed {version!r}, "
                f"expected {COMPOSE_VERSION}"
            )
        (prefix / READY_MARKER).write_text(f"docker-compose {COMPOSE_VERSION}\n")
    return compose_executable(prefix)


def docker_compose_or_fail(prefix: Path = DEFAULT_PREFIX) -> Path:
    """`install_docker_compose` for tests: an install failure fails the test with pip's
    output (never a skip)."""
    import pytest

    try:
        return install_docker_compose(prefix)
    except ReferenceComposeError as exc:
        pytest.fail(f"cannot install docker-compose {COMPOSE_VERSION}:\n{exc}")


def compose_env(
    docker_host: str | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A minimal environment for docker-compose: nothing from the caller's docker setup
    leaks in (no DOCKER_TLS_VERIFY, COMPOSE_FILE, COMPOSE_PROJECT_NAME from the shell)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
    }
    if docker_host is not None:
        env["DOCKER_HOST"] = docker_host
    env.update(extra or {})
    return env


def run_docker_compose(
    exe: Path,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout_s: float = COMMAND_TIMEOUT_S,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """docker-compose with `args` in `cwd`; never raises on a non-zero exit."""
    return subprocess.run(
        [str(exe), *args],
        env=dict(env),
        cwd=cwd,
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
