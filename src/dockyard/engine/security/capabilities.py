"""Linux capabilities as dockerd handles them: defaults, normalisation, add/drop.

Pure: no I/O. Mirrors moby `daemon/pkg/oci/caps` (utils.go, defaults.go) at commit
b985e2313a86. Invariants:

- every name returned is upper case with a ``CAP_`` prefix, except the magic ``ALL``
  which :func:`normalize` passes through and :func:`tweak` expands;
- :func:`tweak` keeps Docker's ordering (base order, then additions in request order)
  and, like Docker, does not de-duplicate an added capability already in the base.

dockerd intersects the known list with the capabilities of its own process
(`ccaps.Current()`); :func:`tweak` takes that set as ``known`` (the daemon reads its own
bounding set; a root daemon in a restricted container may lack some).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ALL",
    "ALL_CAPABILITIES",
    "DEFAULT_CAPABILITIES",
    "CapabilityError",
    "normalize",
    "tweak",
]

ALL = "ALL"

# moby daemon/pkg/oci/caps/defaults.go DefaultCapabilities(); order matters, it is the
# order of process.capabilities.* in the spec.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# containerd pkg/cap/cap_linux.go Known() (capsLatest = kernel 5.9, 41 entries), which
# moby's caps.initCaps uses as the known list; order is the kernel's bit order.
ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

_KNOWN = frozenset(ALL_CAPABILITIES)


class CapabilityError(ValueError):
    """An unknown capability name; the message is dockerd's (an InvalidParameter, 400)."""


def normalize(name: str) -> str:
    """Return ``CAP_X`` for ``x``, ``X`` or ``CAP_X``; ``ALL`` (any case) stays ``ALL``.

    # moby caps/utils.go NormalizeLegacyCapabilities: upper-case, add the prefix,
    # then check against the known list.
    """
    upper = name.upper()
    if upper == ALL:
        return ALL
    if not upper.startswith("CAP_"):
        upper = "CAP_" + upper
    if upper not in _KNOWN:
        # Go's %q: a double-quoted string; names are plain ASCII here.
        raise CapabilityError(f'unknown capability: "{upper}"')
    return upper


def tweak(
    base: Iterable[str],
    add: Iterable[str] = (),
    drop: Iterable[str] = (),
    *,
    privileged: bool = False,
    known: Iterable[str] = ALL_CAPABILITIES,
) -> tuple[str, ...]:
    """Apply ``--cap-add``/``--cap-drop`` to ``base`` as dockerd does.

    # moby caps/utils.go TweakCapabilities:
    # - privileged: every capability, add/drop ignored (and not validated);
    # - nothing to tweak: ``base`` unchanged (and not validated);
    # - ALL in add: every capability except the dropped ones (drop ALL then has no
    #   effect, since no single name equals "ALL");
    # - ALL in drop: exactly the added ones;
    # - otherwise: base minus drop, then add appended in request order.
    # Drops are normalised before adds, so a bad drop is reported first.
    # ``known`` is what "every capability" means: the daemon's own set (``ccaps.Current``).
    """
    base_caps = tuple(base)
    adds_raw = tuple(add)
    drops_raw = tuple(drop)
    every = tuple(c for c in ALL_CAPABILITIES if c in frozenset(known))
    if privileged:
        return every
    if not adds_raw and not drops_raw:
        return base_caps
    drops = [normalize(c) for c in drops_raw]
    adds = [normalize(c) for c in adds_raw]
    if ALL in adds:
        return tuple(c for c in every if c not in drops)
    if ALL in drops:
        return tuple(adds)
    kept = [c for c in base_caps if c not in drops]
    return tuple(kept + adds)
