"""Command-line interface: click commands only (parse, call, print)."""
