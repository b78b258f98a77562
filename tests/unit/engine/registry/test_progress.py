"""Docker's jsonmessage progress lines for pull and push."""

from __future__ import annotations

import pytest

from dockyard.engine.images.registry.progress import Progress, human_size, progress_bar

pytestmark = pytest.mark.unit


def test_status_lines_and_layer_lines() -> None:
    assert Progress("Digest: sha256:abc").to_wire() == {"status": "Digest: sha256:abc"}
    assert Progress("Pulling fs layer", id="0123456789ab", detail=True).to_wire() == {
        "status": "Pulling fs layer",
        "progressDetail": {},
        "id": "0123456789ab",
    }


def test_a_bar_line_carries_current_total_and_the_rendered_bar() -> None:
    wire = Progress("Downloading", id="abc", current=1_050_000, total=2_100_000).to_wire()
    assert wire["progressDetail"] == {"current": 1_050_000, "total": 2_100_000}
    assert wire["progress"] == "[" + "=" * 25 + ">" + " " * 25 + "]   1.05MB/2.1MB"


def test_push_aux() -> None:
    aux = {"Tag": "v1", "Digest": "sha256:abc", "Size": 527}
    assert Progress(detail=True, aux=aux).to_wire() == {"progressDetail": {}, "aux": aux}


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0B"), (527, "527B"), (1_980_000, "1.98MB"), (999_999, "1e+03kB"), (2_799_000, "2.8MB")],
)
def test_human_size_is_go_units(size: int, text: str) -> None:
    assert human_size(size) == text


def test_bar_edges() -> None:
    assert progress_bar(0, None) == ""
    assert progress_bar(5, None) == "      5B"
    assert progress_bar(10, 10).startswith("[" + "=" * 50 + ">]")
    assert progress_bar(20, 10).endswith("     20B")  # a wonky current hides the total
