"""`docker build` (classic builder, `DOCKER_BUILDKIT=0`) and the SDK's `images.build`.

One reference dockerd 20.10 and one dockyard daemon per module (`dockerd_and_dockyard`:
the same busybox image in both; stopped by PID at teardown, which fails if anything had
to be removed by force or dockyard logged a traceback). Most scenarios run against
dockyard and check what a user sees: the build output, the result when run, its config
and history, the cache. The differential scenario builds the same Dockerfile on both
daemons and compares `docker history` and the image config. Every build's containers
are gone when it answers, failed builds included: each scenario checks `docker ps -a`.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.support.dockerd import DaemonProcess, dockerd_and_dockyard, run_docker_cli
from tests.support.registry import RegistryProcess

pytestmark = pytest.mark.e2e

BUILD_TIMEOUT_S = 120.0
SDK_TIMEOUT_S = 120

MULTI_STAGE = """\
FROM busybox AS build
RUN echo hello > /out.txt && echo built
FROM busybox
MAINTAINER Jane Doe
ARG GREETING=hi
ENV A=1 B="two words"
WORKDIR /app
COPY --from=build /out.txt ./
COPY hello.txt /app/
LABEL x=y
EXPOSE 8080/tcp
USER 0
HEALTHCHECK --interval=5s --retries=2 CMD true
STOPSIGNAL SIGTERM
SHELL ["/bin/sh", "-c"]
VOLUME /data
ENTRYPOINT ["cat"]
CMD ["/app/out.txt"]
"""


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, ...]]:
    with dockerd_and_dockyard(tmp_path_factory) as started:
        yield started


@pytest.fixture(scope="module")
def dockyard(engines: tuple[DaemonProcess, ...]) -> DaemonProcess:
    return engines[1]


def docker_cli(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return run_docker_cli(
        args, env={**daemon.env, "DOCKER_BUILDKIT": "0"}, timeout_s=BUILD_TIMEOUT_S
    )


def build(daemon: DaemonProcess, context: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return docker_cli(daemon, "build", *args, str(context))


def ok(daemon: DaemonProcess, *args: str) -> str:
    result = docker_cli(daemon, *args)
    assert result.returncode == 0, f"{daemon.kind} {args}: {result.stderr}\n{daemon.log()}"
    return result.stdout


def no_containers(daemon: DaemonProcess) -> None:
    assert ok(daemon, "ps", "-aq") == "", "a build left a container behind"


def context_dir(tmp_path: Path, dockerfile: str, **files: str) -> Path:
    """A context with `dockerfile` and `files` (`__` in a name stands for `/`)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "Dockerfile").write_text(dockerfile)
    for name, content in files.items():
        path = tmp_path / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return tmp_path


def steps(output: str) -> list[str]:
    """The step lines and how each step went (from the cache, in a container)."""
    return re.findall(
        r"^Step \d+/\d+ : .*$| ---> Using cache| ---> Running in|^Removing intermediate",
        output,
        re.M,
    )


def image_config(daemon: DaemonProcess, ref: str) -> dict[str, Any]:
    inspected: dict[str, Any] = json.loads(ok(daemon, "image", "inspect", ref))[0]
    return inspected


def history(daemon: DaemonProcess, ref: str) -> list[str]:
    return ok(daemon, "history", "--no-trunc", "--format", "{{.CreatedBy}}", ref).splitlines()


