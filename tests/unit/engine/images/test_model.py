"""References, the image config document, image IDs and chain IDs (pure model)."""

from __future__ import annotations

import ast
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dockyard.engine.images.model import (
    ContainerConfig,
    HealthConfig,
    HistoryEntry,
    ImageConfig,
    InvalidReference,
    RootFS,
    chain_ids,
    format_time,
    image_id,
    parse_reference,
    short_id,
)

HEX_A = "a" * 64
DIGEST_A = f"sha256:{HEX_A}"

# (input, normalized string, familiar string) — as `docker pull`/`docker tag` normalize.
VALID = [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("localhost:5000/x/y:tag", "localhost:5000/x/y:tag", "localhost:5000/x/y:tag"),
    ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
    ("example.com/a/b/c:v1.0-rc_1", "example.com/a/b/c:v1.0-rc_1", "example.com/a/b/c:v1.0-rc_1"),
    ("Example.com/foo", "Example.com/foo:latest", "Example.com/foo:latest"),
    ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
    ("a__b/c-d--e.f", "docker.io/a__b/c-d--e.f:latest", "a__b/c-d--e.f:latest"),
    (f"name@{DIGEST_A}", f"docker.io/library/name@{DIGEST_A}", f"name@{DIGEST_A}"),
    (f"name:t@{DIGEST_A}", f"docker.io/library/name:t@{DIGEST_A}", f"name:t@{DIGEST_A}"),
]

INVALID = [
    ("", "invalid reference format"),
    ("busybox:", "invalid reference format"),
    ("-busybox", "invalid reference format"),
    ("busybox:-tag", "invalid reference format"),
    ("busybox@sha256:abc", "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("Busybox", "invalid reference format: repository name (library/Busybox) must be lowercase"),
    ("foo/Bar:tag", "invalid reference format: repository name (foo/Bar) must be lowercase"),
    ("localhost:5000/X", "invalid reference format: repository name (X) must be lowercase"),
    (HEX_A, f"invalid repository name ({HEX_A}), cannot specify 64-byte hexadecimal strings"),
    ("a" * 256, "repository name must not be more than 255 characters"),
    (f"name@sha256:{'a' * 32}", "invalid checksum digest length"),
    (f"name@md5:{'a' * 32}", "unsupported digest algorithm"),
    (f"name@sha256:{'A' * 64}", "invalid checksum digest format"),
]


@pytest.mark.unit
@pytest.mark.parametrize(("text", "normalized", "familiar"), VALID)
def test_reference_normalization(text: str, normalized: str, familiar: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == normalized
    assert ref.familiar() == familiar
    assert parse_reference(normalized) == ref


@pytest.mark.unit
@pytest.mark.parametrize(("text", "message"), INVALID)
def test_reference_errors_use_dockers_wording(text: str, message: str) -> None:
    with pytest.raises(InvalidReference) as excinfo:
        parse_reference(text)
    assert str(excinfo.value) == message


@pytest.mark.unit
def test_default_tag_is_optional() -> None:
    assert parse_reference("busybox", default_tag=False).tag is None
    assert parse_reference(f"busybox@{DIGEST_A}").tag is None
    assert parse_reference("busybox").familiar_name() == "busybox"


def _busybox_like() -> ImageConfig:
    return ImageConfig(
        architecture="amd64",
        os="linux",
        config=ContainerConfig(
            env=("PATH=/usr/bin:/bin",),
            cmd=("sh",),
            labels=(("z", "1"), ("a", "<&>")),
            exposed_ports=("80/tcp", "53/udp"),
            volumes=("/data",),
            stop_signal="SIGTERM",
            healthcheck=HealthConfig(test=("CMD", "true"), interval_ns=30_000_000_000),
            working_dir="/w",
            user="nobody",
            entrypoint=("/bin/ep",),
        ),
        rootfs=RootFS(diff_ids=(DIGEST_A,)),
        history=(HistoryEntry(created="2024-01-02T03:04:05.5Z", created_by="x", comment="c"),),
        created="2024-01-02T03:04:05.5Z",
    )


# Written by hand from moby's image.Image / container.Config: top-level keys sorted,
# Config in Go field order, omitempty fields absent, HTML characters escaped.
EXPECTED_JSON = (
    '{"architecture":"amd64",'
    '"config":{"Hostname":"","Domainname":"","User":"nobody","AttachStdin":false,'
    '"AttachStdout":false,"AttachStderr":false,"ExposedPorts":{"53/udp":{},"80/tcp":{}},'
    '"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/usr/bin:/bin"],'
    '"Cmd":["sh"],"Healthcheck":{"Test":["CMD","true"],"Interval":30000000000},'
    '"Image":"","Volumes":{"/data":{}},"WorkingDir":"/w","Entrypoint":["/bin/ep"],'
    '"OnBuild":null,"Labels":{"a":"\\u003c\\u0026\\u003e","z":"1"},"StopSignal":"SIGTERM"},'
    '"created":"2024-01-02T03:04:05.5Z",'
    '"history":[{"created":"2024-01-02T03:04:05.5Z","created_by":"x","comment":"c"}],'
    '"os":"linux",'
    f'"rootfs":{{"type":"layers","diff_ids":["{DIGEST_A}"]}}}}'
)


@pytest.mark.unit
def test_config_canonical_json_and_id() -> None:
    config = _busybox_like()
    raw = config.to_json()
    assert raw.decode() == EXPECTED_JSON
    assert config.image_id() == image_id(raw) == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert ImageConfig.from_json(raw) == config
    assert ImageConfig.from_json(raw).to_json() == raw


@pytest.mark.unit
def test_empty_container_config_is_written_as_docker_import_does() -> None:
    raw = ImageConfig(
        architecture="amd64", os="linux", config=ContainerConfig(), rootfs=RootFS()
    ).to_json()
    assert raw == (
        b'{"architecture":"amd64","config":{"Hostname":"","Domainname":"","User":"",'
        b'"AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,'
        b'"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"",'
        b'"Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},'
        b'"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    )


@pytest.mark.unit
def test_chain_ids_by_hand() -> None:
    a, b, c = (f"sha256:{x * 64}" for x in "abc")
    # ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln))
    c1 = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    c2 = "sha256:" + hashlib.sha256(f"{c1} {c}".encode()).hexdigest()
    assert c1 == "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c"
    assert c2 == "sha256:c1377126441fb2f5ec2c21ae2a60255331d639e830f0ee1b40a36e52d4c40588"
    assert chain_ids([a, b, c]) == [a, c1, c2]
    assert chain_ids([]) == []
    with pytest.raises(InvalidReference):
        chain_ids(["sha256:short"])


@pytest.mark.unit
def test_time_format_and_short_id() -> None:
    assert format_time(datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)) == (
        "2024-01-02T03:04:05.5Z"
    )
    assert format_time(datetime(2024, 1, 2, tzinfo=UTC)) == "2024-01-02T00:00:00Z"
    assert short_id(DIGEST_A) == "a" * 12


@pytest.mark.unit
def test_model_is_pure() -> None:
    source = Path(__file__).resolve().parents[4] / "src/dockyard/engine/images/model.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    forbidden = {"os", "subprocess", "socket", "time", "asyncio", "shutil", "pathlib", "random"}
    assert not imported & forbidden
