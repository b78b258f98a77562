"""`docker import`, `docker tag` and `docker rmi` against `dockyard daemon`.

Reuses the module-scoped daemon fixture of `test_daemon_cli` (a private daemon for this
module, busybox bootstrapped, leak checks at teardown). Expected messages and outputs are
dockerd 20.10's, observed with the same commands (see test_differential_dockerd for the
side-by-side runs). Each test imports images of its own (a distinct `-m` message makes a
distinct image ID over the same busybox layer), so tests do not depend on one another.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.engine import test_daemon_cli
from tests.e2e.engine.test_daemon_cli import COMMAND_TIMEOUT_S, DOCKER, DaemonProcess
from tests.support.dockerd import busybox_rootfs_tar, load_busybox_into

pytestmark = pytest.mark.e2e

daemon = test_daemon_cli.daemon  # this module's own daemon (module scope)


def docker_in(
    daemon: DaemonProcess, *args: str, input_bytes: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [DOCKER, *args],
        env=daemon.env,
        input=input_bytes,
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def import_image(daemon: DaemonProcess, *args: str, tar: bytes | None = None) -> str:
    result = docker_in(daemon, "import", *args, input_bytes=tar or busybox_rootfs_tar())
    assert (result.returncode, result.stderr) == (0, ""), daemon.log()
    image_id = result.stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71, result.stdout
    return image_id


FORMAT = "{{.Repository}}:{{.Tag}} {{.ID}}"


def tags(daemon: DaemonProcess) -> dict[str, str]:
    """`docker images` as {repo:tag: short ID}, dangling images left out."""
    out = daemon.docker("images", "--format", FORMAT).stdout
    pairs = (line.split(" ") for line in out.splitlines())
    return {name: short for name, short in pairs if name != "<none>:<none>"}


@pytest.fixture
def cleanup(daemon: DaemonProcess) -> Iterator[list[str]]:
    """Names of containers and images a test made; removed (forced) even if it fails."""
    made: list[str] = []
    yield made
    for name in reversed(made):
        kind = "image" if ":" in name or name.startswith("sha256") else "container"
        docker_in(daemon, kind, "rm", "-f", name)


def test_load_busybox_into_imports_through_the_api(daemon: DaemonProcess) -> None:
    image_id = load_busybox_into(daemon.env["DOCKER_HOST"], docker_config=daemon.base / "cfg")
    inspect = json.loads(daemon.docker("image", "inspect", "busybox:latest").stdout)[0]
    assert inspect["Id"] == image_id
    assert inspect["Comment"] == "Imported from -"
    assert inspect["Config"]["Cmd"] == ["sh"]
    assert inspect["Config"]["Env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    ]
    run = daemon.docker("run", "--rm", "busybox", "echo", "imported")
    assert run.stdout == "imported\n"


def test_import_applies_changes_and_message(daemon: DaemonProcess, cleanup: list[str]) -> None:
    cleanup.append("imp:changes")
    image_id = import_image(
        daemon,
        "--change", 'CMD ["sh", "-c", "echo $GREETING from $(pwd) as $(id -u)"]',
        "--change", "ENV GREETING=hello PATH=/bin",
        "--change", "WORKDIR /tmp",
        "--change", "USER nobody",
        "--change", 'LABEL stage="e2e test"',
        "--change", "EXPOSE 80 53/udp",
        "--change", "VOLUME /data",
        "--change", "STOPSIGNAL SIGUSR1",
        "-m", "imported by the e2e test",
        "-", "imp:changes",
    )  # fmt: skip
    inspect = json.loads(daemon.docker("image", "inspect", "imp:changes").stdout)[0]
    assert inspect["Id"] == image_id
    assert inspect["RepoTags"] == ["imp:changes"]
    assert inspect["Comment"] == "imported by the e2e test"
    config = inspect["Config"]
    assert config["Cmd"] == ["sh", "-c", "echo $GREETING from $(pwd) as $(id -u)"]
    assert config["Env"] == ["GREETING=hello", "PATH=/bin"]
    assert (config["WorkingDir"], config["User"]) == ("/tmp", "nobody")
    assert config["Labels"] == {"stage": "e2e test"}
    assert config["ExposedPorts"] == {"53/udp": {}, "80/tcp": {}}
    assert config["Volumes"] == {"/data": {}}
    assert config["StopSignal"] == "SIGUSR1"
    assert config["Entrypoint"] is None


def test_an_imported_image_runs_with_its_config(daemon: DaemonProcess, cleanup: list[str]) -> None:
    cleanup.append("imp:run")
    import_image(
        daemon,
        "--change", 'CMD ["sh", "-c", "echo $GREETING from $(pwd) as $(id -u)"]',
        "--change", "ENV GREETING=hello PATH=/bin",
        "--change", "WORKDIR /tmp",
        "--change", "USER nobody",
        "-", "imp:run",
    )  # fmt: skip
    run = daemon.docker("run", "--rm", "imp:run")
    assert run.stdout == "hello from /tmp as 65534\n"


def test_compressed_tars_give_the_same_layer(daemon: DaemonProcess, cleanup: list[str]) -> None:
    names = ["imp:plain", "imp:gz", "imp:bz2", "imp:xz"]
    cleanup += names
    tar = busybox_rootfs_tar()
    for name, data in zip(
        names, (tar, gzip.compress(tar), bz2.compress(tar), lzma.compress(tar)), strict=True
    ):
        import_image(daemon, "-m", name, "-", name, tar=data)
    layers = [
        json.loads(daemon.docker("image", "inspect", name).stdout)[0]["RootFS"]["Layers"]
        for name in names
    ]
    assert len(layers[0]) == 1 and all(layer == layers[0] for layer in layers)


def test_import_refusals_in_dockerds_words(daemon: DaemonProcess) -> None:
    before = tags(daemon)
    cases = [
        (["--change", "RUN true"], "run is not a valid change command"),
        (["--change", "EXPOSE abc"], "Invalid containerPort: abc"),
        (["--change", "ENV"], "ENV requires at least one argument"),
    ]
    for args, message in cases:
        result = docker_in(daemon, "import", *args, "-", "imp:bad", input_bytes=b"")
        assert result.returncode == 1
        assert result.stderr == f"Error response from daemon: {message}\n"
    digest = docker_in(
        daemon, "import", "-", "x@sha256:" + "a" * 64, input_bytes=busybox_rootfs_tar()
    )
    assert digest.stderr == "Error response from daemon: cannot import digest reference\n"
    garbage = docker_in(daemon, "import", "-", "imp:bad", input_bytes=b"garbage" * 100)
    assert garbage.returncode == 1
    assert garbage.stderr.startswith("Error response from daemon: Error processing tar file")
    assert tags(daemon) == before, "a refused import leaves nothing behind"


def test_tag_and_untag(daemon: DaemonProcess, cleanup: list[str]) -> None:
    cleanup += ["tg:one", "tg:two", "example.com/team/app:v1"]
    image_id = import_image(daemon, "-m", "tag test", "-", "tg:one")
    short = image_id[7:19]
    daemon.docker("tag", "tg:one", "tg:two")
    daemon.docker("tag", short, "example.com/team/app:v1")
    listed = tags(daemon)
    assert {listed["tg:one"], listed["tg:two"], listed["example.com/team/app:v1"]} == {short}
    inspect = json.loads(daemon.docker("image", "inspect", short).stdout)[0]
    assert inspect["RepoTags"] == ["example.com/team/app:v1", "tg:one", "tg:two"]
    # A tag moves: pointing tg:two at busybox takes it from this image.
    daemon.docker("tag", "busybox", "tg:two")
    assert tags(daemon)["tg:two"] != short
    missing = daemon.docker("tag", "nosuch", "tg:x", check=False)
    assert missing.stderr == "Error response from daemon: No such image: nosuch:latest\n"
    assert daemon.docker("rmi", "tg:two").stdout == "Untagged: tg:two\n"


def test_tag_refusals_through_the_api(daemon: DaemonProcess) -> None:
    cases = [
        ("repo=Bad", 400, "invalid reference format: repository name (library/Bad) must be "
         "lowercase"),
        ("repo=ok&tag=b@d", 400, "invalid tag format"),
        ("repo=ok@sha256:" + "a" * 64, 400, "refusing to create a tag with a digest reference"),
        ("repo=", 400, "invalid reference format"),
    ]  # fmt: skip
    for query, status, message in cases:
        assert daemon.api("POST", f"/images/busybox/tag?{query}") == (status, {"message": message})
    assert daemon.api("POST", "/images/nosuch/tag?repo=ok") == (
        404,
        {"message": "No such image: nosuch:latest"},
    )
    assert daemon.api("POST", "/images/busybox/tag?repo=docker.io/library/apitag&tag=t") == (
        201,
        b"",
    )
    assert daemon.api("DELETE", "/images/apitag:t") == (200, [{"Untagged": "apitag:t"}])


def test_rmi_untags_then_deletes(daemon: DaemonProcess, cleanup: list[str]) -> None:
    cleanup += ["rm:one", "rm:two"]
    image_id = import_image(daemon, "-m", "rmi test", "-", "rm:one")
    short = image_id[7:19]
    daemon.docker("tag", "rm:one", "rm:two")
    multiple = daemon.docker("rmi", short, check=False)
    assert multiple.stderr == (
        f"Error response from daemon: conflict: unable to delete {short} (must be forced) - "
        "image is referenced in multiple repositories\n"
    )
    forced = daemon.docker("rmi", "-f", short)
    # The busybox layer stays: busybox:latest still stacks on it.
    assert forced.stdout == f"Untagged: rm:one\nUntagged: rm:two\nDeleted: {image_id}\n"
    again = daemon.docker("rmi", "rm:one", check=False)
    assert again.stderr == "Error response from daemon: No such image: rm:one\n"
    assert daemon.api("DELETE", f"/images/{image_id}") == (
        404,
        {"message": f"No such image: {image_id}"},
    )


def test_rmi_refuses_images_in_use_as_dockerd(daemon: DaemonProcess, cleanup: list[str]) -> None:
    cleanup += ["use:one", "use:two", "inuse"]
    image_id = import_image(daemon, "-m", "in use", "-", "use:one")
    short = image_id[7:19]
    daemon.docker("tag", "use:one", "use:two")
    cid = daemon.docker("run", "-d", "--name", "inuse", "use:one", "sleep", "300").stdout.strip()
    cshort = cid[:12]
    # Another tag remains: the untag alone is fine.
    assert daemon.docker("rmi", "use:one").stdout == "Untagged: use:one\n"
    last_tag = daemon.docker("rmi", "use:two", check=False)
    assert last_tag.stderr == (
        'Error response from daemon: conflict: unable to remove repository reference "use:two" '
        f"(must force) - container {cshort} is using its referenced image {short}\n"
    )
    running = (
        f"Error response from daemon: conflict: unable to delete {short} (cannot be forced) - "
        f"image is being used by running container {cshort}\n"
    )
    assert daemon.docker("rmi", short, check=False).stderr == running
    assert daemon.docker("rmi", "-f", short, check=False).stderr == running
    # Forcing the tag away untags it; the running container keeps the (dangling) image.
    assert daemon.docker("rmi", "-f", "use:two").stdout == "Untagged: use:two\n"
    assert f"<none>:<none> {short}" in daemon.docker("images", "--format", FORMAT).stdout
    daemon.docker("stop", "-t", "0", "inuse")
    stopped = daemon.docker("rmi", short, check=False)
    assert stopped.stderr == (
        f"Error response from daemon: conflict: unable to delete {short} (must be forced) - "
        f"image is being used by stopped container {cshort}\n"
    )
    assert daemon.docker("rmi", "-f", short).stdout == f"Deleted: {image_id}\n"
    # The container outlives its image, as with dockerd.
    state = json.loads(daemon.docker("inspect", "inuse").stdout)[0]
    assert state["Image"] == image_id
    daemon.docker("rm", "inuse")


def test_history(daemon: DaemonProcess, cleanup: list[str]) -> None:
    cleanup.append("hist:one")
    image_id = import_image(daemon, "-m", "history test", "-", "hist:one")
    status, entries = daemon.api("GET", "/images/hist:one/history")
    assert status == 200
    assert [(e["Id"], e["Tags"], e["CreatedBy"], e["Comment"]) for e in entries] == [
        (image_id, ["hist:one"], "", "history test")
    ]
    assert entries[0]["Size"] > 0
    shown = daemon.docker("history", "--no-trunc", "--format", "{{.ID}} {{.Comment}}", "hist:one")
    assert shown.stdout == f"{image_id} history test\n"


def test_image_prune(daemon: DaemonProcess, cleanup: list[str]) -> None:
    cleanup += ["prune:tagged", "prune:used", "prune-user"]
    label = ("--change", "LABEL prune=me")
    dangling = import_image(daemon, *label, "-m", "prune dangling", "-")
    tagged = import_image(daemon, *label, "-m", "prune tagged", "-", "prune:tagged")
    import_image(daemon, *label, "-m", "prune used", "-", "prune:used")
    daemon.docker("create", "--name", "prune-user", "prune:used", "true")
    only_mine = ("--filter", "label=prune=me")
    first = daemon.docker("image", "prune", "-f", *only_mine)
    # The layer is busybox's too, so no layer is deleted and no space reclaimed.
    assert first.stdout == f"Deleted Images:\ndeleted: {dangling}\n\nTotal reclaimed space: 0B\n"
    everything = daemon.docker("image", "prune", "-af", *only_mine)
    assert everything.stdout == (
        f"Deleted Images:\nuntagged: prune:tagged\ndeleted: {tagged}\n\nTotal reclaimed space: 0B\n"
    )
    assert "prune:used" in tags(daemon), "an image a container uses is kept"
    nothing = daemon.docker("image", "prune", "-af", *only_mine)
    assert nothing.stdout == "Total reclaimed space: 0B\n"
    bogus = daemon.docker("image", "prune", "-f", "--filter", "bogus=1", check=False)
    assert bogus.stderr == "Error response from daemon: Invalid filter 'bogus'\n"
    assert daemon.api("POST", '/images/prune?filters={"dangling":["x"]}') == (
        400,
        {"message": "Invalid filter 'dangling=[x]'"},
    )


def test_images_filters(daemon: DaemonProcess, cleanup: list[str]) -> None:
    cleanup += ["flt/one:a", "flt/one:b", "flt/two:a"]
    import_image(daemon, "--change", "LABEL flt=1", "-", "flt/one:a")
    daemon.docker("tag", "flt/one:a", "flt/one:b")
    import_image(daemon, "-m", "other", "-", "flt/two:a")

    def listed(*filters: str) -> list[str]:
        args = [arg for f in filters for arg in ("--filter", f)]
        out = daemon.docker("images", *args, "--format", "{{.Repository}}:{{.Tag}}").stdout
        return sorted(out.splitlines())

    assert listed("reference=flt/one") == ["flt/one:a", "flt/one:b"]
    assert listed("reference=flt/*:a") == ["flt/one:a", "flt/two:a"]
    assert listed("reference=flt/*:a", "label=flt=1") == ["flt/one:a"]
    assert listed("reference=flt*") == []  # `*` does not cross a `/`
    assert "flt/two:a" not in listed("dangling=true")