def test_multi_stage_build_runs_and_has_the_instructions_config(
    dockyard: DaemonProcess, tmp_path: Path
) -> None:
    context = context_dir(tmp_path, MULTI_STAGE, **{"hello.txt": "hello-file\n"})
    result = build(dockyard, context, "-t", "e2e/multi:1", "-t", "e2e/multi:latest")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Step 1/18 : FROM busybox AS build" in out
    assert " ---> Running in " in out and "\nbuilt\n" in out
    assert "Removing intermediate container" in out
    image_id = re.search(r"Successfully built ([0-9a-f]{12})", out)
    assert image_id is not None
    assert "Successfully tagged e2e/multi:1" in out
    assert "Successfully tagged e2e/multi:latest" in out
    assert ok(dockyard, "run", "--rm", "e2e/multi:1") == "hello\n"
    assert ok(dockyard, "run", "--rm", "e2e/multi:1", "/app/hello.txt") == "hello-file\n"

    config = image_config(dockyard, "e2e/multi:1")
    assert config["Id"].startswith("sha256:" + image_id.group(1))
    assert config["Author"] == "Jane Doe"
    c = config["Config"]
    assert c["Env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "A=1",
        "B=two words",
    ]
    assert (c["WorkingDir"], c["User"], c["StopSignal"]) == ("/app", "0", "SIGTERM")
    assert (c["Entrypoint"], c["Cmd"]) == (["cat"], ["/app/out.txt"])
    assert c["Labels"] == {"x": "y"}
    assert c["ExposedPorts"] == {"8080/tcp": {}}
    assert c["Volumes"] == {"/data": {}}
    assert c["Shell"] == ["/bin/sh", "-c"]
    assert c["Healthcheck"] == {
        "Test": ["CMD-SHELL", "true"],
        "Interval": 5_000_000_000,
        "Retries": 2,
    }
    created_by = history(dockyard, "e2e/multi:1")
    assert created_by[0] == '/bin/sh -c #(nop)  CMD ["/app/out.txt"]'
    assert "/bin/sh -c #(nop)  ENV A=1 B=two words" in created_by
    assert "/bin/sh -c #(nop) WORKDIR /app" in created_by
    assert any(
        re.fullmatch(r"/bin/sh -c #\(nop\) COPY file:[0-9a-f]{64} in \./ ", c) for c in created_by
    )
    no_containers(dockyard)


def test_rebuild_uses_the_cache_and_a_changed_file_rebuilds_from_its_step(
    dockyard: DaemonProcess, tmp_path: Path
) -> None:
    dockerfile = (
        "FROM busybox\nRUN echo one > /one\nCOPY a.txt /a.txt\nRUN cat /a.txt /one\nENV X=1\n"
    )
    context = context_dir(tmp_path, dockerfile, **{"a.txt": "v1\n"})
    first = build(dockyard, context, "-t", "e2e/cache")
    assert first.returncode == 0, first.stderr
    again = build(dockyard, context, "-t", "e2e/cache")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count(" ---> Using cache") == 4
    assert " ---> Running in" not in again.stdout
    assert first.stdout.splitlines()[-1] == again.stdout.splitlines()[-1]  # same tag line

    (context / "a.txt").write_text("v2\n")
    changed = build(dockyard, context, "-t", "e2e/cache")
    assert changed.returncode == 0, changed.stderr
    assert steps(changed.stdout) == [
        "Step 1/5 : FROM busybox",
        "Step 2/5 : RUN echo one > /one",
        " ---> Using cache",
        "Step 3/5 : COPY a.txt /a.txt",
        "Step 4/5 : RUN cat /a.txt /one",
        " ---> Running in",
        "Removing intermediate",
        "Step 5/5 : ENV X=1",
        " ---> Running in",
        "Removing intermediate",
    ]
    assert "v2\none\n" in changed.stdout

    fresh = build(dockyard, context, "--no-cache", "-t", "e2e/cache")
    assert fresh.returncode == 0, fresh.stderr
    assert "Using cache" not in fresh.stdout
    assert fresh.stdout.count(" ---> Running in") == 3  # both RUNs and the ENV
    no_containers(dockyard)


