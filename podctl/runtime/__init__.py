"""The container engine behind a narrow protocol: Docker for real, an in-memory fake for tests.

The implementations live in `podctl.runtime.docker` (`DockerRuntime`, needs aiodocker)
and `podctl.runtime.fake` (`FakeRuntime`); import them from there, so code that only
needs the protocol does not load aiohttp.
"""

from podctl.runtime.errors import (
    Conflict,
    EngineError,
    EngineUnavailable,
    ExecTimeout,
    ImagePullError,
    NotFound,
)
from podctl.runtime.protocol import (
    ContainerInfo,
    ContainerSpec,
    ContainerState,
    EngineEvent,
    ExecResult,
    HostInfo,
    MountBinding,
    NetworkInfo,
    Runtime,
    VolumeInfo,
)

__all__ = [
    "Conflict",
    "ContainerInfo",
    "ContainerSpec",
    "ContainerState",
    "EngineError",
    "EngineEvent",
    "EngineUnavailable",
    "ExecResult",
    "ExecTimeout",
    "HostInfo",
    "ImagePullError",
    "MountBinding",
    "NetworkInfo",
    "NotFound",
    "Runtime",
    "VolumeInfo",
]
