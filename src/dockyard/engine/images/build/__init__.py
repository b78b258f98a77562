"""`docker build` through the classic builder (moby builder/dockerfile) and `docker commit`.

Pure: `dockerfile` (the parser), `shell_lex` (word expansion), `instructions` (typed
commands and stages), `dockerignore`, `cache` (cache rules), `state` (metadata steps,
build args, expansion, commit config merge).
Drivers: `context` (the unpacked context and COPY sources), `builder` (runs the steps on
the engine), `commit` (a container's changes as an image).
"""

# The engine's data root holds each build's working tree under this directory, and the
# snapshots of COPY/ADD steps are named with this prefix; the daemon clears both at start.
BUILD_DIR_NAME = "builder"
BUILD_SNAPSHOT_PREFIX = "build-"
