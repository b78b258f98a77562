"""`debian:<suite>` images built from Debian's archive with mmdebstrap, with no registry.

Role: give the engine a real Debian base image offline (`FROM debian:bookworm`), made the
way Docker Hub's official image is made by debuerreotype, but with mmdebstrap:

- the `minbase` variant (Priority: required packages and apt), merged-/usr set up as
  debootstrap does it (mmdebstrap's `maybe-merged-usr` hook: no usrmerge, so no perl);
- debuerreotype's minimizing config: `/usr/sbin/policy-rc.d` (exit 101, no daemon starts
  during `apt-get install`), dpkg `force-unsafe-io`, and the apt.conf.d files
  `docker-clean`, `docker-autoremove-suggests`, `docker-gzip-indexes` and
  `docker-no-languages`;
- apt configured for the mirror it was built from (`/etc/apt/sources.list.d/debian.sources`
  in deb822 form with the suite, `-updates` and `-security`, as Docker Hub's bookworm), no
  package lists nor apt caches in the image, no device nodes under `/dev`, no
  `/etc/resolv.conf` nor `/etc/hostname` (the engine provides them to each container);
- the image config of Docker Hub's image: `Cmd ["bash"]`, the default `PATH`, the host's
  architecture, `created` = the build's SOURCE_DATE_EPOCH; plus the label
  `org.dockyard.bootstrap.key=<recipe key>`.

Invariants:
- The recipe key is the SHA-256 of the canonical recipe (suite, includes, mirrors, dpkg
  architecture, recipe version). An image carrying that key in its labels is reused as is;
  the rootfs tarball is kept under `<data-root>/cache/bootstrap/debian/<key>/`, so a
  re-import after `docker rmi` runs no mmdebstrap and downloads nothing.
- Deterministic where mmdebstrap allows: SOURCE_DATE_EPOCH is the newest `Date:` of the
  suites' InRelease files, so the same mirror content gives the same tar (mmdebstrap's
  reproducible mode), the same DiffID and, the config being derived from values only, the
  same image ID.
- Nothing half-written survives a failure: a build happens in a staging directory under the
  cache (mmdebstrap's own TMPDIR included) that is renamed into place only when complete and
  removed otherwise, after unmounting anything a killed mmdebstrap left mounted there; the
  image goes through `ImageStore.register_layer` + `commit_image`, each atomic.
- One build per key at a time, across processes: an flock on `<key>.lock` in the cache.

The first section (recipe, sources, hook files, argv, image config) is pure; the I/O driver
(`bootstrap_debian`) follows it.
"""

from __future__ import annotations

import contextlib
import email.utils
import enum
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dockyard.engine.images.model import (
    ContainerConfig,
    HistoryEntry,
    ImageConfig,
    InvalidReference,
    RootFS,
    format_time,
    parse_reference,
)
from dockyard.engine.images.store import ImageStore, ImageStoreError

__all__ = [
    "BOOTSTRAP_KEY_LABEL",
    "KNOWN_SUITES",
    "AptSource",
    "BootstrapError",
    "BootstrapOutcome",
    "DebianBootstrap",
    "DebianRecipe",
    "bootstrap_debian",
    "build_image_config",
    "customize_files",
    "default_refs",
    "essential_files",
    "host_mirrors",
    "mmdebstrap_argv",
    "parse_release_epoch",
    "recipe_for",
    "resolve_suite",
]

