"""`FakeRuntime`: the `Runtime` protocol in memory, for tests.

It implements the real interface (no patching) and behaves like the engine
where podctl can tell the difference: names are unique, a missing image or
network is `NotFound`, a network with running containers cannot be removed,
labelled objects produce events, only labelled containers are listed.

Tests drive it with:

- fault hooks: `fail(method, exc, times=1)`, `hang(method)` / `release()`,
  `slow(method, seconds)`, `engine_down()` / `engine_up()`;
- simulations: `crash(id, exit_code)`, `kill(id)`, `write_log(id, data)`,
  `containers[id].ignores_sigterm = True` (a stop waits out its grace),
  `add_image` / `remove_image`, `fail_pull(ref)`, `on_exec(handler)`,
  `add_foreign_container(...)`, `drop_event_streams()`;
- observations: the call log (`calls`, `calls_to(method)`), `peak_in_flight`,
  `violations` (calls that touched an object without podctl's stack label).

Times (`started_at`, `finished_at`, event times) come from the injected clock;
waits (hangs, exec timeouts) are real, short anyio waits.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import ipaddress
import math
import posixpath
import tarfile
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from podctl import labels as label_names
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
    NetworkInfo,
    Runtime,
    VolumeInfo,
)

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectSendStream

ExecHandler = Callable[[ContainerInfo, list[str]], ExecResult | Awaitable[ExecResult]]
CallMatcher = Callable[[tuple[Any, ...]], bool]

# Calls that change engine state: the quick ones a runtime bounds (peak_in_flight).
# A stop is a wait (its grace), bounded by no one, so it is not counted.
MUTATING = frozenset(
    {
        "create_container",
        "start_container",
        "kill_container",
        "remove_container",
        "create_network",
        "remove_network",
        "create_volume",
        "remove_volume",
        "pull_image",
        "build_image",
    }
)
_UNAVAILABLE_HINT = "is dockerd running? check `docker info`"
_PULL_HINT = "no registry reachable? build it locally or `docker load` it"
_SIGNAL_EXIT = {"SIGKILL": 137, "KILL": 137, "9": 137, "SIGTERM": 143, "TERM": 143, "15": 143}


class FakeCall(msgspec.Struct, frozen=True):
    """One call the runtime received: the method name and its arguments."""

    method: str
    args: tuple[Any, ...]


@dataclass
class _Fault:
    method: str  # or "*" for every method
    exc: BaseException | None  # None: hang
    remaining: int | None  # None: for ever
    when: CallMatcher | None
    released: anyio.Event = field(default_factory=anyio.Event)

    def matches(self, method: str, args: tuple[Any, ...]) -> bool:
        if self.method not in ("*", method):
            return False
        return self.when is None or self.when(args)


@dataclass
class FakeContainer:
    """A container inside the fake engine (mutable; tests may read it)."""

    id: str
    name: str
    image: str
    labels: dict[str, str]
    network: str
    spec: ContainerSpec | None
    state: ContainerState = "created"
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    oom_killed: bool = False
    error: str = ""
    ip: str | None = None
    ignores_sigterm: bool = False  # a stop then waits out its grace (real time), then kills
    log: list[bytes] = field(default_factory=list)
    log_written: anyio.Event = field(default_factory=anyio.Event)
    # What `put_archive` wrote: absolute path -> content (symlinks: b"-> target").
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def labelled(self) -> bool:
        return label_names.STACK in self.labels

    def info(self) -> ContainerInfo:
        ended = self.state in ("exited", "dead")
        return ContainerInfo(
            id=self.id,
            name=self.name,
            labels=dict(self.labels),
            state=self.state,
            image=self.image,
            exit_code=self.exit_code if ended else None,
            started_at=self.started_at,
            finished_at=self.finished_at,
            oom_killed=self.oom_killed,
            error=self.error,
            ip=self.ip if self.state == "running" else None,
        )


@dataclass
class FakeNetwork:
    id: str
    name: str
    labels: dict[str, str]
    subnet: ipaddress.IPv4Network

    def info(self) -> NetworkInfo:
        return NetworkInfo(
            id=self.id,
            name=self.name,
            labels=dict(self.labels),
            gateway=str(self.subnet.network_address + 1),
            subnet=str(self.subnet),
        )


def _fake_id(*parts: object) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


class FakeRuntime:
    """An in-memory container engine implementing `Runtime`."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        images: Iterable[str] = ("busybox:1.36",),
        ncpu: int = 4,
        mem_bytes: int = 8 * 2**30,
        call_timeout_s: float | None = 1.0,
        stop_exit_code: int = 143,
    ) -> None:
        self.clock = clock
        self.images: set[str] = set(images)
        self.pushed: list[str] = []  # refs `push_image` pushed, in order
        self.host = HostInfo(ncpu=ncpu, mem_bytes=mem_bytes, server_version="fake")
        # Like DockerRuntime's deadline: a hung call raises EngineUnavailable after
        # this many (real) seconds. None: it hangs until released or cancelled.
        self.call_timeout_s = call_timeout_s
        self.stop_exit_code = stop_exit_code
        self.containers: dict[str, FakeContainer] = {}
        self.networks: dict[str, FakeNetwork] = {}
        self.volumes: dict[str, VolumeInfo] = {}
        self.calls: list[FakeCall] = []
        self.violations: list[str] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.closed = False
        self._faults: list[_Fault] = []
        self._hangs: list[_Fault] = []  # until released, even once used up
        self._slow: dict[str, float] = {}
        self._pull_failures: dict[str, str] = {}
        self._exec_handler: ExecHandler | None = None
        self._subscribers: list[MemoryObjectSendStream[EngineEvent]] = []
        self._subscribed = anyio.Event()
        self._down = False
        self._serial = 0

    # -- fault hooks ---------------------------------------------------------------

    def fail(
        self,
        method: str,
        exc: BaseException,
        *,
        times: int | None = 1,
        when: CallMatcher | None = None,
    ) -> None:
        """The next `times` calls of `method` ("*": any) whose args match `when` raise `exc`."""
        self._faults.append(_Fault(method, exc, times, when))

    def hang(
        self, method: str, *, times: int | None = None, when: CallMatcher | None = None
    ) -> None:
        """Calls of `method` block until `release()`.

        After `call_timeout_s` they raise EngineUnavailable, as DockerRuntime would.
        """
        fault = _Fault(method, None, times, when)
        self._faults.append(fault)
        self._hangs.append(fault)

    def release(self, method: str | None = None) -> None:
        """End hangs (of `method`, or all): blocked calls then run normally."""
        for fault in list(self._hangs):
            if method in (None, fault.method):
                fault.released.set()
                self._hangs.remove(fault)
                if fault in self._faults:
                    self._faults.remove(fault)

    def clear_faults(self) -> None:
        self.release()
        self._faults.clear()
        self._slow.clear()

    def slow(self, method: str, seconds: float) -> None:
        """Every call of `method` takes `seconds` (real time) before it acts."""
        self._slow[method] = seconds

    def engine_down(self) -> None:
        """Every call raises EngineUnavailable and open event streams drop."""
        self._down = True
        self.drop_event_streams()

    def engine_up(self) -> None:
        self._down = False

    # -- simulations ---------------------------------------------------------------

    def add_image(self, ref: str) -> None:
        self.images.add(ref)

    def remove_image(self, ref: str) -> None:
        self.images.discard(ref)

    def fail_pull(self, ref: str, detail: str = "no such host: registry-1.docker.io") -> None:
        """Pulls of `ref` fail (until `allow_pull`). Other refs pull fine."""
        self._pull_failures[ref] = detail

    def allow_pull(self, ref: str) -> None:
        self._pull_failures.pop(ref, None)

    def on_exec(self, handler: ExecHandler | None) -> None:
        """Answer `exec` with `handler(container, command)` (sync or async). Default: exit 0."""
        self._exec_handler = handler

    def set_host(self, *, ncpu: int | None = None, mem_bytes: int | None = None) -> None:
        self.host = msgspec.structs.replace(
            self.host,
            ncpu=self.host.ncpu if ncpu is None else ncpu,
            mem_bytes=self.host.mem_bytes if mem_bytes is None else mem_bytes,
        )

    def crash(self, container_id: str, exit_code: int = 1, *, oom: bool = False) -> None:
        """The container's process exits on its own with `exit_code`."""
        c = self._container(container_id)
        if c.state != "running":
            raise AssertionError(f"crash: container {c.name} is {c.state}, not running")
        c.oom_killed = oom
        if oom:
            self._emit_container(c, "oom")
        self._exit(c, exit_code)

    def kill(self, container_id: str) -> None:
        """Someone ran `docker kill` on it (not a call podctl made)."""
        c = self._container(container_id)
        if c.state != "running":
            raise AssertionError(f"kill: container {c.name} is {c.state}, not running")
        self._emit_container(c, "kill")
        self._exit(c, 137)

    def delete(self, container_id: str) -> None:
        """Someone ran `docker rm -f` on it."""
        c = self._container(container_id)
        if c.state == "running":
            self._emit_container(c, "kill")
            self._exit(c, 137)
        del self.containers[c.id]
        self._emit_container(c, "destroy")

    def write_log(self, container_id: str, data: bytes) -> None:
        """The container prints `data` (stdout and stderr are one stream here)."""
        c = self._container(container_id)
        c.log.append(data)
        self._wake_log_readers(c)

    def add_foreign_container(
        self,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        image: str = "busybox:1.36",
        state: ContainerState = "running",
    ) -> str:
        """A container podctl did not create (no stack label): it must never be touched."""
        self._serial += 1
        cid = _fake_id("foreign", name, self._serial)
        self.containers[cid] = FakeContainer(
            id=cid,
            name=name,
            image=image,
            labels=dict(labels or {}),
            network="bridge",
            spec=None,
            state=state,
            started_at=self.clock() if state == "running" else None,
        )
        return cid

    def drop_event_streams(self) -> None:
        """Every open `events()` stream ends, as when the engine connection drops."""
        for send in self._subscribers:
            send.close()
        self._subscribers.clear()

    # -- observations --------------------------------------------------------------

    def calls_to(self, method: str) -> list[FakeCall]:
        return [c for c in self.calls if c.method == method]

    def clear_calls(self) -> None:
        self.calls.clear()
        self.peak_in_flight = self.in_flight

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def wait_subscribers(self, n: int = 1) -> None:
        """Wait until `n` event streams are open (bound it with the test's timeout)."""
        while len(self._subscribers) < n:
            await self._subscribed.wait()

    def by_name(self, name: str) -> FakeContainer:
        for c in self.containers.values():
            if c.name == name:
                return c
        raise KeyError(name)

    def running(self, stack: str | None = None) -> list[FakeContainer]:
        return [
            c
            for c in self.containers.values()
            if c.state == "running"
            and c.labelled
            and (stack is None or c.labels[label_names.STACK] == stack)
        ]

    # -- plumbing ------------------------------------------------------------------

    async def _enter(self, method: str, *args: Any) -> None:
        """Log the call, then apply engine-down, faults and slowness, in that order."""
        self.calls.append(FakeCall(method, args))
        doing = f"{method.replace('_', ' ')} (fake)"
        if self._down:
            raise EngineUnavailable(doing, "engine is down", _UNAVAILABLE_HINT)
        for fault in self._faults:
            if not fault.matches(method, args):
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
            if fault.exc is not None:
                raise fault.exc
            await self._hang(doing, fault)
            break
        delay = self._slow.get(method, 0.0)
        if delay:
            await anyio.sleep(delay)
        if self._down:
            raise EngineUnavailable(doing, "engine is down", _UNAVAILABLE_HINT)

    async def _hang(self, doing: str, fault: _Fault) -> None:
        if self.call_timeout_s is None:
            await fault.released.wait()
            return
        with anyio.move_on_after(self.call_timeout_s):
            await fault.released.wait()
            return
        raise EngineUnavailable(
            doing, f"engine did not answer within {self.call_timeout_s:g}s", _UNAVAILABLE_HINT
        )

    async def _mutating(self, method: str, *args: Any) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await self._enter(method, *args)
        finally:
            self.in_flight -= 1

    def _container(self, container_id: str, doing: str = "") -> FakeContainer:
        c = self.containers.get(container_id)
        if c is None:
            # Docker accepts names and unique id prefixes too.
            for candidate in self.containers.values():
                if candidate.name == container_id or (
                    len(container_id) >= 4 and candidate.id.startswith(container_id)
                ):
                    c = candidate
                    break
        if c is None:
            raise NotFound(doing or "finding container", f"No such container: {container_id}")
        return c

    def _touch(self, c: FakeContainer, method: str) -> None:
        if not c.labelled:
            self.violations.append(f"{method} on unlabelled container {c.name}")

    def _emit(self, kind: str, action: str, object_id: str, attributes: dict[str, str]) -> None:
        if label_names.STACK not in attributes:
            return
        event = EngineEvent(
            kind=kind, action=action, id=object_id, labels=dict(attributes), time=self.clock()
        )
        for send in list(self._subscribers):
            try:
                send.send_nowait(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.remove(send)

    def _emit_container(self, c: FakeContainer, action: str) -> None:
        self._emit("container", action, c.id, {**c.labels, "name": c.name, "image": c.image})

    def _exit(self, c: FakeContainer, exit_code: int) -> None:
        c.state = "exited"
        c.exit_code = exit_code
        c.finished_at = self.clock()
        c.ip = None
        self._emit_container(c, "die")
        self._wake_log_readers(c)

    def _wake_log_readers(self, c: FakeContainer) -> None:
        c.log_written.set()
        c.log_written = anyio.Event()

    def _allocate_ip(self, network: FakeNetwork) -> str:
        taken = {
            c.ip for c in self.containers.values() if c.network == network.name and c.ip is not None
        }
        for host in network.subnet.hosts():
            address = str(host)
            if host != network.subnet.network_address + 1 and address not in taken:
                return address
        raise Conflict(f"allocating an address on {network.name}", "no address left")

    def _network_by_name(self, name: str) -> FakeNetwork | None:
        for net in self.networks.values():
            if name in (net.name, net.id):
                return net
        return None

    # -- Runtime: engine -----------------------------------------------------------

    async def ping(self) -> None:
        await self._enter("ping")

    async def host_info(self) -> HostInfo:
        await self._enter("host_info")
        return self.host

    # -- Runtime: containers -------------------------------------------------------

    async def list_containers(self, stack: str | None = None) -> list[ContainerInfo]:
        await self._enter("list_containers", stack)
        found = [
            c.info()
            for c in self.containers.values()
            if c.labelled and (stack is None or c.labels[label_names.STACK] == stack)
        ]
        found.reverse()  # newest first, like the engine
        return found

    async def inspect_container(self, container_id: str) -> ContainerInfo:
        await self._enter("inspect_container", container_id)
        return self._container(container_id, f"inspecting container {container_id}").info()

    async def create_container(self, spec: ContainerSpec) -> str:
        await self._mutating("create_container", spec)
        doing = f"creating container {spec.name}"
        if any(c.name == spec.name for c in self.containers.values()):
            raise Conflict(doing, f'container name "/{spec.name}" is already in use')
        if spec.image not in self.images:
            raise NotFound(doing, f"No such image: {spec.image}")
        if self._network_by_name(spec.network) is None:
            raise NotFound(doing, f"network {spec.network} not found")
        self._serial += 1
        cid = _fake_id(spec.name, self._serial)
        c = FakeContainer(
            id=cid,
            name=spec.name,
            image=spec.image,
            labels=dict(spec.labels),
            network=spec.network,
            spec=spec,
        )
        self.containers[cid] = c
        self._emit_container(c, "create")
        return cid

    async def start_container(self, container_id: str) -> None:
        await self._mutating("start_container", container_id)
        doing = f"starting container {container_id}"
        c = self._container(container_id, doing)
        self._touch(c, "start_container")
        if c.state == "running":
            return  # the engine answers 304: already started
        network = self._network_by_name(c.network)
        if network is None:
            raise NotFound(doing, f"network {c.network} not found")
        c.ip = self._allocate_ip(network)
        c.state = "running"
        c.exit_code = None
        c.oom_killed = False
        c.started_at = self.clock()
        self._emit_container(c, "start")

    async def stop_container(self, container_id: str, grace_s: float) -> None:
        # Like DockerRuntime: a wait, not counted in `in_flight`; gone or stopped is fine.
        await self._enter("stop_container", container_id, grace_s)
        c = self.containers.get(container_id)
        if c is None:
            return  # 404: already gone
        self._touch(c, "stop_container")
        if c.state != "running":
            return  # 304: already stopped
        self._emit_container(c, "kill")
        exit_code = self.stop_exit_code
        if c.ignores_sigterm:
            await anyio.sleep(max(grace_s, 0.0))
            if c.exit_code is not None:
                return  # it died, or was removed, during the grace
            exit_code = 137
        self._exit(c, exit_code)
        self._emit_container(c, "stop")

    async def kill_container(self, container_id: str, signal: str = "SIGKILL") -> None:
        await self._mutating("kill_container", container_id, signal)
        doing = f"killing container {container_id} with {signal}"
        c = self._container(container_id, doing)
        self._touch(c, "kill_container")
        if c.state != "running":
            raise Conflict(doing, f"Container {container_id} is not running")
        self._emit_container(c, "kill")
        self._exit(c, _SIGNAL_EXIT.get(signal.upper(), 137))

    async def remove_container(self, container_id: str) -> None:
        await self._mutating("remove_container", container_id)
        try:
            c = self._container(container_id)
        except NotFound:
            return
        self._touch(c, "remove_container")
        if c.state == "running":
            self._emit_container(c, "kill")
            self._exit(c, 137)
        del self.containers[c.id]
        self._emit_container(c, "destroy")
        self._wake_log_readers(c)

    # -- Runtime: networks and volumes ---------------------------------------------

    async def list_networks(self, stack: str | None = None) -> list[NetworkInfo]:
        await self._enter("list_networks", stack)
        return [
            n.info()
            for n in self.networks.values()
            if label_names.STACK in n.labels
            and (stack is None or n.labels[label_names.STACK] == stack)
        ]

    async def create_network(self, name: str, labels: dict[str, str]) -> NetworkInfo:
        await self._mutating("create_network", name, labels)
        if self._network_by_name(name) is not None:
            raise Conflict(f"creating network {name}", f"network with name {name} already exists")
        self._serial += 1
        # One /24 per network, like the engine's address pools but smaller.
        subnet = ipaddress.IPv4Network(f"10.{89 + self._serial // 256}.{self._serial % 256}.0/24")
        net = FakeNetwork(
            id=_fake_id("network", name, self._serial),
            name=name,
            labels=dict(labels),
            subnet=subnet,
        )
        self.networks[net.id] = net
        # Real network events carry no labels; the fake sends them anyway for podctl's.
        self._emit("network", "create", net.id, {**labels, "name": name})
        return net.info()

    async def remove_network(self, network_id: str) -> None:
        await self._mutating("remove_network", network_id)
        net = self._network_by_name(network_id)
        if net is None:
            return
        if label_names.STACK not in net.labels:
            self.violations.append(f"remove_network on unlabelled network {net.name}")
        if any(c.network == net.name and c.state == "running" for c in self.containers.values()):
            raise Conflict(
                f"removing network {network_id}",
                f"error while removing network: network {net.name} has active endpoints",
            )
        del self.networks[net.id]
        self._emit("network", "destroy", net.id, {**net.labels, "name": net.name})

    async def list_volumes(self, stack: str | None = None) -> list[VolumeInfo]:
        await self._enter("list_volumes", stack)
        return [
            v
            for v in self.volumes.values()
            if label_names.STACK in v.labels
            and (stack is None or v.labels[label_names.STACK] == stack)
        ]

    async def create_volume(
        self, name: str, labels: dict[str, str], driver: str | None, options: dict[str, str]
    ) -> VolumeInfo:
        await self._mutating("create_volume", name, labels, driver, options)
        if name in self.volumes:
            return self.volumes[name]  # the engine's create is idempotent
        volume = VolumeInfo(
            name=name, labels=dict(labels), mountpoint=f"/var/lib/docker/volumes/{name}/_data"
        )
        self.volumes[name] = volume
        self._emit("volume", "create", name, {**labels})
        return volume

    async def remove_volume(self, name: str) -> None:
        await self._mutating("remove_volume", name)
        volume = self.volumes.get(name)
        if volume is None:
            return
        users = [
            c.name
            for c in self.containers.values()
            if c.spec is not None
            and any(m.type == "volume" and m.source == name for m in c.spec.mounts)
        ]
        if users:
            raise Conflict(
                f"removing volume {name}", f"volume is in use - [{', '.join(sorted(users))}]"
            )
        del self.volumes[name]
        self._emit("volume", "destroy", name, {**volume.labels})

    # -- Runtime: images -----------------------------------------------------------

    async def image_exists(self, ref: str) -> bool:
        await self._enter("image_exists", ref)
        return ref in self.images

    async def pull_image(self, ref: str) -> None:
        await self._mutating("pull_image", ref)
        detail = self._pull_failures.get(ref)
        if detail is not None:
            raise ImagePullError(f"pulling image {ref}", detail, _PULL_HINT)
        self.images.add(ref)

    async def build_image(self, context_dir: str, tag: str, labels: dict[str, str]) -> None:
        await self._mutating("build_image", context_dir, tag, labels)
        self.images.add(tag)

    # -- Runtime: registry (tag and push) ------------------------------------------

    async def tag_image(self, source: str, target: str) -> None:
        await self._mutating("tag_image", source, target)
        if source not in self.images:
            raise NotFound(f"tagging image {source} as {target}", f"No such image: {source}")
        self.images.add(target)

    async def push_image(self, ref: str) -> None:
        await self._mutating("push_image", ref)
        if ref not in self.images:
            raise NotFound(f"pushing image {ref}", f"No such image: {ref}")
        self.pushed.append(ref)

    # -- Runtime: exec and logs ----------------------------------------------------

    async def exec(self, container_id: str, command: list[str], timeout_s: float) -> ExecResult:
        await self._enter("exec", container_id, command, timeout_s)
        doing = f"running `{' '.join(command)}` in container {container_id}"
        c = self._container(container_id, doing)
        self._touch(c, "exec")
        if c.state != "running":
            raise Conflict(doing, f"Container {container_id} is not running")
        if self._exec_handler is None:
            return ExecResult(exit_code=0)
        try:
            with anyio.fail_after(timeout_s):
                result = self._exec_handler(c.info(), list(command))
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError:
            raise ExecTimeout(doing, f"did not finish within {timeout_s:g}s") from None
        assert isinstance(result, ExecResult)
        return result

    # -- Runtime: dev mode (`podctl dev`) -----------------------------------------

    async def put_archive(self, container_id: str, path: str, archive: bytes) -> None:
        await self._enter("put_archive", container_id, path, len(archive))
        doing = f"copying into container {container_id} at {path}"
        c = self._container(container_id, doing)
        self._touch(c, "put_archive")
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
            for member in tar.getmembers():
                target = posixpath.normpath(posixpath.join(path, member.name))
                if member.issym():
                    c.files[target] = b"-> " + member.linkname.encode()
                elif member.isfile():
                    extracted = tar.extractfile(member)
                    c.files[target] = extracted.read() if extracted is not None else b""

    async def get_archive(self, container_id: str, path: str, max_bytes: int) -> bytes:
        await self._enter("get_archive", container_id, path, max_bytes)
        doing = f"reading {path} from container {container_id}"
        c = self._container(container_id, doing)
        root = path.rstrip("/") or "/"
        below = {p: d for p, d in c.files.items() if p.startswith(root + "/")}
        if not below:
            raise NotFound(doing, f"Could not find the file {path} in container {container_id}")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for p, data in sorted(below.items()):
                info = tarfile.TarInfo(posixpath.join(posixpath.basename(root), p[len(root) + 1 :]))
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        if buf.tell() > max_bytes:
            raise EngineError(doing, f"more than {max_bytes} bytes")
        return buf.getvalue()

    async def exec_as(
        self,
        container_id: str,
        command: list[str],
        timeout_s: float,
        *,
        user: str | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        self.calls.append(FakeCall("exec_as", (container_id, command, user, workdir)))
        return await self.exec(container_id, command, timeout_s)

    async def restart_container(self, container_id: str, grace_s: float) -> None:
        await self._enter("restart_container", container_id, grace_s)
        c = self._container(container_id, f"restarting container {container_id}")
        self._touch(c, "restart_container")
        if c.state == "running":
            self._exit(c, self.stop_exit_code)
            self._emit_container(c, "stop")
        network = self._network_by_name(c.network)
        c.ip = self._allocate_ip(network) if network is not None else None
        c.state = "running"
        c.exit_code = None
        c.started_at = self.clock()
        self._emit_container(c, "start")

    async def logs(
        self, container_id: str, *, follow: bool = False, tail: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        await self._enter("logs", container_id, follow, tail)
        c = self._container(container_id, f"reading logs of container {container_id}")
        self._touch(c, "logs")
        backlog = b"".join(c.log)
        if tail is not None:
            lines = backlog.splitlines(keepends=True)
            backlog = b"".join(lines[-tail:]) if tail > 0 else b""
        if backlog:
            yield backlog
        position = len(c.log)
        while follow and c.id in self.containers and c.state in ("running", "created"):
            await c.log_written.wait()
            for chunk in c.log[position:]:
                yield chunk
            position = len(c.log)

    # -- Runtime: events -----------------------------------------------------------

    async def events(self) -> AsyncGenerator[EngineEvent, None]:
        await self._enter("events")
        send, receive = anyio.create_memory_object_stream[EngineEvent](math.inf)
        self._subscribers.append(send)
        self._subscribed.set()
        self._subscribed = anyio.Event()
        try:
            async with receive:
                async for event in receive:
                    yield event
        finally:
            if send in self._subscribers:
                self._subscribers.remove(send)
            send.close()

    async def close(self) -> None:
        self.calls.append(FakeCall("close", ()))
        self.closed = True
        self.drop_event_streams()


def _conforms(runtime: FakeRuntime) -> Runtime:
    # mypy checks here that FakeRuntime implements the whole protocol.
    return runtime


__all__ = ["FakeCall", "FakeContainer", "FakeNetwork", "FakeRuntime"]
