"""Runs the iptables plans of iptables.py on the host (the I/O half).

Role: feed a whole plan to `iptables-restore --noflush` in one atomic call (the engine's
own chains are declared, hence flushed and refilled; no other chain's rules are touched), make
sure the builtin chains jump to ours, and remove everything at teardown.

Invariants:
- `iptables` is whichever backend the host's alternatives select (nft here, legacy
  elsewhere): the same binary family as the host's other rules, so they share one ruleset.
- Jumps are checked with `-C` before they are inserted, so a daemon restart never
  duplicates them; removal deletes every copy.
- Every command runs with `-w` (wait for the xtables lock another engine may hold).
- Failures raise FirewallError with iptables' own message.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence


class FirewallError(Exception):
    pass


def _binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise FirewallError(f"{name} not found: install iptables")
    return path


def _run(argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, check=False, timeout=60
    )


def restore(text: str) -> None:
    """Apply iptables-restore input without flushing anything it does not declare."""
    if not text.strip():
        return
    done = _run([_binary("iptables-restore"), "-w", "--noflush"], stdin=text)
    if done.returncode != 0:
        raise FirewallError(f"iptables-restore failed: {done.stderr.strip()}")


def has_rule(table: str, chain: str, args: Sequence[str]) -> bool:
    done = _run([_binary("iptables"), "-w", "-t", table, "-C", chain, *args])
    return done.returncode == 0


def ensure_jump(table: str, chain: str, args: Sequence[str], *, first: bool) -> None:
    """Insert (at 1) or append the rule unless it is there already."""
    if has_rule(table, chain, args):
        return
    op = ["-I", chain, "1"] if first else ["-A", chain]
    done = _run([_binary("iptables"), "-w", "-t", table, *op, *args])
    if done.returncode != 0:
        raise FirewallError(
            f"iptables -t {table} {' '.join(op)} {' '.join(args)}: {done.stderr.strip()}"
        )


def remove_rule(table: str, chain: str, args: Sequence[str]) -> None:
    """Delete every copy of the rule (none is fine)."""
    while has_rule(table, chain, args):
        done = _run([_binary("iptables"), "-w", "-t", table, "-D", chain, *args])
        if done.returncode != 0:
            raise FirewallError(f"iptables -t {table} -D {chain}: {done.stderr.strip()}")


def chain_exists(table: str, chain: str) -> bool:
    done = _run([_binary("iptables"), "-w", "-t", table, "-n", "-L", chain])
    return done.returncode == 0


def delete_chains(table: str, chains: Sequence[str]) -> None:
    """Flush then delete the chains (missing ones are fine); jumps into them go first."""
    present = [c for c in chains if chain_exists(table, c)]
    for chain in present:
        _run([_binary("iptables"), "-w", "-t", table, "-F", chain])
    for chain in present:
        done = _run([_binary("iptables"), "-w", "-t", table, "-X", chain])
        if done.returncode != 0:
            raise FirewallError(f"iptables -t {table} -X {chain}: {done.stderr.strip()}")
