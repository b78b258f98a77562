"""Docker seccomp profiles: parse Docker's JSON and resolve it to the OCI section.

Pure: no I/O. Mirrors moby/profiles/seccomp v0.2.3 (seccomp.go, seccomp_linux.go,
kernel_linux.go) as vendored by moby at commit b985e2313a86.

Docker's profile format extends the OCI ``linux.seccomp`` object with ``archMap``
(an architecture and its sub-architectures) and per-rule ``includes``/``excludes``
filters on capabilities, architectures and minimum kernel. dockerd resolves these per
container before handing the profile to runc; :func:`to_oci` does the same.

Invariants:
- the output holds only OCI fields (``comment``, ``includes``, ``excludes``, ``name``
  and ``archMap`` never reach runc);
- rule order is kept, rules are never merged or de-duplicated;
- ``None`` means "no seccomp" (a profile with neither defaultAction nor syscalls).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Filter",
    "Profile",
    "Rule",
    "SeccompError",
    "load_profile",
    "native_arch",
    "to_oci",
]


class SeccompError(ValueError):
    """A profile dockerd would refuse; messages are moby's."""


@dataclass(frozen=True)
class Filter:
    """An ``includes``/``excludes`` condition; empty fields do not constrain."""

    caps: tuple[str, ...] = ()
    arches: tuple[str, ...] = ()
    min_kernel: tuple[int, int] | None = None


@dataclass(frozen=True)
class Rule:
    """One syscall rule. ``spec`` holds the OCI fields (names, action, errnoRet, args)."""

    spec: Mapping[str, Any]
    includes: Filter | None = None
    excludes: Filter | None = None


@dataclass(frozen=True)
class Profile:
    """A parsed Docker seccomp profile.

    ``base`` holds the top-level OCI fields (defaultAction, defaultErrnoRet,
    architectures, flags, listenerPath, listenerMetadata) exactly as given.
    ``arch_map`` is ``((arch, (sub_arch, ...)), ...)``.
    """

    base: Mapping[str, Any]
    arch_map: tuple[tuple[str, tuple[str, ...]], ...]
    rules: tuple[Rule, ...]


# moby/profiles seccomp_linux.go goToNative (GOARCH -> libseccomp name). We also accept
# `uname -m` spellings, since that is what a host probe reports.
_TO_NATIVE: dict[str, str] = {
    "386": "x86",
    "amd64": "amd64",
    "arm": "arm",
    "arm64": "arm64",
    "loong64": "loongarch64",
    "mips64": "mips64",
    "mips64p32": "mips64n32",
    "mips64le": "mipsel64",
    "mips64p32le": "mips3l64n32",
    "mipsle": "mipsel",
    "ppc": "ppc",
    "ppc64": "ppc64",
    "ppc64le": "ppc64le",
    "riscv64": "riscv64",
    "s390": "s390",
    "s390x": "s390x",
    # uname -m
    "x86_64": "amd64",
    "i386": "x86",
    "i686": "x86",
    "aarch64": "arm64",
    "armv7l": "arm",
    "loongarch64": "loongarch64",
}

# moby/profiles seccomp_linux.go nativeToSeccomp. Note: it has "loong64" while
# goToNative yields "loongarch64", so on loong64 dockerd sets no architectures; we keep
# that quirk.
_NATIVE_TO_SECCOMP: dict[str, str] = {
    "x86": "SCMP_ARCH_X86",
    "amd64": "SCMP_ARCH_X86_64",
    "arm": "SCMP_ARCH_ARM",
    "arm64": "SCMP_ARCH_AARCH64",
    "loong64": "SCMP_ARCH_LOONGARCH64",
    "mips64": "SCMP_ARCH_MIPS64",
    "mips64n32": "SCMP_ARCH_MIPS64N32",
    "mipsel64": "SCMP_ARCH_MIPSEL64",
    "mips3l64n32": "SCMP_ARCH_MIPSEL64N32",
    "mipsle": "SCMP_ARCH_MIPSEL",
    "ppc": "SCMP_ARCH_PPC",
    "ppc64": "SCMP_ARCH_PPC64",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "riscv64": "SCMP_ARCH_RISCV64",
    "s390": "SCMP_ARCH_S390",
    "s390x": "SCMP_ARCH_S390X",
}

