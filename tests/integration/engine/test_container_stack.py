"""The engine's layers together, below the API: the busybox image from the image store,
mounted by the overlay snapshotter, run by the shim under runc with the OCI spec that
Docker's defaults give, and the container's isolation checked from inside it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dockyard.engine.images.bootstrap import bootstrap_busybox
from dockyard.engine.images.snapshotter import OverlaySnapshotter, mount, unmount
from dockyard.engine.images.store import ImageStore
from dockyard.engine.model.oci_spec import ContainerConfig, HostFacts, build_spec
from dockyard.engine.runtime.shim import ShimConfig, start_shim
from dockyard.engine.security import seccomp
from tests.integration.engine.conftest import RUNC_BINARY, RuntimeEnv, cgroup_name

pytestmark = pytest.mark.integration

# Docker's 14 default capabilities as the kernel shows them (moby oci/caps/defaults.go):
# CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW
# SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
DOCKER_DEFAULT_CAP_MASK = "00000000a80425fb"
PROBE = (
    "grep -E '^(CapEff|CapBnd|CapPrm|Seccomp|NoNewPrivs):' /proc/self/status; "
    "echo hostname=$(hostname); echo pid=$$; echo timer_list=$(wc -c < /proc/timer_list); "
    "echo 1 > /proc/sys/kernel/shm_rmid_forced 2>/dev/null && echo procsys=rw "
    "|| echo procsys=ro; echo upper > /written; chown 1:1 /written && echo chown=ok"
)


async def host_facts(runtime: RuntimeEnv) -> HostFacts:
    release = os.uname().release.split("-")[0].split(".")
    kernel = tuple(int(part) for part in release[:2])
    cgroup_v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    return HostFacts(
        cgroup_version=2 if cgroup_v2 else 1,
        kernel=kernel,
        cpu_count=os.cpu_count() or 1,
        runtime_namespaces=await runtime.runc.namespaces(),
    )


@pytest.mark.asyncio
async def test_a_busybox_container_runs_with_dockers_default_isolation(
    runtime: RuntimeEnv, tmp_path: Path
) -> None:
    store = ImageStore(tmp_path / "images")
    image = store.get(bootstrap_busybox(store))
    snapshotter = OverlaySnapshotter(tmp_path / "snapshots", store.layer_diff_path)
    cid = runtime.new_id()
    rootfs = tmp_path / "rootfs" / cid
    rootfs.mkdir(parents=True)
    mount(snapshotter.prepare(cid, image.chain_ids), rootfs)
    try:
        spec = build_spec(
            ContainerConfig(cmd=("sh", "-c", PROBE), network_mode="none"),
            rootfs=str(rootfs),
            host=await host_facts(runtime),
            container_id=cid,
            seccomp_profile=seccomp.default_profile(),
        )
        spec["linux"]["cgroupsPath"] = f"/{cgroup_name(cid)}"  # the fixture's leak check
        bundle = tmp_path / "bundles" / cid
        bundle.mkdir(parents=True)
        (bundle / "config.json").write_text(json.dumps(spec))
        state_dir = tmp_path / "state" / cid
        runtime.state_dirs.append(state_dir)
        shim = await start_shim(ShimConfig(cid, bundle, state_dir, runtime.root, RUNC_BINARY))
        status = await shim.wait_exit()
        shim.close()
        log_text = (state_dir / "container-json.log").read_text()
        lines = [json.loads(line) for line in log_text.splitlines()]
    finally:
        unmount(rootfs)
    out = {}
    for entry in lines:
        key, _, value = entry["log"].strip().replace(":\t", "=").partition("=")
        out[key] = value.strip()
    assert status.exit_code == 0, (status, lines)
    assert out["CapEff"] == out["CapPrm"] == out["CapBnd"] == DOCKER_DEFAULT_CAP_MASK, out
    assert out["Seccomp"] == "2", "Docker's seccomp profile is in force (filter mode)"
    assert out["NoNewPrivs"] == "0", "Docker does not set no-new-privileges by default"
    assert out["hostname"] == cid[:12], "the hostname is the short container ID"
    assert out["pid"] == "1", "a new PID namespace"
    assert out["timer_list"] == "0", "/proc/timer_list is masked (the host's is not empty)"
    assert out["procsys"] == "ro", "/proc/sys is read-only"
    assert out["chown"] == "ok", "CAP_CHOWN is among the defaults"
    upper = snapshotter.upper_dir(cid) / "written"
    assert upper.read_text() == "upper\n", "writes land in the container's own layer"
    assert not (store.layer_diff_path(image.chain_ids[-1]) / "written").exists()
    snapshotter.remove(cid)