def test_target_stops_at_the_named_stage(dockyard: DaemonProcess, tmp_path: Path) -> None:
    dockerfile = "FROM busybox AS first\nRUN echo first > /f\nFROM busybox\nRUN echo second\n"
    context = context_dir(tmp_path, dockerfile)
    result = build(dockyard, context, "--target", "first", "-t", "e2e/target")
    assert result.returncode == 0, result.stderr
    assert "Step 2/2 : RUN echo first > /f" in result.stdout
    assert "second" not in result.stdout
    assert ok(dockyard, "run", "--rm", "e2e/target", "cat", "/f") == "first\n"


def test_dockerignore_patterns_and_exceptions(dockyard: DaemonProcess, tmp_path: Path) -> None:
    context = context_dir(
        tmp_path,
        "FROM busybox\nCOPY . /ctx/\nRUN cd /ctx && find . | sort\n",
        **{
            ".dockerignore": "*.log\n!keep.log\nsub/**\n**/*.tmp\nDockerfile\n",
            "a.log": "",
            "keep.log": "",
            "b.txt": "",
            "sub__deep__x": "",
            "other__y.tmp": "",
            "other__z.txt": "",
        },
    )
    result = build(dockyard, context)
    assert result.returncode == 0, result.stderr
    listing = re.findall(r"^\./.*$|^\.$", result.stdout, re.M)
    assert listing == [
        ".",
        "./.dockerignore",
        "./b.txt",
        "./keep.log",
        "./other",
        "./other/z.txt",
        "./sub",
    ]


def test_onbuild_triggers_run_in_the_child_build(dockyard: DaemonProcess, tmp_path: Path) -> None:
    parent = context_dir(tmp_path / "parent", "FROM busybox\nONBUILD RUN echo triggered > /t\n")
    assert build(dockyard, parent, "-t", "e2e/onbuild-base").returncode == 0
    child = context_dir(tmp_path / "child", "FROM e2e/onbuild-base\nRUN cat /t\n")
    result = build(dockyard, child, "-t", "e2e/onbuild-child")
    assert result.returncode == 0, result.stderr
    assert "# Executing 1 build trigger\n" in result.stdout
    assert "triggered\n" in result.stdout
    config = image_config(dockyard, "e2e/onbuild-child")["Config"]
    assert config["OnBuild"] is None  # triggers are consumed, not inherited


def test_dockerfile_elsewhere_build_args_and_global_args(
    dockyard: DaemonProcess, tmp_path: Path
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "docker").mkdir()
    (context / "docker" / "App.dockerfile").write_text(
        'ARG BASE=busybox\nFROM $BASE\nARG V=1\nARG W=${V}-w\nRUN echo "v=$V w=$W"\n'
    )
    result = build(
        dockyard,
        context,
        "-f",
        str(context / "docker" / "App.dockerfile"),
        "--build-arg",
        "V=7",
        "--build-arg",
        "UNUSED=1",
        "--label",
        "from=cli",
        "-t",
        "e2e/args",
    )
    assert result.returncode == 0, result.stderr
    assert "Step 1/6 : ARG BASE=busybox" in result.stdout
    assert "v=7 w=7-w\n" in result.stdout
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in result.stdout
    assert image_config(dockyard, "e2e/args")["Config"]["Labels"] == {"from": "cli"}
    assert '|2 V=7 W=7-w /bin/sh -c echo "v=$V w=$W"' in history(dockyard, "e2e/args")


def test_quiet_prints_only_the_image_id(dockyard: DaemonProcess, tmp_path: Path) -> None:
    context = context_dir(tmp_path, "FROM busybox\nRUN echo noisy\n")
    result = build(dockyard, context, "-q")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", result.stdout)


