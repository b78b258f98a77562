"""Docker volumes for the engine: named and anonymous volumes of the `local` driver, bind
and tmpfs mounts, `--volumes-from`, and the mounts a container start hands runc.

`model.py` is pure (parsing, planning, Docker's JSON and messages); `store.py` is the local
driver on disk and its mounts; `service.py` is what the daemon and the `/volumes` routes
(`api/volume_routes.py`) call.
"""