# runtime-spec specs-go LinuxSeccomp: every field but defaultAction is omitempty.
_BASE_FIELDS = (
    "defaultAction",
    "defaultErrnoRet",
    "architectures",
    "flags",
    "listenerPath",
    "listenerMetadata",
)


def native_arch(arch: str) -> str:
    """Map a GOARCH or ``uname -m`` name to libseccomp's native name (profile arches)."""
    try:
        return _TO_NATIVE[arch]
    except KeyError:
        raise SeccompError(f"unsupported architecture: {arch!r}") from None


def _parse_kernel(value: object) -> tuple[int, int] | None:
    # moby/profiles seccomp.go KernelVersion.UnmarshalJSON
    raw = json.dumps(value)
    expected = f'invalid kernel version: {raw}, expected "<kernel>.<major>"'
    if not isinstance(value, str):
        raise SeccompError(expected)
    if value == "":
        return None
    parts = value.split(".", 2)
    if len(parts) != 2 or not all(p.isdigit() and int(p) < 256 for p in parts):
        # strconv.ParseUint(.., 10, 8): decimal digits fitting a uint8
        raise SeccompError(expected)
    kernel, major = int(parts[0]), int(parts[1])
    if kernel == 0 and major == 0:
        raise SeccompError(f"{expected}: version cannot be 0.0")
    return (kernel, major)