# Bump when the recipe changes what is built, so that older cached images are not reused.
RECIPE_VERSION = 1
BOOTSTRAP_KEY_LABEL = "org.dockyard.bootstrap.key"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
# Docker Hub's debian image config (`docker inspect debian:bookworm`: Config.Env, Config.Cmd).
DEBIAN_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEBIAN_CMD = ("bash",)
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MMDEBSTRAP = Path("/usr/bin/mmdebstrap")
MMTARFILTER = Path("/usr/bin/mmtarfilter")
MERGED_USR_HOOKS = Path("/usr/share/mmdebstrap/hooks/maybe-merged-usr")
# Release codenames and the version numbers Docker Hub also tags them with (`debian:12`).
KNOWN_SUITES: Mapping[str, str | None] = {
    "bullseye": "11",
    "bookworm": "12",
    "trixie": "13",
    "forky": "14",
    "sid": None,
    "unstable": None,
}
# Development suites have no -updates or -security archive.
_DEVELOPMENT_SUITES = frozenset({"sid", "unstable"})
_SUITE_RE = re.compile(r"^[a-z][a-z0-9-]{1,31}$")
# A package name (Debian Policy 5.6.1), optionally =version or /release. apt patterns and
# .deb paths, which mmdebstrap also takes, are refused: the key could not cover them.
_INCLUDE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(?:=[A-Za-z0-9.+~:-]+|/[a-z0-9-]+)?$")
_MIRROR_RE = re.compile(r"^(?:https?://[^\s/]+|file://)(?:/[^\s]*)?$")
_DPKG_TO_GO_ARCH: Mapping[str, tuple[str, str]] = {
    # dpkg architecture -> (GOARCH, variant), as Docker Hub's per-arch debian configs say.
    "amd64": ("amd64", ""),
    "arm64": ("arm64", "v8"),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v5"),
    "i386": ("386", ""),
    "mips64el": ("mips64le", ""),
    "ppc64el": ("ppc64le", ""),
    "riscv64": ("riscv64", ""),
    "s390x": ("s390x", ""),
}
_BUILD_TIMEOUT_S = 1800.0
_FETCH_TIMEOUT_S = 30.0
_TERM_GRACE_S = 30.0
_LOG_TAIL_LINES = 15
_RELEASE_HEAD_BYTES = 64 * 1024


class BootstrapError(ImageStoreError):
    """The image could not be bootstrapped; the message says why, for a person."""


# ---------------------------------------------------------------------------
# The recipe (pure)


