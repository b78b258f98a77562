"""dockyard: a container platform in Python."""

__version__ = "0.1.0"