def _str_list(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SeccompError(
            f"Decoding seccomp profile failed: expected a list of strings, got {value!r}"
        )
    return tuple(value)


def _filter(value: object) -> Filter | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SeccompError(f"Decoding seccomp profile failed: bad filter {value!r}")
    return Filter(
        caps=_str_list(value.get("caps")),
        arches=_str_list(value.get("arches")),
        min_kernel=_parse_kernel(value["minKernel"]) if "minKernel" in value else None,
    )


def _rule(value: object) -> Rule:
    if not isinstance(value, dict):
        raise SeccompError(f"Decoding seccomp profile failed: bad syscall rule {value!r}")
    names = list(_str_list(value.get("names")))
    name = value.get("name") or ""
    if name:
        # moby/profiles seccomp_linux.go setupSeccomp: legacy "name" field.
        if names:
            raise SeccompError(
                "both 'name' and 'names' are specified in the seccomp profile, "
                "use either 'name' or 'names'"
            )
        names = [str(name)]
    spec: dict[str, Any] = {"names": names, "action": value.get("action", "")}
    if value.get("errnoRet") is not None:
        spec["errnoRet"] = value["errnoRet"]
    args = value.get("args")
    if args:
        spec["args"] = [_arg(a) for a in args]
    return Rule(
        spec=spec,
        includes=_filter(value.get("includes")),
        excludes=_filter(value.get("excludes")),
    )


def _arg(value: object) -> dict[str, Any]:
    # runtime-spec LinuxSeccompArg: index, value, op always; valueTwo omitempty.
    if not isinstance(value, dict):
        raise SeccompError(f"Decoding seccomp profile failed: bad syscall arg {value!r}")
    arg: dict[str, Any] = {"index": value.get("index", 0), "value": value.get("value", 0)}
    if value.get("valueTwo"):
        arg["valueTwo"] = value["valueTwo"]
    arg["op"] = value.get("op", "")
    return arg


def load_profile(json_text: str) -> Profile:
    """Parse a Docker seccomp profile (the JSON dockerd and ``--security-opt`` accept)."""
    try:
        doc = json.loads(json_text)
    except json.JSONDecodeError as exc:
        # moby/profiles seccomp_linux.go LoadProfile
        raise SeccompError(f"Decoding seccomp profile failed: {exc}") from None
    if not isinstance(doc, dict):
        raise SeccompError("Decoding seccomp profile failed: profile is not a JSON object")
    base = {k: doc[k] for k in _BASE_FIELDS if doc.get(k) not in (None, "", [], {})}
    arch_map = tuple(
        (str(entry["architecture"]), _str_list(entry.get("subArchitectures")))
        for entry in doc.get("archMap") or ()
    )
    rules = tuple(_rule(r) for r in doc.get("syscalls") or ())
    return Profile(base=base, arch_map=arch_map, rules=rules)


# Docker's default profile, shipped with the package unmodified: moby's
# vendor/github.com/moby/profiles/seccomp/default.json at b985e2313a86 (Apache-2.0,
# sha256 536529b6...c74; see ../shared/specs/docker-seccomp-default.SOURCE.md).
DEFAULT_PROFILE_RESOURCE = "seccomp_default.json"


def default_profile_text() -> str:
    """The JSON text of Docker's default profile (a package resource, not a file path)."""
    from importlib.resources import files

    return (files("dockyard.engine.security") / DEFAULT_PROFILE_RESOURCE).read_text()


def default_profile() -> Profile:
    return load_profile(default_profile_text())


def _kernel_at_least(kernel: tuple[int, int], minimum: tuple[int, int]) -> bool:
    # moby/profiles kernel_linux.go kernelGreaterEqualThan: only "<kernel>.<major>".
    return kernel[:2] >= minimum


def _applies(
    rule: Rule, *, native: str, capabilities: frozenset[str], kernel: tuple[int, int]
) -> bool:
    # moby/profiles seccomp_linux.go setupSeccomp, the `Loop:` body: excludes first,
    # any one excluded arch/cap/kernel drops the rule; includes need all caps, one
    # of the arches and the minimum kernel.
    ex = rule.excludes
    if ex is not None:
        if ex.arches and native in ex.arches:
            return False
        if any(c in capabilities for c in ex.caps):
            return False
        if ex.min_kernel is not None and _kernel_at_least(kernel, ex.min_kernel):
            return False
    inc = rule.includes
    if inc is not None:
        if inc.arches and native not in inc.arches:
            return False
        if not all(c in capabilities for c in inc.caps):
            return False
        if inc.min_kernel is not None and not _kernel_at_least(kernel, inc.min_kernel):
            return False
    return True


def to_oci(
    profile: Profile,
    *,
    capabilities: Iterable[str],
    arch: str = "x86_64",
    kernel: tuple[int, ...] = (6, 1),
) -> dict[str, Any] | None:
    """Resolve ``profile`` for one container: the OCI ``linux.seccomp`` object, or None.

    ``capabilities`` is the container's bounding set (dockerd reads
    ``process.capabilities.bounding`` after cap-add/drop). ``arch`` is a GOARCH or
    ``uname -m`` name; ``kernel`` the host's (kernel, major[, ...]) version.
    """
    # No default action specified, no syscalls listed: seccomp disabled (moby).
    if not profile.base.get("defaultAction") and not profile.rules:
        return None
    if profile.base.get("architectures") and profile.arch_map:
        raise SeccompError(
            "both 'architectures' and 'archMap' are specified in the seccomp profile, "
            "use either 'architectures' or 'archMap'"
        )
    native = native_arch(arch)
    out: dict[str, Any] = {"defaultAction": profile.base.get("defaultAction", "")}
    for key in _BASE_FIELDS[1:]:
        if key in profile.base:
            out[key] = profile.base[key]
    seccomp_arch = _NATIVE_TO_SECCOMP.get(native)
    if seccomp_arch is not None:
        for main, subs in profile.arch_map:
            if main == seccomp_arch:
                out["architectures"] = [main, *subs]
                break
    caps = frozenset(capabilities)
    kernel_pair = (kernel[0], kernel[1] if len(kernel) > 1 else 0)
    syscalls = [
        copy.deepcopy(dict(rule.spec))
        for rule in profile.rules
        if _applies(rule, native=native, capabilities=caps, kernel=kernel_pair)
    ]
    if syscalls:
        out["syscalls"] = syscalls
    return out
