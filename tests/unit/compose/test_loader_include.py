"""The compose-spec's top-level `include` (loader/include.py, loader/core.py)."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.compose.loader import ComposeFileError, FileNeeded, LoadOptions, load_config
from dockyard.compose.loader.include import IncludeSpec, parse_includes

pytestmark = pytest.mark.unit

PROJECT = "/srv/app"
MAIN = f"{PROJECT}/compose.yml"
DB = "/srv/db/compose.yml"


def load(
    text: str, files: dict[str, str | None], environ: dict[str, str] | None = None, **kw: Any
) -> dict[str, Any]:
    contents: dict[str, str | None] = {MAIN: text, **files}
    return load_config([MAIN], contents, LoadOptions(PROJECT, environ or {}, **kw)).config


DB_FILE = (
    "services:\n"
    "  db:\n"
    "    image: postgres:${PG_VERSION:-15}\n"
    "    volumes: [./data:/var/lib/postgresql/data, dbdata:/backup]\n"
    "volumes:\n"
    "  dbdata: {}\n"
)


def test_an_included_application_joins_with_its_own_directory_and_env() -> None:
    config = load(
        "include: [../db/compose.yml]\nservices:\n  web:\n    image: app\n    depends_on: [db]\n",
        {DB: DB_FILE, "/srv/db/.env": "PG_VERSION=16\n"},
    )
    assert set(config["services"]) == {"db", "web"}
    db = config["services"]["db"]
    assert db["image"] == "postgres:16"  # the included project's .env
    # relative paths against the included project's directory, not the including one's
    assert db["volumes"][0] == "/srv/db/data:/var/lib/postgresql/data"
    assert "dbdata" in config["volumes"]
    assert config["name"] == "app"  # the including project's name


def test_long_syntax_project_directory_and_env_file() -> None:
    config = load(
        "include:\n"
        "  - path: ../db/compose.yml\n"
        "    project_directory: ../shared\n"
        "    env_file: ./db.env\n"
        "services: {}\n",
        {DB: DB_FILE, f"{PROJECT}/db.env": "PG_VERSION=14\n"},
    )
    db = config["services"]["db"]
    assert db["image"] == "postgres:14"
    assert db["volumes"][0] == "/srv/shared/data:/var/lib/postgresql/data"


def test_the_including_environment_reaches_the_included_file() -> None:
    config = load("include: [../db/compose.yml]\n", {DB: DB_FILE, "/srv/db/.env": None},
                  {"PG_VERSION": "13"})  # fmt: skip
    assert config["services"]["db"]["image"] == "postgres:13"


def test_a_name_defined_on_both_sides_is_an_error_unless_identical() -> None:
    with pytest.raises(ComposeFileError, match=r"services\.db conflicts with imported resource"):
        load(
            "include: [../db/compose.yml]\nservices:\n  db:\n    image: other\n",
            {DB: DB_FILE, "/srv/db/.env": None},
        )
    same = load(
        "include: [../db/compose.yml]\nvolumes:\n  dbdata: {}\n",
        {DB: DB_FILE, "/srv/db/.env": None},
    )
    assert "dbdata" in same["volumes"]


def test_nested_includes_and_cycles() -> None:
    inner = "/srv/inner/compose.yml"
    config = load(
        "include: [../db/compose.yml]\n",
        {
            DB: "include: [../inner/compose.yml]\n" + DB_FILE,
            inner: "services:\n  cache:\n    image: redis\n",
            "/srv/db/.env": None,
            "/srv/inner/.env": None,
        },
    )
    assert set(config["services"]) == {"db", "cache"}
    with pytest.raises(ComposeFileError, match="include cycle detected"):
        load(
            "include: [../db/compose.yml]\n",
            {DB: "include: [../app/compose.yml]\n" + DB_FILE, "/srv/db/.env": None},
        )


def test_profiles_are_selected_over_the_whole_application() -> None:
    files: dict[str, str | None] = {
        DB: "services:\n  db:\n    image: x\n  debug:\n    image: y\n    profiles: [dev]\n",
        "/srv/db/.env": None,
    }
    assert set(load("include: [../db/compose.yml]\n", files)["services"]) == {"db"}
    with_dev = load("include: [../db/compose.yml]\n", files, profiles=("dev",))
    assert set(with_dev["services"]) == {"db", "debug"}


def test_the_driver_is_asked_for_included_files() -> None:
    with pytest.raises(FileNeeded) as need:
        load("include: [../db/compose.yml]\n", {"/srv/db/.env": None})
    assert need.value.path == DB


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("x", "include contains an invalid type, it should be an array"),
        ([1], "include[0] contains an invalid type, it should be a string or an object"),
        ([{"project_directory": "."}], "include[0].path is required"),
        ([{"path": "a.yml", "oops": 1}], "include[0] contains unsupported option: 'oops'"),
        ([{"path": []}], "include[0].path contains an invalid type"),
    ],
)
def test_bad_include_items_name_the_item(raw: Any, message: str) -> None:
    with pytest.raises(ComposeFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_includes(raw, MAIN, PROJECT)


def test_item_forms_resolve_against_the_including_directory() -> None:
    assert parse_includes(["sub/c.yml"], MAIN, PROJECT) == (
        IncludeSpec(("/srv/app/sub/c.yml",), "/srv/app/sub", ()),
    )
    assert parse_includes(
        [{"path": ["a.yml", "b.yml"], "env_file": [".e1", "/etc/e2"]}], MAIN, PROJECT
    ) == (
        IncludeSpec(("/srv/app/a.yml", "/srv/app/b.yml"), "/srv/app", ("/srv/app/.e1", "/etc/e2")),
    )