@pytest.mark.parametrize(
    ("dockerfile", "files", "code", "message"),
    [
        (
            "FROM busybox\nRUN echo out; exit 3\n",
            {},
            3,
            "The command '/bin/sh -c echo out; exit 3' returned a non-zero code: 3",
        ),
        (
            "FROM busybox\nRUN true\nFOO bar\n",
            {},
            1,
            "Error response from daemon: dockerfile parse error line 3: unknown instruction: FOO",
        ),
        (
            "FROM busybox\nCOPY nothere /x\n",
            {},
            1,
            "COPY failed: file not found in build context or excluded by .dockerignore: "
            "stat nothere: file does not exist",
        ),
        (
            "FROM busybox\nCOPY --from=2 /a /b\n",
            {},
            1,
            "invalid from flag value 2: refers to a nonexistent stage",
        ),
        (
            "FROM busybox\nCOPY --chmod=755 a /b\n",
            {"a": ""},
            1,
            "the --chmod option requires BuildKit.",
        ),
        (
            "FROM busybox\nCOPY --bogus=1 a /b\n",
            {"a": ""},
            1,
            "Error response from daemon: dockerfile parse error line 2: Unknown flag: bogus",
        ),
        (
            "FROM busybox\nADD http://example.invalid/x /x\n",
            {},
            1,
            "ADD failed: cannot download http://example.invalid/x",
        ),
        (
            "FROM busybox\nCOPY a b /notadir\n",
            {"a": "", "b": ""},
            1,
            "When using COPY with more than one source file, the destination must be a "
            "directory and end with a /",
        ),
    ],
)
def test_bad_input_gets_dockers_message_and_leaves_no_container(
    dockyard: DaemonProcess,
    tmp_path: Path,
    dockerfile: str,
    files: dict[str, str],
    code: int,
    message: str,
) -> None:
    context = context_dir(tmp_path, dockerfile, **files)
    result = build(dockyard, context)
    assert result.returncode == code, result.stdout + result.stderr
    assert message in result.stderr
    no_containers(dockyard)


def test_unknown_target_is_refused_before_building(dockyard: DaemonProcess, tmp_path: Path) -> None:
    context = context_dir(tmp_path, "FROM busybox\n")
    result = build(dockyard, context, "--target", "nope")
    assert result.returncode == 1
    assert (
        "Error response from daemon: failed to reach build target nope in Dockerfile"
        in result.stderr
    )


def test_sdk_build_streams_and_tags(dockyard: DaemonProcess, tmp_path: Path) -> None:
    context = context_dir(tmp_path, "FROM busybox\nARG MSG\nRUN echo $MSG > /msg\n")
    client = docker.DockerClient(base_url=f"unix://{dockyard.sock}", timeout=SDK_TIMEOUT_S)
    try:
        image, logs = client.images.build(
            path=str(context), tag="e2e/sdk:1", buildargs={"MSG": "from-sdk"}, rm=True
        )
        entries = list(logs)
        lines = [entry.get("stream", "") for entry in entries]
        assert any(line.startswith("Successfully built") for line in lines)
        assert any("aux" in entry for entry in entries)
        assert "e2e/sdk:1" in image.tags
        output = client.containers.run("e2e/sdk:1", ["cat", "/msg"], remove=True)
        assert output == b"from-sdk\n"
        with pytest.raises(docker.errors.BuildError, match="returned a non-zero code: 5"):
            (context / "Dockerfile").write_text("FROM busybox\nRUN exit 5\n")
            client.images.build(path=str(context))
    finally:
        client.close()
    no_containers(dockyard)


def _normalized_history(daemon: DaemonProcess, ref: str) -> list[str]:
    # Source checksums are Docker's tarsum vs dockyard's own: compare their shape.
    return [re.sub(r"file:[0-9a-f]{64}", "file:<sum>", line) for line in history(daemon, ref)]


