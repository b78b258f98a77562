"""Compose: multi-container applications described in a YAML file (issue 7).

Layers, from the user's files to Engine API calls:

- ``loader/``: files on disk → one canonical project dict (formats, interpolation, ``.env``,
  ``env_file``, merge of several files, ``extends``, profiles, shape normalization). Pure
  except ``loader/files.py``.
- ``model``/``graph``/``labels``/``plan``: the typed project, the dependency graph and the
  convergence plan. Pure.
- the runner: the only part that talks (the Docker Engine API).

This package module imports nothing so that importing one layer never drags in another.
"""
