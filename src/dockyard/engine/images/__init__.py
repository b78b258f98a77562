"""Images: the pure model (model.py), the on-disk store (store.py), the overlay
snapshotter that returns mounts (snapshotter.py), and the offline busybox image (bootstrap.py).
"""