def test_same_dockerfile_same_history_and_config_as_dockerd(
    engines: tuple[DaemonProcess, ...], tmp_path: Path
) -> None:
    dockerfile = MULTI_STAGE + "RUN echo done > /done\nARG LATE\n"
    results = {}
    for daemon in engines:
        context = context_dir(tmp_path / daemon.kind, dockerfile, **{"hello.txt": "hello\n"})
        result = build(daemon, context, "--no-cache", "-t", "diff/app", "--build-arg", "LATE=x")
        assert result.returncode == 0, f"{daemon.kind}: {result.stderr}"
        config = image_config(daemon, "diff/app")
        # dockerd 20.10 here warns on every container it creates (no IP forwarding).
        output = result.stdout.replace(
            " ---> [Warning] IPv4 forwarding is disabled. Networking will not work.\n", ""
        )
        results[daemon.kind] = (
            steps(output),
            _normalized_history(daemon, "diff/app")[:-1],  # the base image's entry differs
            {k: v for k, v in config["Config"].items() if k not in ("Image", "Hostname")},
            config["Author"],
            len(config["RootFS"]["Layers"]),
        )
    assert results["dockyard"] == results["dockerd"]


def test_copy_chown_wildcards_directories_and_add_archives(
    dockyard: DaemonProcess, tmp_path: Path
) -> None:
    context = context_dir(
        tmp_path,
        "FROM busybox\n"
        "COPY --chown=nobody:nobody d /dest/\n"
        "COPY a*.txt /glob/\n"
        "ADD arch.tgz /x/\n"
        "COPY --chown=1:2 a1.txt /one\n"
        "RUN stat -c '%n %u:%g %a' /dest /dest/sub/f /glob/a1.txt /glob/a2.txt /x/d/g /one\n",
        **{"d__sub__f": "1\n", "d__g": "2\n", "a1.txt": "x\n", "a2.txt": "y\n"},
    )
    subprocess.run(["tar", "czf", "arch.tgz", "d"], cwd=context, check=True)
    result = build(dockyard, context)
    assert result.returncode == 0, result.stderr
    assert re.findall(r"^/\S+ \d+:\d+ \d+$", result.stdout, re.M) == [
        "/dest 65534:65534 755",
        "/dest/sub/f 65534:65534 644",
        "/glob/a1.txt 0:0 644",
        "/glob/a2.txt 0:0 644",
        "/x/d/g 0:0 644",
        "/one 1:2 644",
    ]


def test_dockerfile_from_stdin_and_context_from_stdin(
    dockyard: DaemonProcess, tmp_path: Path
) -> None:
    context = context_dir(tmp_path / "ctx", "FROM scratch\n", **{"f.txt": "in-context\n"})
    env = {**dockyard.env, "DOCKER_BUILDKIT": "0"}
    dockerfile = b"FROM busybox\nCOPY f.txt /\nRUN cat /f.txt\n"
    # `-f -`: the CLI adds the Dockerfile to the context under a random name.
    piped = run_docker_cli(
        ["build", "-f-", str(context)], env=env, input_bytes=dockerfile, timeout_s=BUILD_TIMEOUT_S
    )
    assert piped.returncode == 0, piped.stderr
    assert "in-context\n" in piped.stdout
    # `docker build -` with a tar: the context itself comes on stdin.
    (context / "Dockerfile").write_bytes(dockerfile)
    subprocess.run(["tar", "cf", str(tmp_path / "ctx.tar"), "."], cwd=context, check=True)
    tarred = run_docker_cli(
        ["build", "-"],
        env=env,
        input_bytes=(tmp_path / "ctx.tar").read_bytes(),
        timeout_s=BUILD_TIMEOUT_S,
    )
    assert tarred.returncode == 0, tarred.stderr
    # Same Dockerfile, same file: every step comes from the cache the first build made.
    assert tarred.stdout.count(" ---> Using cache") == 2
    built = re.findall(r"Successfully built (\w+)", piped.stdout + tarred.stdout)
    assert len(built) == 2 and built[0] == built[1]


