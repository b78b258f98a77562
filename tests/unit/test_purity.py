"""Pure modules must not import I/O: they take values (time included) and return values."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "dockyard"
PURE_MODULES = [
    "raft/__init__.py",
    "raft/messages.py",
    "raft/log.py",
    "raft/progress.py",
    "raft/quorum.py",
    "raft/core.py",
    "store/tree.py",
    "store/commands.py",
    "store/errors.py",
    "store/params.py",
    "store/v2json.py",
    "store/auth.py",
    "http/types.py",
    "store/state.py",
    "store/cluster/codec.py",
    "engine/api/versions.py",
    "engine/security/capabilities.py",
    "engine/security/seccomp.py",
    "engine/security/defaults.py",
    "engine/model/oci_spec.py",
    "engine/runtime/logfile.py",
    "engine/images/model.py",
    "engine/images/changes.py",
    "engine/model/host_config.py",
    "engine/model/container.py",
    "engine/model/health.py",
    "engine/model/filters.py",
    "engine/model/stats.py",
    "engine/model/archive.py",
    "engine/model/attach.py",
    "engine/model/exec_process.py",
    "engine/model/restart.py",
    "engine/model/top.py",
    "engine/model/gopath.py",
    "engine/model/gotime.py",
    "engine/images/registry/__init__.py",
    "engine/images/registry/auth.py",
    "engine/images/registry/endpoints.py",
    "engine/images/registry/manifests.py",
    "engine/images/registry/errors.py",
    "engine/images/registry/progress.py",
    "engine/images/build/__init__.py",
    "engine/images/build/dockerfile.py",
    "engine/images/build/shell_lex.py",
    "engine/images/build/instructions.py",
    "engine/images/build/dockerignore.py",
    "engine/images/build/cache.py",
    "engine/images/build/state.py",
    "engine/network/__init__.py",
    "engine/network/rtnl_codec.py",
    "engine/network/ipam.py",
    "engine/network/model.py",
    "engine/network/ports.py",
    "engine/network/links.py",
    "engine/network/etcfiles.py",
    "engine/network/iptables.py",
    "engine/network/sandbox.py",
    "engine/network/dns/__init__.py",
    "engine/network/dns/message.py",
    "engine/network/dns/records.py",
    "engine/network/dns/resolvconf.py",
    "engine/volumes/__init__.py",
    "engine/volumes/model.py",
    "compose/__init__.py",
    "compose/loader/__init__.py",
    "compose/loader/errors.py",
    "compose/loader/yaml12.py",
    "compose/loader/interpolation.py",
    "compose/loader/dotenv.py",
    "compose/loader/schema.py",
    "compose/loader/schema_spec.py",
    "compose/loader/formats.py",
    "compose/loader/normalize.py",
    "compose/loader/merge.py",
    "compose/loader/extends.py",
    "compose/loader/include.py",
    "compose/loader/discovery.py",
    "compose/loader/core.py",
    "compose/model/__init__.py",
    "compose/model/values.py",
    "compose/model/scalars.py",
    "compose/model/checks.py",
    "compose/model/network.py",
    "compose/model/mounts.py",
    "compose/model/resources.py",
    "compose/model/service.py",
    "compose/model/project.py",
    "compose/graph.py",
    "compose/http_wire.py",
    "compose/labels.py",
    "compose/plan.py",
    "compose/progress.py",
]
FORBIDDEN = {
    "asyncio",
    "socket",
    "subprocess",
    "os",
    "time",
    "aiohttp",
    "pyroute2",
    "httpx",
    "threading",
    "ssl",
    "shutil",
    "random",
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.unit
@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_imports_no_io(module: str) -> None:
    bad = imported_modules(SRC / module) & FORBIDDEN
    assert not bad, f"{module} is pure but imports {sorted(bad)}"


def imported_dockyard_modules(target: str, names: list[str]) -> set[str]:
    """The modules ``from dockyard.<target> import <names>`` runs, dotted as in PURE_MODULES:
    the module itself; from a package, each submodule named, and the package's ``__init__``
    for the names it re-exports."""
    package = SRC / target.replace(".", "/")
    if not package.is_dir():
        return {target}
    modules = set()
    for name in names:
        if (package / f"{name}.py").is_file():
            modules.add(f"{target}.{name}")
        elif (package / name / "__init__.py").is_file():
            modules.add(f"{target}.{name}.__init__")
        else:
            modules.add(f"{target}.__init__")
    return modules


@pytest.mark.unit
def test_pure_modules_only_import_pure_dockyard_modules() -> None:
    pure = {m.removesuffix(".py").replace("/", ".") for m in PURE_MODULES}
    for module in PURE_MODULES:
        for node in ast.walk(ast.parse((SRC / module).read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("dockyard.")
            ):
                target = node.module.removeprefix("dockyard.")
                targets = imported_dockyard_modules(target, [alias.name for alias in node.names])
                assert targets <= pure, f"{module} imports non-pure {node.module}"
