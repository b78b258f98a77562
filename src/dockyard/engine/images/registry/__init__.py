"""Docker Registry v2 distribution: `docker pull`, `docker push` and `docker login`.

Pure: `auth.py` (credentials, challenges, scopes), `endpoints.py` (reference → registry and
the endpoints dockerd tries), `manifests.py` (media types, parsing, platform choice, the
schema 2 manifest pushed), `errors.py`. I/O: `client.py` (the HTTP API on httpx) and
`distribution.py` (pull and push on the image store).
"""
