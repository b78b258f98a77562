"""Compose file loading: what the user has on disk → one canonical project dict.

Modules (all pure but ``files``):

- ``yaml12``: YAML 1.2 text → plain values (anchors, merge keys, duplicate keys refused);
- ``interpolation``: ``$VAR``/``${VAR…}`` substitution in values;
- ``dotenv``: ``.env``/``env_file`` syntax;
- ``schema``: known keys and types per the compose-spec, with docker-compose's messages;
- ``formats``: ``containers:``/v1/v2/v3/spec files → compose-spec shape;
- ``normalize``: one canonical shape per key, paths absolute;
- ``merge``: the multi-file/extends merge rule table;
- ``extends``: ``extends`` chains, cycles;
- ``discovery``: which files, which project name;
- ``core``: the pipeline (``load_config``);
- ``files``: ``load_project``, the only function that touches the disk.

``dockyard.compose.loader`` re-exports the pure API only; import ``load_project`` from
``dockyard.compose.loader.files`` (so importing the package never imports ``os``).
"""

from dockyard.compose.loader.core import (
    LoadedProject,
    LoadOptions,
    load_config,
    project_environment,
)
from dockyard.compose.loader.errors import ComposeFileError, FileNeeded

__all__ = [
    "ComposeFileError",
    "FileNeeded",
    "LoadOptions",
    "LoadedProject",
    "load_config",
    "project_environment",
]
