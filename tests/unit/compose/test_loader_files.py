"""``load_project``: discovery, ``.env``/``--env-file``, and files read on the core's request.

These tests read the fixture project under ``fixtures/loader/project`` and write only into
pytest's ``tmp_path``; they run in milliseconds like the pure tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dockyard.compose.loader import ComposeFileError
from dockyard.compose.loader.files import load_project

pytestmark = pytest.mark.unit

PROJECT = Path(__file__).parent / "fixtures" / "loader" / "project"


def test_discovered_project_with_override_env_extends_and_env_files() -> None:
    loaded = load_project(project_directory=str(PROJECT), environ={"FROM_SHELL": "shell"})
    root = str(PROJECT)
    assert loaded.config_files == (
        f"{root}/docker-compose.yml",
        f"{root}/docker-compose.override.yml",
    )
    assert loaded.name == "project"
    assert loaded.working_dir == root
    services = loaded.config["services"]
    assert set(services) == {"redis", "web"}  # "debug" is behind a profile
    assert services["redis"]["image"] == "redis:6"
    assert services["web"] == {
        "build": {"context": root},
        "environment": {
            "DEBUG": "1",
            "FROM_BASE": "yes",
            "FROM_SHELL": "shell",
            "GREETING_COPY": "hello from .env",
            "PYTHONUNBUFFERED": "1",
        },
        "image": "python:3.11-slim",
        "links": ["redis"],
        "logging": {"driver": "json-file", "options": {"max-size": "1m"}},
        "ports": ["5000:5000"],
        "volumes": [f"{root}/common/scripts:/scripts:ro", f"{root}:/code"],
        "working_dir": "/code",
    }
    assert loaded.warnings == ()


def test_shell_environment_overrides_dotenv_and_profiles_apply() -> None:
    loaded = load_project(
        project_directory=str(PROJECT),
        environ={"REDIS_TAG": "7", "WEB_PORT": "8000"},
        profiles=["debug"],
    )
    services = loaded.config["services"]
    assert services["redis"]["image"] == "redis:7"
    assert services["web"]["ports"] == ["8000:5000"]
    assert "FROM_SHELL" not in services["web"]["environment"]  # bare and unset: dropped
    assert "debug" in services


def test_discovery_walks_up_from_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(PROJECT / "sub" / "deeper")
    loaded = load_project(environ={"REDIS_TAG": "x"})
    assert loaded.config_files[0] == str(PROJECT / "docker-compose.yml")
    assert loaded.working_dir == str(PROJECT)


def test_explicit_files_and_env_file(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("services:\n  web: {image: 'app:${TAG}'}\n")
    (tmp_path / "b.yml").write_text("services:\n  web: {command: run}\n")
    (tmp_path / "prod.env").write_text("TAG=prod\n")
    (tmp_path / ".env").write_text("TAG=ignored-when-env-file-given\n")
    loaded = load_project(
        [str(tmp_path / "a.yml"), str(tmp_path / "b.yml")],
        env_files=[str(tmp_path / "prod.env")],
        environ={},
        project_name="explicit",
    )
    assert loaded.name == "explicit"
    assert loaded.config["services"]["web"] == {"command": "run", "image": "app:prod"}


def test_compose_file_variable_names_the_files(tmp_path: Path) -> None:
    (tmp_path / "one.yml").write_text("services: {a: {image: x}}\n")
    (tmp_path / "two.yml").write_text("services: {b: {image: y}}\n")
    loaded = load_project(
        project_directory=str(tmp_path),
        environ={"COMPOSE_FILE": f"{tmp_path}/one.yml:{tmp_path}/two.yml"},
    )
    assert set(loaded.config["services"]) == {"a", "b"}


def test_missing_files_are_errors_naming_them(tmp_path: Path) -> None:
    with pytest.raises(ComposeFileError) as err:
        load_project([str(tmp_path / "nope.yml")], environ={})
    assert err.value.file == str(tmp_path / "nope.yml")
    with pytest.raises(ComposeFileError, match="Couldn't find env file"):
        load_project(
            [str(PROJECT / "docker-compose.yml")],
            env_files=[str(tmp_path / "missing.env")],
            environ={},
        )
    (tmp_path / "c.yml").write_text("services: {web: {image: x, env_file: gone.env}}\n")
    with pytest.raises(
        ComposeFileError, match=re.escape(f"Couldn't find env file: {tmp_path}/gone.env")
    ):
        load_project([str(tmp_path / "c.yml")], environ={})


def test_no_compose_file_anywhere_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ComposeFileError, match="no configuration file provided"):
        load_project(project_directory=str(tmp_path), environ={})


def test_multiple_candidates_warn(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services: {a: {image: x}}\n")
    (tmp_path / "docker-compose.yml").write_text("services: {b: {image: x}}\n")
    loaded = load_project(project_directory=str(tmp_path), environ={})
    assert set(loaded.config["services"]) == {"a"}
    assert loaded.warnings[0].startswith("Found multiple config files with supported names")
