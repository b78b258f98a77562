"""The Compose project model: the loader's canonical dict, type-checked into frozen values.

Role: :func:`project_from_dict` takes the dict ``compose/loader`` produces (interpolated,
merged, ``extends`` resolved; per service ``environment``/``labels``/``extra_hosts``/
``sysctls``/``build.args`` already mappings, ``depends_on`` the long form, ``networks`` a
mapping, ``build`` a mapping with an absolute context, relative bind sources absolute) and
returns a :class:`Project`. Everything else arrives as the user wrote it, so this package
parses the short syntaxes: ports, volumes, durations, byte sizes, restart policies,
ulimits, ``network_mode``, links, ``volumes_from``, devices, ``command``/``entrypoint``.

Modules (all pure), each importing only those listed before it:

- ``values``: the frozen dataclasses (:class:`PortSpec` ... :class:`Project`) and
  :class:`ComposeModelError`;
- ``scalars``: the stand-alone short syntaxes (byte sizes, durations, ports, volumes);
- ``checks``: the type-checking context the builders share (``_Ctx``, ``_type_error``);
- ``network``, ``mounts``, ``resources``: the builders for the service keys of the
  network (ports, expose, networks, links), of what the host lends (volumes,
  ``volumes_from``, devices), and of the limits (memory/CPU knobs, ``deploy``, ulimits);
- ``service``: :func:`service_from_dict`, the service key tables and the other keys;
- ``project``: :func:`project_from_dict` and the checks that services only use declared
  networks and volumes.

Invariants:
- Pure: values in, values out; no I/O. The planner and the runner only ever see a
  :class:`Project`, never the raw dict (except :attr:`Service.config`, kept verbatim for the
  config hash, see ``labels.config_hash``).
- Every error is a :class:`ComposeModelError` naming the service and the key, with
  docker-compose 1.29.2's wording where it has one (compose/config/validation.py
  ``handle_error_for_schema_errors``: "services.web.ports contains an invalid type, it
  should be ..."; "Unsupported config option for services.web: 'foo'"), else compose-go's.
- Byte sizes are parsed as docker-py's ``parse_bytes`` (which docker-compose 1.29.2 uses):
  1024-based ``b``/``k``/``m``/``g`` suffixes, an optional trailing ``b`` (``1gb``), a bare
  number is bytes. Durations are Go's ``time.ParseDuration`` (``1m30s``, ``1.5s``,
  ``500ms``), returned in nanoseconds as the Engine API wants them.
- A service with neither ``networks`` nor ``network_mode`` joins the project's ``default``
  network, and the project then has a ``default`` network (docker-compose 1.29.2
  ``get_networks``; compose-go adds it the same way).
- ``dockyard.compose.model`` exports exactly the names below; the underscore names of the
  submodules are the package's own.
"""

from dockyard.compose.model.project import project_from_dict
from dockyard.compose.model.scalars import (
    parse_bytes,
    parse_duration_ns,
    parse_port,
    parse_volume,
)
from dockyard.compose.model.service import service_from_dict
from dockyard.compose.model.values import (
    Build,
    ComposeModelError,
    DependsOn,
    DeviceMapping,
    Healthcheck,
    Link,
    Logging,
    NetworkConfig,
    NetworkMode,
    PortSpec,
    Project,
    Resources,
    RestartPolicy,
    Service,
    ServiceNetwork,
    Ulimit,
    VolumeConfig,
    VolumeMount,
    VolumesFrom,
)

__all__ = [
    "Build",
    "ComposeModelError",
    "DependsOn",
    "DeviceMapping",
    "Healthcheck",
    "Link",
    "Logging",
    "NetworkConfig",
    "NetworkMode",
    "PortSpec",
    "Project",
    "Resources",
    "RestartPolicy",
    "Service",
    "ServiceNetwork",
    "Ulimit",
    "VolumeConfig",
    "VolumeMount",
    "VolumesFrom",
    "parse_bytes",
    "parse_duration_ns",
    "parse_port",
    "parse_volume",
    "project_from_dict",
    "service_from_dict",
]
