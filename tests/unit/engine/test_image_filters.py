"""`docker images --filter reference=…`: Go's path.Match and distribution's FamiliarMatch."""

from __future__ import annotations

import pytest

from dockyard.engine.api.image_routes import (
    import_reference,
    reference_matches,
    tag_reference,
)
from dockyard.engine.images.model import InvalidReference
from dockyard.engine.model.gopath import path_match


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("dif*", "dif:one", True),
        ("dif*", "other/dif:one", False),
        ("*/*", "team/app:v1", True),
        ("*", "team/app:v1", False),  # `*` never crosses a `/`
        ("b?sybox", "busybox", True),
        ("[a-c]usybox", "busybox", True),
        ("[^a-c]usybox", "busybox", False),
        ("busy\\*", "busy*", True),
        ("busy\\*", "busybox", False),
        ("[", "x", False),
    ],
)
def test_path_match(pattern: str, name: str, matches: bool) -> None:
    assert path_match(pattern, name) is matches


def test_reference_match_tries_the_name_without_its_tag() -> None:
    assert reference_matches("busybox", "busybox:latest")
    assert reference_matches("busybox:latest", "busybox:latest")
    assert not reference_matches("busybox:1", "busybox:latest")
    assert reference_matches("localhost:5000/x", "localhost:5000/x:v2")
    assert reference_matches("*:v2", "x:v2")


def test_import_and_tag_references() -> None:
    assert import_reference("", "") is None
    assert import_reference("capdemo:imported", "") == "docker.io/library/capdemo:imported"
    assert import_reference("x", "t") == "docker.io/library/x:t"
    with pytest.raises(InvalidReference, match="cannot import digest reference"):
        import_reference("x@sha256:" + "a" * 64, "")
    with pytest.raises(InvalidReference, match="invalid tag format"):
        import_reference("x", "b@d")
    assert tag_reference("docker.io/library/capdemo", "t") == "docker.io/library/capdemo:t"
    # TrimNamed: the tag parameter replaces a tag in repo.
    assert tag_reference("x:old", "new") == "docker.io/library/x:new"
    with pytest.raises(InvalidReference, match="must be lowercase"):
        tag_reference("Bad", "")