def test_from_scratch_with_copied_files(dockyard: DaemonProcess, tmp_path: Path) -> None:
    context = context_dir(
        tmp_path, 'FROM scratch\nCOPY data /data/\nCMD ["/nothing"]\n', **{"data__x": "x\n"}
    )
    result = build(dockyard, context, "-t", "e2e/scratch")
    assert result.returncode == 0, result.stderr
    assert "Step 1/3 : FROM scratch\n ---> \n" in result.stdout
    config = image_config(dockyard, "e2e/scratch")
    assert len(config["RootFS"]["Layers"]) == 1
    assert config["Config"]["Env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    ]
    again = build(dockyard, context, "-t", "e2e/scratch")
    assert again.stdout.count(" ---> Using cache") == 2


def test_a_base_image_that_is_not_here_fails_clearly(
    dockyard: DaemonProcess, tmp_path: Path
) -> None:
    # On a closed loopback registry: the pull fails without leaving the machine.
    context = context_dir(tmp_path, "FROM 127.0.0.1:1/not-here:1\n")
    result = build(dockyard, context)
    assert result.returncode == 1
    assert "Step 1/1 : FROM 127.0.0.1:1/not-here:1" in result.stdout
    assert "connection refused" in result.stderr, result.stderr
    no_containers(dockyard)


def test_commit_a_running_container_with_changes(dockyard: DaemonProcess) -> None:
    name = "e2e-commit-src"
    ok(
        dockyard,
        "run",
        "-d",
        "--name",
        name,
        "-e",
        "FROM_RUN=1",
        "busybox",
        "sh",
        "-c",
        "echo committed > /marker && rm /bin/vi && sleep 300",
    )
    try:
        ok(dockyard, "exec", name, "sh", "-c", "test -f /marker")
        image_id = ok(
            dockyard,
            "commit",
            "-m",
            "a message",
            "-a",
            "Jane",
            "-c",
            'CMD ["cat", "/marker"]',
            "-c",
            "ENV ADDED=2",
            name,
            "e2e/committed:v1",
        ).strip()
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", image_id)
        assert ok(dockyard, "inspect", "-f", "{{.State.Running}} {{.State.Paused}}", name) == (
            "true false\n"
        )
    finally:
        ok(dockyard, "rm", "-f", name)
    assert ok(dockyard, "run", "--rm", "e2e/committed:v1") == "committed\n"
    assert (
        ok(
            dockyard,
            "run",
            "--rm",
            "e2e/committed:v1",
            "sh",
            "-c",
            "test ! -e /bin/vi && echo gone",
        )
        == "gone\n"
    )
    config = image_config(dockyard, "e2e/committed:v1")
    assert (config["Comment"], config["Author"]) == ("a message", "Jane")
    assert config["Config"]["Cmd"] == ["cat", "/marker"]
    env = config["Config"]["Env"]
    # The changes apply on top of the container's own config (no config in the request).
    assert env[-1] == "ADDED=2" and "FROM_RUN=1" in env
    assert len(config["RootFS"]["Layers"]) == 2
    top = ok(dockyard, "history", "--format", "{{.Comment}}|{{.CreatedBy}}", "e2e/committed:v1")
    assert top.splitlines()[0].startswith("a message|sh -c echo committed")


def test_exec_form_from_index_and_image_healthcheck_none_and_tag_events(
    dockyard: DaemonProcess, tmp_path: Path
) -> None:
    context = context_dir(
        tmp_path,
        "FROM busybox\n"
        "HEALTHCHECK CMD true\n"
        'RUN ["sh", "-c", "echo exec-form > /f"]\n'
        "FROM busybox\n"
        "COPY --from=0 /f /from-index\n"
        "COPY --from=busybox /bin/busybox /opt/busybox\n"
        "HEALTHCHECK NONE\n"
        "RUN cat /from-index && /opt/busybox true && echo image-ok\n",
    )
    since = str(int(time.time()) - 1)
    result = build(dockyard, context, "-t", "e2e/forms:a", "-t", "e2e/forms:b")
    assert result.returncode == 0, result.stderr
    assert "exec-form\nimage-ok\n" in result.stdout
    assert image_config(dockyard, "e2e/forms:a")["Config"]["Healthcheck"] == {"Test": ["NONE"]}
    assert (
        history(dockyard, "e2e/forms:a")[2]
        == "/bin/sh -c #(nop) COPY file:" + (history(dockyard, "e2e/forms:a")[2].split("file:")[1])
    )
    until = str(int(time.time()) + 1)
    events = ok(
        dockyard,
        "events",
        "--since",
        since,
        "--until",
        until,
        "--filter",
        "type=image",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    )
    assert "tag e2e/forms:a\ntag e2e/forms:b\n" in events


def test_a_client_that_leaves_mid_run_leaves_no_container(
    dockyard: DaemonProcess, tmp_path: Path
) -> None:
    context = context_dir(tmp_path, "FROM busybox\nRUN echo started && sleep 300\n")
    cli = subprocess.Popen(
        ["docker", "build", "--no-cache", str(context)],
        env={**dockyard.env, "DOCKER_BUILDKIT": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert cli.stdout is not None
        for line in cli.stdout:
            if line.startswith("started"):
                break
        assert ok(dockyard, "ps", "-q") != "", "the RUN container should be running"
    finally:
        cli.kill()  # by PID: the client disconnects mid-step
        cli.wait()
        if cli.stdout is not None:
            cli.stdout.close()
    deadline = time.monotonic() + 30
    while ok(dockyard, "ps", "-aq") and time.monotonic() < deadline:
        time.sleep(0.1)  # polling the daemon is the condition: no event says "build over"
    no_containers(dockyard)


def test_commit_matches_dockerd(engines: tuple[DaemonProcess, ...]) -> None:
    results = {}
    for daemon in engines:
        name = f"diff-commit-{daemon.kind}"
        ok(
            daemon,
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            name,
            "-e",
            "X=1",
            "busybox",
            "sh",
            "-c",
            "echo hi > /m && sleep 300",
        )
        try:
            ok(daemon, "exec", name, "true")  # started and running
            ok(
                daemon,
                "commit",
                "-m",
                "msg",
                "-a",
                "me",
                "-c",
                'CMD ["cat", "/m"]',
                "-c",
                "ENV ADDED=2",
                "-c",
                "EXPOSE 80",
                name,
                "diff/committed",
            )
        finally:
            ok(daemon, "rm", "-f", name)
        config = image_config(daemon, "diff/committed")
        c = config["Config"]
        results[daemon.kind] = (
            sorted(c["Env"]),  # the order of a container's env differs (daemon create)
            c["Cmd"],
            c["ExposedPorts"],
            config["Comment"],
            config["Author"],
            len(config["RootFS"]["Layers"]),
            history(daemon, "diff/committed")[0],
            ok(daemon, "run", "--rm", "--network", "none", "diff/committed"),
        )
    assert results["dockyard"] == results["dockerd"]


def test_base_images_are_pulled_when_missing_and_with_pull(
    dockyard: DaemonProcess, registry: RegistryProcess, tmp_path: Path
) -> None:
    ref = f"{registry.host}/e2e/base:v1"
    ok(dockyard, "tag", "busybox:latest", ref)
    ok(dockyard, "push", ref)
    ok(dockyard, "rmi", ref)
    context = context_dir(tmp_path, f"FROM {ref}\nRUN echo on-pulled-base\n")
    pulled = build(dockyard, context, "-t", "e2e/pulled")
    assert pulled.returncode == 0, pulled.stderr
    assert "on-pulled-base\n" in pulled.stdout
    assert ok(dockyard, "image", "inspect", "-f", "{{.Id}}", ref).startswith("sha256:")
    forced = build(dockyard, context, "--pull", "-t", "e2e/pulled")
    assert forced.returncode == 0, forced.stderr
    assert f"Status: Image is up to date for {ref}" in forced.stdout
    missing = context_dir(tmp_path / "missing", f"FROM {registry.host}/e2e/nothing:v1\n")
    result = build(dockyard, missing)
    assert result.returncode == 1
    assert "e2e/nothing" in result.stderr
    no_containers(dockyard)