@dataclass(frozen=True)
class AptSource:
    """One deb822 stanza of `sources.list.d/*.sources`."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...] = ("main",)

    def deb822(self) -> str:
        return (
            "Types: deb\n"
            f"URIs: {self.uri}\n"
            f"Suites: {' '.join(self.suites)}\n"
            f"Components: {' '.join(self.components)}\n"
            f"Signed-By: {KEYRING}\n"
        )

    def one_line(self, suite: str) -> str:
        """The one-line form mmdebstrap takes as a MIRROR argument."""
        return f"deb {self.uri} {suite} {' '.join(self.components)}"


@dataclass(frozen=True)
class DebianRecipe:
    """Everything that decides what is built; its `key()` names the result."""

    suite: str
    architecture: str  # dpkg's name (amd64, arm64, armhf, ...)
    includes: tuple[str, ...] = ()
    mirror: str = DEFAULT_MIRROR
    security_mirror: str | None = DEFAULT_SECURITY_MIRROR

    def __post_init__(self) -> None:
        if not _SUITE_RE.match(self.suite):
            raise BootstrapError(f"invalid suite name: {self.suite!r}")
        if self.architecture not in _DPKG_TO_GO_ARCH:
            raise BootstrapError(f"unsupported architecture: {self.architecture!r}")
        bad = [name for name in self.includes if not _INCLUDE_RE.match(name)]
        if bad:
            raise BootstrapError(f"invalid package names in --include: {', '.join(bad)}")
        for uri in (self.mirror, self.security_mirror):
            if uri is not None and not _MIRROR_RE.match(uri):
                raise BootstrapError(f"invalid mirror URL: {uri!r}")
        # Canonical forms, so that equal recipes have equal keys.
        object.__setattr__(self, "includes", tuple(sorted(set(self.includes))))
        object.__setattr__(self, "mirror", self.mirror.rstrip("/"))
        if self.security_mirror is not None:
            object.__setattr__(self, "security_mirror", self.security_mirror.rstrip("/"))

    def sources(self) -> tuple[AptSource, ...]:
        """The archives the image is built from and configured for (Docker Hub's layout)."""
        if self.suite in _DEVELOPMENT_SUITES:
            return (AptSource(self.mirror, (self.suite,)),)
        main = AptSource(self.mirror, (self.suite, f"{self.suite}-updates"))
        if self.security_mirror is None:
            return (main,)
        return (main, AptSource(self.security_mirror, (f"{self.suite}-security",)))

    def key(self) -> str:
        """The hex SHA-256 of the canonical recipe: the cache key and the image's label."""
        canonical = json.dumps(
            {
                "architecture": self.architecture,
                "includes": list(self.includes),
                "mirror": self.mirror,
                "recipe": RECIPE_VERSION,
                "security_mirror": self.security_mirror,
                "suite": self.suite,
                "variant": "minbase",
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


def resolve_suite(name: str) -> str:
    """A suite name, or a release number Docker Hub tags (`12`), as the suite name."""
    for suite, version in KNOWN_SUITES.items():
        if name == version:
            return suite
    return name


def default_refs(suite: str) -> tuple[str, ...]:
    """`debian:<suite>`, and `debian:<version>` for a numbered release (Docker Hub's alias)."""
    version = KNOWN_SUITES.get(suite)
    return (f"debian:{suite}",) if version is None else (f"debian:{suite}", f"debian:{version}")


def _deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    stanza: dict[str, str] = {}
    for raw in [*text.splitlines(), ""]:
        line = raw.rstrip()
        if line.startswith("#"):
            continue
        if not line:
            if stanza:
                yield stanza
            stanza = {}
            continue
        field, sep, value = line.partition(":")
        if sep and not field.startswith((" ", "\t")):
            stanza[field.strip().lower()] = value.strip()


def host_mirrors(files: Mapping[str, str], suite: str) -> tuple[str | None, str | None]:
    """(archive URI, security URI) for `suite` from the host's apt sources.

    `files` maps a path (`*.list` one-line format, `*.sources` deb822) to its text. The
    archive is the first `deb` entry that carries `suite`, else the first whose URI path
    ends in `/debian` (Debian's layout, so another release is served from the same
    mirror); likewise `<suite>-security` and `/debian-security`. Third-party repositories
    match neither. None when nothing matches.
    """
    entries: list[tuple[str, tuple[str, ...]]] = []
    for path, text in sorted(files.items()):
        if path.endswith(".sources"):
            for stanza in _deb822_stanzas(text):
                if "deb" in stanza.get("types", "").split() and stanza.get("enabled") != "no":
                    for uri in stanza.get("uris", "").split():
                        entries.append((uri.rstrip("/"), tuple(stanza.get("suites", "").split())))
        elif path.endswith(".list"):
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    entries.append((words[1].rstrip("/"), (words[2],)))

    def pick(wanted_suite: str, path_suffix: str) -> str | None:
        exact = (uri for uri, suites in entries if wanted_suite in suites)
        layout = (uri for uri, _ in entries if uri.endswith(path_suffix))
        return next(exact, None) or next(layout, None)

    return pick(suite, "/debian"), pick(f"{suite}-security", "/debian-security")


def parse_release_epoch(release_head: str) -> int:
    """The `Date:` of an InRelease/Release file as a Unix time in seconds."""
    for line in release_head.splitlines():
        if line.startswith("Date:"):
            try:
                return int(email.utils.parsedate_to_datetime(line[5:].strip()).timestamp())
            except (TypeError, ValueError) as exc:
                raise BootstrapError(f"unreadable Release date {line!r}: {exc}") from None
    raise BootstrapError("the Release file has no Date field")


def _file(name: str, text: str, mode: int, mtime_s: int) -> tuple[tarfile.TarInfo, bytes]:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = mtime_s
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info, data


def _tar(entries: Sequence[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def essential_files(epoch_s: int) -> bytes:
    """A tar (relative to /) of what must be in place before apt installs anything.

    debuerreotype's minimizing config: policy-rc.d stops maintainer scripts from starting
    services (invoke-rc.d exit status 101: "action forbidden by policy"), and dpkg skips
    its fsyncs (`force-unsafe-io`), which only a crash mid-build could notice.
    """
    return _tar(
        [
            _file(
                "usr/sbin/policy-rc.d",
                "#!/bin/sh\n\n# Services cannot start in a container build: forbid it.\nexit 101\n",
                0o755,
                epoch_s,
            ),
            _file("etc/dpkg/dpkg.cfg.d/docker-apt-speedup", "force-unsafe-io\n", 0o644, epoch_s),
        ]
    )


def customize_files(recipe: DebianRecipe, epoch_s: int) -> bytes:
    """A tar (relative to /) of apt's configuration in the finished image."""
    sources = "\n".join(source.deb822() for source in recipe.sources())
    apt_conf = {
        # No binary caches: they are rebuilt on the next apt run anyway.
        "docker-clean": 'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n',
        # Removing a package also removes what it pulled in through Suggests.
        "docker-autoremove-suggests": 'Apt::AutoRemove::SuggestsImportant "false";\n',
        # Keep the lists compressed on disk: a much smaller `apt-get update` layer.
        "docker-gzip-indexes": 'Acquire::GzipIndexes "true";\n',
        # No description translations.
        "docker-no-languages": 'Acquire::Languages "none";\n',
    }
    entries = [_file("etc/apt/sources.list.d/debian.sources", sources, 0o644, epoch_s)]
    entries += [
        _file(f"etc/apt/apt.conf.d/{name}", text, 0o644, epoch_s)
        for name, text in sorted(apt_conf.items())
    ]
    return _tar(entries)


def mmdebstrap_argv(
    recipe: DebianRecipe,
    *,
    essential_tar: Path,
    customize_tar: Path,
    mmdebstrap: Path = MMDEBSTRAP,
    merged_usr_hooks: Path | None = MERGED_USR_HOOKS,
) -> list[str]:
    """The mmdebstrap command line; the tarball goes to standard output."""
    argv = [
        str(mmdebstrap),
        "--variant=minbase",
        "--format=tar",
        f"--architectures={recipe.architecture}",
        # Ours is installed by the essential hook and stays in the image; mmdebstrap's own
        # would be removed at the end of the run.
        "--skip=chroot/policy-rc.d",
    ]
    if merged_usr_hooks is not None:
        argv.append(f"--hook-dir={merged_usr_hooks}")
    if recipe.includes:
        argv.append("--include=" + ",".join(recipe.includes))
    argv += [
        f"--essential-hook=tar-in {essential_tar} /",
        f"--customize-hook=tar-in {customize_tar} /",
        # Docker bind-mounts resolv.conf and hostname into every container; mmdebstrap copies
        # the host's, which would make the tar depend on the building machine. apt's binary
        # caches go too (not reproducible, 70 MB): mmdebstrap's final `apt-get clean` reads
        # docker-clean's empty Dir::Cache::pkgcache and so no longer knows their names.
        '--customize-hook=rm -f "$1/etc/apt/sources.list" "$1/etc/resolv.conf"'
        ' "$1/etc/hostname" "$1"/var/cache/apt/*.bin',
        recipe.suite,
        "-",
    ]
    argv += [source.one_line(suite) for source in recipe.sources() for suite in source.suites]
    return argv


def build_image_config(recipe: DebianRecipe, diff_id: str, epoch_s: int) -> bytes:
    """The image config (its digest is the image ID): a function of its arguments only."""
    go_arch, variant = _DPKG_TO_GO_ARCH[recipe.architecture]
    created = format_time(datetime.fromtimestamp(epoch_s, UTC))
    includes = f" --include={','.join(recipe.includes)}" if recipe.includes else ""
    return ImageConfig(
        architecture=go_arch,
        variant=variant,
        os="linux",
        config=ContainerConfig(
            env=(DEBIAN_PATH_ENV,),
            cmd=DEBIAN_CMD,
            labels=((BOOTSTRAP_KEY_LABEL, recipe.key()),),
        ),
        rootfs=RootFS(diff_ids=(diff_id,)),
        history=(
            HistoryEntry(
                created=created,
                created_by=f"# mmdebstrap --variant=minbase{includes} {recipe.suite}"
                f" {recipe.mirror} @{epoch_s}",
                comment="dockyard image bootstrap debian",
            ),
        ),
        created=created,
    ).to_json()


# ---------------------------------------------------------------------------
# The driver (I/O)


class BootstrapOutcome(enum.Enum):
    BUILT = "built"
    CACHED = "cached"  # the image was in the store already
    REIMPORTED = "imported from the cached rootfs"  # no mmdebstrap run, no download


@dataclass(frozen=True)
class DebianBootstrap:
    image_id: str
    refs: tuple[str, ...]
    key: str
    outcome: BootstrapOutcome
    rootfs_path: Path | None  # the cached tarball; None if only the image is left


@dataclass(frozen=True)
class _CacheEntry:
    rootfs: Path
    epoch_s: int
    diff_id: str | None


def host_architecture() -> str:
    """dpkg's name for the host architecture (the image is built for the host)."""
    try:
        out = subprocess.run(
            ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BootstrapError(f"cannot tell the host architecture (dpkg): {exc}") from None
    return out.stdout.strip()


def read_host_sources(root: Path = Path("/etc/apt")) -> dict[str, str]:
    files: dict[str, str] = {}
    for path in [root / "sources.list", *sorted((root / "sources.list.d").glob("*"))]:
        if path.suffix in (".list", ".sources") and path.is_file():
            files[str(path)] = path.read_text(errors="replace")
    return files


def recipe_for(
    suite: str,
    *,
    includes: Sequence[str] = (),
    mirror: str | None = None,
    architecture: str | None = None,
    sources: Mapping[str, str] | None = None,
) -> DebianRecipe:
    """The recipe with the host's defaults: its architecture and its apt mirrors.

    Without `mirror`, the Debian archive and security archive the host's apt uses. With it,
    the security archive is `<mirror>-security` when the mirror's path ends in `/debian`
    (deb.debian.org's layout), else none.
    """
    if mirror is None:
        host = read_host_sources() if sources is None else sources
        archive, security = host_mirrors(host, suite)
        archive = archive or DEFAULT_MIRROR
        security = security or (DEFAULT_SECURITY_MIRROR if archive == DEFAULT_MIRROR else None)
    else:
        archive = mirror.rstrip("/")
        security = f"{archive}-security" if archive.endswith("/debian") else None
    return DebianRecipe(
        suite=suite,
        architecture=architecture or host_architecture(),
        includes=tuple(includes),
        mirror=archive,
        security_mirror=security,
    )


def _fetch_release_epoch(uri: str, suite: str) -> int:
    url = f"{uri}/dists/{suite}/InRelease"
    try:
        with urllib.request.urlopen(url, timeout=_FETCH_TIMEOUT_S) as response:
            head = response.read(_RELEASE_HEAD_BYTES)
    except urllib.error.HTTPError as exc:
        raise BootstrapError(
            f"the mirror has no suite {suite!r}: GET {url}: {exc.code} {exc.reason}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BootstrapError(f"cannot reach the Debian mirror: GET {url}: {reason}") from None
    return parse_release_epoch(head.decode("utf-8", errors="replace"))


def release_epoch(recipe: DebianRecipe) -> int:
    """SOURCE_DATE_EPOCH: the newest Date of the suites' InRelease files."""
    return max(
        _fetch_release_epoch(source.uri, suite)
        for source in recipe.sources()
        for suite in source.suites
    )


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _mounts_under(path: Path) -> list[str]:
    base = str(path.resolve())
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4].replace("\\040", " ") for line in info]
    hits = [p for p in points if p == base or p.startswith(base + "/")]
    return sorted(hits, key=lambda p: p.count("/"), reverse=True)


def _remove_staging(path: Path) -> None:
    """Remove a staging tree, first unmounting what a killed mmdebstrap left mounted in it.

    rmtree must never descend into a mount: mmdebstrap's chroot binds host paths (/dev
    nodes, /proc, /sys) in root mode.
    """
    for point in _mounts_under(path):
        if subprocess.run(["umount", point], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    leftover = _mounts_under(path)
    if leftover:
        raise BootstrapError(f"cannot unmount {leftover[0]}; left {path} in place")
    shutil.rmtree(path, ignore_errors=True)


def _log_tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM first: mmdebstrap's handler unmounts its chroot; SIGKILL only if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(_TERM_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _run_mmdebstrap(recipe: DebianRecipe, epoch_s: int, staging: Path, rootfs: Path) -> None:
    """mmdebstrap | mmtarfilter (drops /dev's nodes, keeps /dev) > rootfs, in `staging`."""
    for tool in (MMDEBSTRAP, MMTARFILTER):
        if not os.access(tool, os.X_OK):
            raise BootstrapError(f"{tool} is missing: install the mmdebstrap package")
    essential_tar = staging / "essential.tar"
    customize_tar = staging / "customize.tar"
    essential_tar.write_bytes(essential_files(epoch_s))
    customize_tar.write_bytes(customize_files(recipe, epoch_s))
    argv = mmdebstrap_argv(
        recipe,
        essential_tar=essential_tar,
        customize_tar=customize_tar,
        merged_usr_hooks=MERGED_USR_HOOKS if MERGED_USR_HOOKS.is_dir() else None,
    )
    tmp = staging / "tmp"
    tmp.mkdir()
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "SOURCE_DATE_EPOCH": str(epoch_s),
        # mmdebstrap's chroot lives here, so a failed run leaves nothing outside staging.
        "TMPDIR": str(tmp),
        "LC_ALL": "C.UTF-8",
    }
    log = staging / "mmdebstrap.log"
    filter_log = staging / "mmtarfilter.log"
    with (
        open(log, "wb") as log_file,
        open(filter_log, "wb") as filter_log_file,
        open(rootfs, "xb") as out,
    ):
        builder = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file, env=env
        )
        tar_filter: subprocess.Popen[bytes] | None = None
        try:
            pipe = builder.stdout
            if pipe is None:
                raise BootstrapError("mmdebstrap's output pipe is missing")
            try:
                tar_filter = subprocess.Popen(
                    [str(MMTARFILTER), "--path-exclude=/dev/*"],
                    stdin=pipe,
                    stdout=out,
                    stderr=filter_log_file,
                    env=env,
                )
            finally:
                pipe.close()  # the filter holds the read end now
            filter_status = tar_filter.wait(_BUILD_TIMEOUT_S)
            build_status = builder.wait(_TERM_GRACE_S)
        except subprocess.TimeoutExpired:
            raise BootstrapError(f"mmdebstrap did not finish in {_BUILD_TIMEOUT_S:.0f}s") from None
        finally:
            # Also on Ctrl-C: nothing of the build may outlive this call.
            _stop(builder)
            if tar_filter is not None:
                _stop(tar_filter)
        out.flush()
        os.fsync(out.fileno())
    if build_status != 0:
        raise BootstrapError(
            f"mmdebstrap failed (exit status {build_status}) building {recipe.suite} from "
            f"{recipe.mirror}:\n{_log_tail(log)}"
        )
    if filter_status != 0:
        raise BootstrapError(
            f"mmtarfilter failed (exit status {filter_status}):\n{_log_tail(filter_log)}"
        )


class _Cache:
    """`<data-root>/cache/bootstrap/debian`: one directory per recipe key, renamed in whole."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def entry_dir(self, key: str) -> Path:
        return self.root / key

    def lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        return _flocked(self.root / f"{key}.lock")

    def load(self, key: str) -> _CacheEntry | None:
        directory = self.entry_dir(key)
        try:
            meta = json.loads((directory / "meta.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        rootfs = directory / "rootfs.tar"
        if not rootfs.is_file():
            return None
        return _CacheEntry(rootfs, int(meta["epoch_s"]), meta.get("diff_id"))

    def staging(self, key: str) -> Path:
        # Leftovers of this key's interrupted builds: nobody else uses them (we hold the lock).
        for stale in self.tmp.glob(f"{key}.*"):
            _remove_staging(stale)
        path = self.tmp / f"{key}.{uuid.uuid4().hex}"
        # Traversable: apt downloads into the chroot as its sandbox user `_apt`.
        path.mkdir(mode=0o755)
        return path

    def commit(self, key: str, staging: Path, meta: Mapping[str, object]) -> _CacheEntry:
        """Keep only the rootfs and its metadata, and rename them into place."""
        for item in staging.iterdir():
            if item.name != "rootfs.tar":
                if item.is_dir() and not item.is_symlink():
                    _remove_staging(item)
                else:
                    item.unlink()
        (staging / "meta.json").write_text(json.dumps(dict(meta), indent=2, sort_keys=True))
        dest = self.entry_dir(key)
        if dest.exists():
            _remove_staging(dest)
        os.rename(staging, dest)
        loaded = self.load(key)
        if loaded is None:
            raise BootstrapError(f"the cache entry {dest} did not read back")
        return loaded


def _find_image(store: ImageStore, key: str) -> str | None:
    """The recipe's own image: labelled with its key, one layer and one history entry (the
    mmdebstrap run). The label alone is not enough: LABELs are inherited, so every image
    built FROM it carries the key too (with the same single layer when its steps add no
    files), and tagging such a child `debian:bookworm` made the next build's base the child
    (an app image built on the redis image it was built beside)."""
    for record in store.list():
        config = record.config.config
        if config is None or (BOOTSTRAP_KEY_LABEL, key) not in (config.labels or ()):
            continue
        if len(record.config.rootfs.diff_ids) == 1 and len(record.config.history) == 1:
            return record.id
    return None


def _commit(
    store: ImageStore, recipe: DebianRecipe, diff_id: str, epoch_s: int, refs: Sequence[str]
) -> str:
    image_id = store.commit_image(build_image_config(recipe, diff_id, epoch_s), ref=refs[0])
    for ref in refs[1:]:
        store.tag(image_id, ref)
    return image_id


def _mmdebstrap_version() -> str:
    out = subprocess.run([str(MMDEBSTRAP), "--version"], capture_output=True, text=True)
    return out.stdout.strip()


def bootstrap_debian(
    store: ImageStore,
    cache_root: Path,
    recipe: DebianRecipe,
    *,
    refs: Sequence[str] = (),
    progress: Callable[[str], None] = lambda _: None,
) -> DebianBootstrap:
    """Make sure an image of `recipe` is in `store`, tagged `refs` (default `debian:<suite>`).

    Reuses, in this order: an image labelled with the recipe's key (tags added or moved to
    it); the cached rootfs tarball; else builds with mmdebstrap, which needs the mirror.
    """
    refs = tuple(refs) or default_refs(recipe.suite)
    for ref in refs:
        try:
            has_digest = parse_reference(ref).digest is not None
        except InvalidReference as exc:
            raise BootstrapError(f"invalid tag {ref!r}: {exc}") from None
        if has_digest:
            raise BootstrapError(f"refusing to create a tag with a digest reference: {ref}")
    key = recipe.key()
    cache = _Cache(cache_root)
    with cache.lock(key):
        entry = cache.load(key)
        rootfs = None if entry is None else entry.rootfs
        image_id = _find_image(store, key)
        if image_id is not None:
            for ref in refs:
                store.tag(image_id, ref)
            return DebianBootstrap(image_id, refs, key, BootstrapOutcome.CACHED, rootfs)
        if entry is not None:
            progress(f"importing the cached rootfs {entry.rootfs}")
            with open(entry.rootfs, "rb") as stream:
                # The recorded DiffID proves the cached bytes are the ones first built.
                layer = store.register_layer(stream, None, expected_diff_id=entry.diff_id)
            image_id = _commit(store, recipe, layer.diff_id, entry.epoch_s, refs)
            return DebianBootstrap(image_id, refs, key, BootstrapOutcome.REIMPORTED, rootfs)
        epoch_s = release_epoch(recipe)
        staging = cache.staging(key)
        try:
            progress(
                f"running mmdebstrap {recipe.suite} from {recipe.mirror}"
                f" (SOURCE_DATE_EPOCH={epoch_s})"
            )
            _run_mmdebstrap(recipe, epoch_s, staging, staging / "rootfs.tar")
            # Registering reads the whole tar: a bad one never enters the cache.
            with open(staging / "rootfs.tar", "rb") as stream:
                layer = store.register_layer(stream, None)
            entry = cache.commit(
                key,
                staging,
                {
                    "diff_id": layer.diff_id,
                    "epoch_s": epoch_s,
                    "mmdebstrap": _mmdebstrap_version(),
                    "recipe": {
                        "architecture": recipe.architecture,
                        "includes": list(recipe.includes),
                        "mirror": recipe.mirror,
                        "security_mirror": recipe.security_mirror,
                        "suite": recipe.suite,
                    },
                },
            )
        finally:
            if staging.exists():
                _remove_staging(staging)
        image_id = _commit(store, recipe, layer.diff_id, epoch_s, refs)
        return DebianBootstrap(image_id, refs, key, BootstrapOutcome.BUILT, entry.rootfs)
