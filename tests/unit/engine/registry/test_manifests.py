"""Manifest parsing, platform choice (containerd's platforms.Only) and the pushed schema 2."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from dockyard.engine.images.registry.manifests import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    ImageManifest,
    InvalidManifest,
    ManifestList,
    Platform,
    build_schema2,
    format_platform,
    parse_manifest,
    parse_platform,
    select_manifest,
)

pytestmark = pytest.mark.unit

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")
AMD64 = Platform("linux", "amd64")


def _desc(
    digest: str, media_type: str = DOCKER_LAYER_GZIP, size: int = 10, **extra: Any
) -> dict[str, Any]:
    return {"mediaType": media_type, "size": size, "digest": digest, **extra}


def _manifest(media_type: str | None = DOCKER_MANIFEST) -> bytes:
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "config": _desc(D1, DOCKER_CONFIG),
        "layers": [_desc(D2), _desc(D3)],
    }
    if media_type:
        document["mediaType"] = media_type
    return json.dumps(document).encode()


def _index(
    entries: list[tuple[str, str, str, str]], media_type: str = DOCKER_MANIFEST_LIST
) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                _desc(
                    digest,
                    DOCKER_MANIFEST,
                    platform={"os": os_, "architecture": arch, "variant": variant},
                )
                for digest, os_, arch, variant in entries
            ],
        }
    ).encode()


def test_schema2_manifest_by_content_type() -> None:
    parsed = parse_manifest(DOCKER_MANIFEST, _manifest())
    assert isinstance(parsed, ImageManifest)
    assert parsed.config == Descriptor(DOCKER_CONFIG, D1, 10)
    assert [layer.digest for layer in parsed.layers] == [D2, D3]


def test_oci_documents_without_media_type_are_told_by_shape() -> None:
    assert isinstance(parse_manifest("application/octet-stream", _manifest(None)), ImageManifest)
    index = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    parsed = parse_manifest("", index)
    assert isinstance(parsed, ManifestList) and parsed.media_type == OCI_INDEX
    assert parse_manifest(OCI_MANIFEST + "; charset=utf-8", _manifest(OCI_MANIFEST)).media_type == (
        OCI_MANIFEST
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "invalid manifest"),
        (b"[]", "not a JSON object"),
        (json.dumps({"schemaVersion": 1, "fsLayers": []}).encode(), "schema 1 has been removed"),
        (json.dumps({"mediaType": "text/plain"}).encode(), "unsupported manifest media type"),
        (
            json.dumps(
                {
                    "mediaType": DOCKER_MANIFEST,
                    "config": _desc(D1, DOCKER_CONFIG),
                    "layers": [{"digest": "x"}],
                }
            ).encode(),
            r"layers\[0\] has no valid sha256 digest",
        ),
        (
            json.dumps(
                {
                    "mediaType": DOCKER_MANIFEST,
                    "config": _desc(D1, "application/vnd.cncf.helm.config.v1+json"),
                    "layers": [],
                }
            ).encode(),
            "target is not a container image",
        ),
    ],
)
def test_refused_manifests(body: bytes, message: str) -> None:
    with pytest.raises(InvalidManifest, match=message):
        parse_manifest("", body)


def test_platform_choice_prefers_the_exact_match() -> None:
    listing = parse_manifest(
        DOCKER_MANIFEST_LIST,
        _index(
            [(D1, "linux", "386", ""), (D2, "linux", "arm64", "v8"), (D3, "linux", "amd64", "")]
        ),
    )
    assert isinstance(listing, ManifestList)
    assert select_manifest(listing, AMD64).digest == D3
    assert select_manifest(listing, Platform("linux", "arm64")).digest == D2
    assert select_manifest(listing, Platform("linux", "aarch64")).digest == D2


def test_amd64_falls_back_to_386_and_skips_attestations() -> None:
    listing = parse_manifest(
        OCI_INDEX,
        _index([(D1, "unknown", "unknown", ""), (D2, "linux", "386", "")], media_type=OCI_INDEX),
    )
    assert isinstance(listing, ManifestList)
    assert select_manifest(listing, AMD64).digest == D2


def test_arm_variants_go_down_not_up() -> None:
    listing = parse_manifest(
        DOCKER_MANIFEST_LIST, _index([(D1, "linux", "arm", "v6"), (D2, "linux", "arm", "v8")])
    )
    assert isinstance(listing, ManifestList)
    assert select_manifest(listing, Platform("linux", "arm", "v7")).digest == D1


def test_no_matching_platform_is_dockers_error() -> None:
    listing = parse_manifest(
        DOCKER_MANIFEST_LIST, _index([(D1, "linux", "s390x", ""), (D2, "windows", "amd64", "")])
    )
    assert isinstance(listing, ManifestList)
    with pytest.raises(
        InvalidManifest,
        match=r"^no matching manifest for linux/amd64 in the manifest list entries$",
    ):
        select_manifest(listing, AMD64)


def test_platform_text() -> None:
    assert parse_platform("linux/arm64", AMD64) == Platform("linux", "arm64")
    assert parse_platform("arm", AMD64) == Platform("linux", "arm", "v7")
    assert parse_platform("linux", AMD64) == AMD64
    assert format_platform(Platform("linux", "arm", "v7")) == "linux/arm/v7"
    with pytest.raises(InvalidManifest):
        parse_platform("linux//", AMD64)


def test_built_schema2_is_what_distribution_marshals() -> None:
    body = build_schema2(
        Descriptor(DOCKER_CONFIG, D1, 1469), [Descriptor(DOCKER_LAYER_GZIP, D2, 2)]
    )
    # Go json.MarshalIndent(m, "", "   "): three spaces, struct order, no trailing newline.
    assert body.decode() == (
        "{\n"
        '   "schemaVersion": 2,\n'
        f'   "mediaType": "{DOCKER_MANIFEST}",\n'
        '   "config": {\n'
        f'      "mediaType": "{DOCKER_CONFIG}",\n'
        '      "size": 1469,\n'
        f'      "digest": "{D1}"\n'
        "   },\n"
        '   "layers": [\n'
        "      {\n"
        f'         "mediaType": "{DOCKER_LAYER_GZIP}",\n'
        '         "size": 2,\n'
        f'         "digest": "{D2}"\n'
        "      }\n"
        "   ]\n"
        "}"
    )
    parsed = parse_manifest(DOCKER_MANIFEST, body)
    assert isinstance(parsed, ImageManifest) and parsed.config.size_bytes == 1469
    assert hashlib.sha256(body).hexdigest()  # digestable as sent
