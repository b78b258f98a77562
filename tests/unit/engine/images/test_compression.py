"""Layer tars in every compression Docker's DetectCompression reads (zstd excepted)."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard.engine.images.store import LayerError, extract_layer


def plain_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        data = b"hello\n"
        info = tarfile.TarInfo("etc/hello")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize(
    "compress",
    [lambda b: b, gzip.compress, bz2.compress, lzma.compress],
    ids=["plain", "gzip", "bzip2", "xz"],
)
def test_every_compression_gives_the_uncompressed_diff_id(
    tmp_path: Path, compress: Callable[[bytes], bytes]
) -> None:
    tar = plain_tar()
    diff_id, size, _ = extract_layer(io.BytesIO(compress(tar)), tmp_path / "layer", is_root=False)
    reference, _, _ = extract_layer(io.BytesIO(tar), tmp_path / "reference", is_root=False)
    assert (diff_id, size) == (reference, len(tar))
    assert (tmp_path / "layer" / "etc" / "hello").read_bytes() == b"hello\n"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"BZh9" + b"\x00" * 64, "invalid layer tar"),
        (b"\xfd7zXZ\x00" + b"\x00" * 64, "invalid layer tar"),
        (b"\x28\xb5\x2f\xfd" + b"\x00" * 64, "zstd-compressed layers are not supported"),
    ],
    ids=["bzip2", "xz", "zstd"],
)
def test_corrupt_or_unsupported_streams_are_layer_errors(
    tmp_path: Path, data: bytes, message: str
) -> None:
    with pytest.raises(LayerError, match=message):
        extract_layer(io.BytesIO(data), tmp_path / "layer", is_root=False)
