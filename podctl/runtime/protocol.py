"""What crosses between podctl and a container engine.

The protocol is deliberately narrow: each method maps to one engine call, and
every value that crosses it is a typed Struct (the engine's dicts stop at the
edge, in `DockerRuntime`). Implementations put a timeout on every call and
raise `EngineUnavailable` rather than hang.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

import msgspec

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

ContainerState = Literal["created", "running", "paused", "restarting", "removing", "exited", "dead"]


class MountBinding(msgspec.Struct, frozen=True, kw_only=True):
    type: Literal["volume", "bind", "tmpfs"]
    target: str
    source: str = ""
    read_only: bool = False


class ContainerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything needed to create one container. Docker's restart policy is always `no`."""

    name: str
    image: str
    labels: dict[str, str]
    network: str
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = []  # "KEY=value"
    user: str | None = None
    workdir: str | None = None
    hostname: str | None = None
    network_aliases: list[str] = []
    extra_hosts: list[str] = []  # "name:address"
    nano_cpus: int = 0
    memory_bytes: int = 0
    mounts: list[MountBinding] = []
    read_only_rootfs: bool = False
    tmpfs: dict[str, str] = {}  # target -> options
    cap_add: list[str] = []
    cap_drop: list[str] = []
    pids_limit: int | None = None
    no_new_privileges: bool = True
    stop_grace_s: float = 10.0


class ContainerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One container as the engine sees it now (only containers carrying podctl labels)."""

    id: str
    name: str
    labels: dict[str, str]
    state: ContainerState
    image: str
    exit_code: int | None = None
    started_at: float | None = None  # epoch seconds
    finished_at: float | None = None
    oom_killed: bool = False
    error: str = ""
    ip: str | None = None  # address on its stack network
    # The grace `docker stop` gives it (podctl sets its pod's stop_grace); None: unknown.
    stop_grace_s: float | None = None


class NetworkInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    labels: dict[str, str]
    gateway: str | None = None
    subnet: str | None = None


class VolumeInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    labels: dict[str, str]
    mountpoint: str = ""


class HostInfo(msgspec.Struct, frozen=True, kw_only=True):
    ncpu: int
    mem_bytes: int
    server_version: str = ""


class EngineEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An engine event. Level-triggered: it only says "look at this stack again"."""

    kind: str  # container | network | volume | image
    action: str  # create, start, die, kill, oom, destroy, ...
    id: str
    labels: dict[str, str]
    time: float


class ExecResult(msgspec.Struct, frozen=True, kw_only=True):
    exit_code: int
    output: bytes = b""


class Runtime(Protocol):
    """A container engine. Every method has a bounded duration."""

    async def ping(self) -> None: ...

    async def host_info(self) -> HostInfo: ...

    async def list_containers(self, stack: str | None = None) -> list[ContainerInfo]:
        """Containers labelled `io.podctl.stack` (of `stack`, when given), any state."""
        ...

    async def inspect_container(self, container_id: str) -> ContainerInfo: ...

    async def create_container(self, spec: ContainerSpec) -> str: ...

    async def start_container(self, container_id: str) -> None: ...

    async def stop_container(self, container_id: str, grace_s: float) -> None:
        """SIGTERM (the container's stop signal), up to `grace_s` for it to exit, then
        SIGKILL; returns once it has exited. One already stopped, or gone, is not an
        error. Lasts at most the grace plus an ordinary call's deadline.

        Waiting out a grace is not engine work: stops of many containers run side
        by side and do not hold up (or count against) the bound on other calls, so
        callers may stop a whole stack at once.
        """
        ...

    async def kill_container(self, container_id: str, signal: str = "SIGKILL") -> None:
        """Send `signal` now (a quick call); Conflict when the container is not running."""
        ...

    async def remove_container(self, container_id: str) -> None:
        """Force-remove; a container that is already gone is not an error."""
        ...

    async def list_networks(self, stack: str | None = None) -> list[NetworkInfo]: ...

    async def create_network(self, name: str, labels: dict[str, str]) -> NetworkInfo: ...

    async def remove_network(self, network_id: str) -> None: ...

    async def list_volumes(self, stack: str | None = None) -> list[VolumeInfo]: ...

    async def create_volume(
        self, name: str, labels: dict[str, str], driver: str | None, options: dict[str, str]
    ) -> VolumeInfo: ...

    async def remove_volume(self, name: str) -> None: ...

    async def image_exists(self, ref: str) -> bool: ...

    async def pull_image(self, ref: str) -> None:
        """Raises ImagePullError naming the image when it cannot be pulled."""
        ...

    async def build_image(self, context_dir: str, tag: str, labels: dict[str, str]) -> None: ...

    # -- registry: tag and push (`podctl push`) --

    async def tag_image(self, source: str, target: str) -> None:
        """Give the local image `source` the name `target` (`registry/repo:tag`)."""
        ...

    async def push_image(self, ref: str) -> None:
        """Push `ref` to its registry with the user's Docker credentials; raises
        EngineError naming the image when the registry refuses it."""
        ...

    async def exec(self, container_id: str, command: list[str], timeout_s: float) -> ExecResult: ...

    # -- dev mode (`podctl dev`): live sync into running containers ---------------

    async def put_archive(self, container_id: str, path: str, archive: bytes) -> None:
        """Extract the tar `archive` into the container at directory `path` (which must
        exist; missing parents of members are created). NotFound when the container or
        `path` is gone; Conflict when the path is read-only."""
        ...

    async def get_archive(self, container_id: str, path: str, max_bytes: int) -> bytes:
        """A tar of `path` in the container (members named from its base name down).
        NotFound when it does not exist; EngineError when it is over `max_bytes`."""
        ...

    async def exec_as(
        self,
        container_id: str,
        command: list[str],
        timeout_s: float,
        *,
        user: str | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        """`exec`, as `user` and in `workdir` when given (the container's own otherwise)."""
        ...

    async def restart_container(self, container_id: str, grace_s: float) -> None:
        """The engine's restart: stop (stop signal, `grace_s`, SIGKILL) and start again,
        keeping the container and its file system. Lasts at most the grace plus an
        ordinary call's deadline."""
        ...

    def events(self) -> AsyncGenerator[EngineEvent, None]:
        """Events of podctl-labelled objects. Ends or raises when the stream drops.

        An async generator: wrap it in `contextlib.aclosing` to release the stream
        promptly when you stop reading early.
        """
        ...

    def logs(
        self, container_id: str, *, follow: bool = False, tail: int | None = None
    ) -> AsyncGenerator[bytes, None]: ...

    async def close(self) -> None: ...
