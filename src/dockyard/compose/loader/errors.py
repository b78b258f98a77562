"""The loader's one error type, and the request for a file the pure core has not been given.

Every error a user can cause while loading a Compose project is a ``ComposeFileError`` that
names where it happened: the file, the service (when inside ``services``) and the key path
(dotted as Compose prints it, ``services.web.ports``). ``FileNeeded`` is not an error the user
sees: the pure core raises it when it needs the contents of a file it was not handed (an
``extends`` target, an ``env_file``), and the I/O driver (``files.py``) reads it and retries.
"""

from __future__ import annotations


class ComposeFileError(Exception):
    """A Compose file (or ``.env``/``env_file``) the loader refuses, with where and why."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        service: str | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.service = service
        self.key = key

    def __str__(self) -> str:
        # docker-compose 1.29.2 prefixes schema errors with the file they come from
        # ("The Compose file './docker-compose.yml' is invalid because: ..."); we keep the
        # file in front of every message so that one line says where and what.
        if self.file is None:
            return self.message
        return f"{self.file}: {self.message}"


class FileNeeded(Exception):  # a request to the driver, not an error
    """The pure core needs ``path`` (absolute); the driver supplies it and calls again."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path
