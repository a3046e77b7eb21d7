"""`DockerRuntime`: the `Runtime` protocol on the Docker engine API, through aiodocker.

The engine's JSON stops here: every method returns the typed Structs of
`podctl.runtime.protocol`. Rules every method follows:

- Each call runs under a deadline (`ENGINE_CALL_TIMEOUT_S`, or the pull/build
  one) and a silent engine becomes `EngineUnavailable`, never a hang.
- Errors say what podctl was doing ("creating container shop-web-0-ab12cd").
- Mutating calls share a semaphore (`ENGINE_CONCURRENCY`): the Debian 20.10
  engine has deadlocked under large bursts of concurrent create/remove.
- Long-lived requests (event streams, followed logs, stops waiting out a
  grace period) use their own unbounded connection pool and are not counted
  against the semaphore: however many are open, ordinary calls always find a
  free connection and a free slot, and 50 stops wait out one grace together.

We talk to the engine through aiodocker's request layer (`_query_json`,
`_do_query`) rather than its object wrappers: one place for the deadline and
error mapping, and no wrapper objects or hidden extra inspect calls. The JSON
translation itself (create bodies, inspect answers, events) lives in the pure
module `podctl.runtime.engine_json`.
"""

from __future__ import annotations

import collections
import json
import math
import os
import shlex
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

import aiodocker
import aiohttp
import anyio

from podctl import defaults, labels
from podctl.runtime.credentials import registry_auth
from podctl.runtime.engine_json import (
    CacheKey,
    cache_key,
    container_config,
    container_info,
    container_path,
    demultiplex,
    engine_event,
    label_filter,
    network_info,
    read_frame,
    short_id,
    split_image_ref,
    stream_error,
    stream_text,
    tar_context,
    translate_error,
    volume_info,
)
from podctl.runtime.errors import (
    BuildError,
    Conflict,
    EngineError,
    EngineUnavailable,
    ExecTimeout,
    ImagePullError,
    NotFound,
)
from podctl.runtime.protocol import ExecResult, HostInfo

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Mapping

    from podctl.runtime.protocol import (
        ContainerInfo,
        ContainerSpec,
        EngineEvent,
        NetworkInfo,
        Runtime,
        VolumeInfo,
    )

DEFAULT_SOCKET: Final = "/var/run/docker.sock"
# Connections for ordinary calls: the mutating semaphore plus reads (list,
# inspect, exec probes) running beside it, with room to spare.
DEFAULT_POOL_SIZE: Final = 64
# Removing a network right after its containers races the engine releasing their
# endpoints. Docker 20.10 releases them one at a time (0.1-0.35 s each here), so
# after 50 replicas stop at once that takes several seconds: retry, 0.1 s first and
# then doubling up to 1 s, for about 25 s in all before reporting.
NETWORK_REMOVE_ATTEMPTS: Final = 30
NETWORK_REMOVE_FIRST_RETRY_S: Final = 0.1
NETWORK_REMOVE_MAX_RETRY_S: Final = 1.0

# Lines of build output kept for a failed build's error.
BUILD_TAIL_LINES: Final = 10

_UNAVAILABLE_HINT: Final = "is dockerd running? check `docker info`"
_PULL_HINT: Final = "no registry reachable? build it locally or `docker load` it"
# No deadline: streams live as long as their consumer wants them.
_NO_TIMEOUT: Final = aiohttp.ClientTimeout()
_URL_BASE: Final = "unix://localhost"


def socket_path_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The engine's unix socket: `DOCKER_HOST=unix://...` when set, else the default path."""
    env = os.environ if environ is None else environ
    host = env.get("DOCKER_HOST", "")
    if not host:
        return DEFAULT_SOCKET
    if host.startswith("unix://"):
        return host[len("unix://") :]
    raise EngineUnavailable(
        "connecting to the engine",
        f"DOCKER_HOST={host} is not a unix:// socket",
        "podctl talks to a local engine over its unix socket",
    )


class DockerRuntime:
    """The Docker engine behind the `Runtime` protocol.

    Create it inside the event loop (aiohttp connectors bind to the running loop)
    and `close()` it, or use it as an async context manager.
    """

    def __init__(
        self,
        socket_path: str | None = None,
        *,
        call_timeout_s: float = defaults.ENGINE_CALL_TIMEOUT_S,
        pull_timeout_s: float = defaults.ENGINE_PULL_TIMEOUT_S,
        build_timeout_s: float = defaults.ENGINE_BUILD_TIMEOUT_S,
        ping_timeout_s: float = defaults.ENGINE_PING_TIMEOUT_S,
        concurrency: int = defaults.ENGINE_CONCURRENCY,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        self.socket_path = socket_path or socket_path_from_env()
        self.call_timeout_s = call_timeout_s
        self.pull_timeout_s = pull_timeout_s
        self.build_timeout_s = build_timeout_s
        self.ping_timeout_s = ping_timeout_s
        # Calls: a bounded pool, always larger than the mutating semaphore.
        self._api_connector = aiohttp.UnixConnector(
            path=self.socket_path, limit=max(pool_size, concurrency * 2)
        )
        # Streams (events, followed logs) and stops (the engine answers once the grace
        # is over) each hold a connection for as long as they last: give them a pool
        # of their own, unbounded (`limit=0`: aiohttp's default of 100 would queue
        # the 101st stop behind a whole grace), so they can never starve the calls
        # the controller needs to converge.
        self._stream_connector = aiohttp.UnixConnector(path=self.socket_path, limit=0)
        # The URL only names the API's host part: the connector decides where bytes go.
        self._api = aiodocker.Docker(url=_URL_BASE, connector=self._api_connector)
        self._streams = aiodocker.Docker(url=_URL_BASE, connector=self._stream_connector)
        self._mutations = anyio.Semaphore(concurrency)
        self._reads = anyio.Semaphore(max(concurrency * 2, 1))
        # id -> (State, Status minus its relative time), ContainerInfo: the list answer
        # lacks exit codes and times, so a resync inspects only the containers whose
        # state changed since the previous list.
        self._inspect_cache: dict[str, tuple[CacheKey, ContainerInfo]] = {}
        self._closed = False

    async def __aenter__(self) -> DockerRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- plumbing ------------------------------------------------------------------

    @asynccontextmanager
    async def _engine(
        self, doing: str, timeout_s: float | None, *, mutating: bool = False
    ) -> AsyncIterator[None]:
        """Run an engine call under a deadline, translating its failures to EngineErrors.

        The deadline covers waiting for the semaphore too: every call podctl makes
        has a bounded duration, whatever the queue ahead of it.
        """
        try:
            with anyio.fail_after(timeout_s):
                if mutating:
                    async with self._mutations:
                        yield
                else:
                    yield
        except TimeoutError:
            raise EngineUnavailable(
                doing, f"engine did not answer within {timeout_s:g}s", _UNAVAILABLE_HINT
            ) from None
        except aiodocker.DockerError as e:
            if e.status == 900:  # aiodocker's code for "cannot connect"
                reason = str(e.__cause__ or e.message)
                raise EngineUnavailable(
                    doing,
                    f"cannot connect to the engine at {self.socket_path}: {reason}",
                    _UNAVAILABLE_HINT,
                ) from e
            raise translate_error(doing, e) from e
        except (aiohttp.ClientError, OSError) as e:
            raise EngineUnavailable(doing, str(e) or type(e).__name__, _UNAVAILABLE_HINT) from e

    async def _get(self, doing: str, path: str, params: dict[str, Any] | None = None) -> Any:
        async with self._engine(doing, self.call_timeout_s):
            return await self._api._query_json(path, "GET", params=params)

    async def _mutate(
        self,
        doing: str,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        timeout_s: float | None = None,
        creates: bool = False,
    ) -> Any:
        timeout = self.call_timeout_s if timeout_s is None else timeout_s
        async with self._engine(doing, timeout, mutating=True):
            # A create the engine has received completes there even when podctl stops
            # waiting (Ctrl-C): the object would appear after the teardown looked.
            # Once sent, a create is seen through, under the same deadline.
            with anyio.fail_after(timeout, shield=creates):
                async with self._api._query(
                    path,
                    method,
                    params=params,
                    data=None if body is None else json.dumps(body),
                    timeout=_NO_TIMEOUT,
                ) as response:
                    raw = await response.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    # -- engine --------------------------------------------------------------------

    async def ping(self) -> None:
        async with (
            self._engine("pinging the engine", self.ping_timeout_s),
            self._api._query("_ping", "GET", versioned_api=False) as response,
        ):
            await response.read()

    async def host_info(self) -> HostInfo:
        info = await self._get("reading engine info", "info")
        return HostInfo(
            ncpu=int(info.get("NCPU") or 0),
            mem_bytes=int(info.get("MemTotal") or 0),
            server_version=str(info.get("ServerVersion") or ""),
        )

    # -- containers ----------------------------------------------------------------

    async def list_containers(self, stack: str | None = None) -> list[ContainerInfo]:
        doing = f"listing containers of stack {stack}" if stack else "listing podctl containers"
        items = await self._get(
            doing, "containers/json", {"all": "1", "filters": label_filter(stack)}
        )
        seen: set[str] = set()
        result: dict[str, ContainerInfo] = {}
        stale: list[tuple[str, CacheKey]] = []
        for item in items:
            cid = str(item["Id"])
            seen.add(cid)
            key = cache_key(item)
            cached = self._inspect_cache.get(cid)
            if cached is not None and cached[0] == key:
                result[cid] = cached[1]
            else:
                stale.append((cid, key))
        errors: list[EngineError] = []

        async def refresh(cid: str, key: CacheKey) -> None:
            try:
                async with self._reads:
                    info = await self.inspect_container(cid)
            except NotFound:
                return  # removed between the list and the inspect: it no longer exists
            except EngineError as e:
                errors.append(e)  # raised below, unwrapped from the task group
                return
            result[cid] = info
            self._inspect_cache[cid] = (key, info)

        async with anyio.create_task_group() as tg:
            for cid, key in stale:
                tg.start_soon(refresh, cid, key)
        if errors:
            raise errors[0]
        # Forget containers the engine no longer has.
        for cid in list(self._inspect_cache):
            if cid not in seen:
                del self._inspect_cache[cid]
        # Keep the engine's order (newest first).
        return [result[str(item["Id"])] for item in items if str(item["Id"]) in result]

    async def inspect_container(self, container_id: str) -> ContainerInfo:
        data = await self._get(
            f"inspecting container {short_id(container_id)}", f"{container_path(container_id)}/json"
        )
        return container_info(data)

    async def create_container(self, spec: ContainerSpec) -> str:
        data = await self._mutate(
            f"creating container {spec.name}",
            "POST",
            "containers/create",
            params={"name": spec.name},
            body=container_config(spec),
            creates=True,
        )
        return str(data["Id"])

    async def start_container(self, container_id: str) -> None:
        # A (re)started container gets a new StartedAt and, once it ends, a new
        # FinishedAt; if it crashes again with the same exit code before the next
        # list, the list's State/Status look unchanged: forget the inspect (also
        # one a list running meanwhile stored).
        self._inspect_cache.pop(container_id, None)
        try:
            await self._mutate(
                f"starting container {short_id(container_id)}",
                "POST",
                f"{container_path(container_id)}/start",
            )
        finally:
            self._inspect_cache.pop(container_id, None)

    async def stop_container(self, container_id: str, grace_s: float) -> None:
        """The engine's stop: the container's stop signal (SIGTERM unless its image
        says otherwise), up to `grace_s` (whole seconds, rounded up) for it to exit,
        then SIGKILL; returns once it has exited.

        The engine waits out the grace itself, so the call is a wait rather than
        work: it runs on the long-request pool, outside the mutation semaphore, and
        any number of stops wait out their graces side by side (50 replicas that
        ignore SIGTERM take one grace, not one per batch of 8). Its deadline is the
        grace plus an ordinary call's. A container already stopped (the engine's
        304) or gone (404) is not an error.
        """
        grace = max(0, math.ceil(grace_s))
        doing = f"stopping container {short_id(container_id)}"
        try:
            async with (
                self._engine(doing, grace + self.call_timeout_s),
                self._streams._query(
                    f"{container_path(container_id)}/stop",
                    "POST",
                    params={"t": str(grace)},
                    timeout=_NO_TIMEOUT,
                ) as response,
            ):
                await response.read()
        except NotFound:
            pass

    async def kill_container(self, container_id: str, signal: str = "SIGKILL") -> None:
        await self._mutate(
            f"killing container {short_id(container_id)} with {signal}",
            "POST",
            f"{container_path(container_id)}/kill",
            params={"signal": signal},
        )

    async def remove_container(self, container_id: str) -> None:
        try:
            await self._mutate(
                f"removing container {short_id(container_id)}",
                "DELETE",
                container_path(container_id),
                # Named volumes outlive their containers (`down --volumes` removes them).
                params={"force": "1", "v": "0"},
            )
        except NotFound:
            pass
        except Conflict as e:
            # Someone else's removal is under way: the container is going either way.
            if "already in progress" not in e.detail:
                raise
        self._inspect_cache.pop(container_id, None)

    # -- networks and volumes ------------------------------------------------------

    async def list_networks(self, stack: str | None = None) -> list[NetworkInfo]:
        doing = f"listing networks of stack {stack}" if stack else "listing podctl networks"
        items = await self._get(doing, "networks", {"filters": label_filter(stack)})
        return [network_info(item) for item in items]

    async def create_network(self, name: str, labels: dict[str, str]) -> NetworkInfo:
        doing = f"creating network {name}"
        data = await self._mutate(
            doing,
            "POST",
            "networks/create",
            body={"Name": name, "Driver": "bridge", "Labels": labels, "CheckDuplicate": True},
            creates=True,
        )
        # The create answer has only the id: the address range comes from an inspect.
        inspected = await self._get(doing, f"networks/{data['Id']}")
        return network_info(inspected)

    async def remove_network(self, network_id: str) -> None:
        doing = f"removing network {network_id}"
        for attempt in range(NETWORK_REMOVE_ATTEMPTS):
            try:
                await self._mutate(doing, "DELETE", f"networks/{network_id}")
                return
            except NotFound:
                return
            except EngineError as exc:
                if "active endpoints" not in exc.detail:
                    raise
                # The engine releases a removed container's endpoint a moment after
                # the removal returns; 20.10 sometimes never does (a stale endpoint
                # in its store, moby#42119-like), which only a dockerd restart clears.
                if attempt == NETWORK_REMOVE_ATTEMPTS - 1:
                    raise EngineError(
                        doing,
                        exc.detail,
                        "its containers are gone but the engine still counts an endpoint; "
                        "the network is harmless but only a dockerd restart frees it",
                    ) from exc
                await anyio.sleep(
                    min(NETWORK_REMOVE_FIRST_RETRY_S * 2**attempt, NETWORK_REMOVE_MAX_RETRY_S)
                )

    async def list_volumes(self, stack: str | None = None) -> list[VolumeInfo]:
        doing = f"listing volumes of stack {stack}" if stack else "listing podctl volumes"
        data = await self._get(doing, "volumes", {"filters": label_filter(stack)})
        return [volume_info(item) for item in data.get("Volumes") or []]

    async def create_volume(
        self, name: str, labels: dict[str, str], driver: str | None, options: dict[str, str]
    ) -> VolumeInfo:
        body: dict[str, Any] = {"Name": name, "Labels": labels, "DriverOpts": options}
        if driver:
            body["Driver"] = driver
        data = await self._mutate(
            f"creating volume {name}", "POST", "volumes/create", body=body, creates=True
        )
        return volume_info(data)

    async def remove_volume(self, name: str) -> None:
        try:
            await self._mutate(f"removing volume {name}", "DELETE", f"volumes/{name}")
        except NotFound:
            pass

    # -- images --------------------------------------------------------------------

    async def image_exists(self, ref: str) -> bool:
        try:
            await self._get(f"looking for image {ref}", f"images/{ref}/json")
        except NotFound:
            return False
        return True

    async def pull_image(self, ref: str) -> None:
        doing = f"pulling image {ref}"
        image, tag = split_image_ref(ref)
        params = {"fromImage": image, "tag": tag}
        # The user's `docker login` credentials for the image's registry, if any.
        auth = await anyio.to_thread.run_sync(registry_auth, ref)
        headers = {"X-Registry-Auth": auth} if auth else None
        try:
            async with (
                self._engine(doing, self.pull_timeout_s, mutating=True),
                self._api._query(
                    "images/create", "POST", params=params, headers=headers, timeout=_NO_TIMEOUT
                ) as response,
            ):
                # Failures after the 200 arrive inside the progress stream.
                async for line in response.content:
                    error = stream_error(line)
                    if error:
                        raise ImagePullError(doing, error, _PULL_HINT)
        except ImagePullError:
            raise
        except EngineUnavailable as e:
            if "did not answer" in e.detail:
                # A registry too slow to answer is a pull failure, retried with backoff.
                raise ImagePullError(doing, e.detail, _PULL_HINT) from e
            raise
        except EngineError as e:
            raise ImagePullError(doing, e.detail, _PULL_HINT) from e

    async def build_image(self, context_dir: str, tag: str, labels: dict[str, str]) -> None:
        doing = f"building image {tag} from {context_dir}"
        try:
            archive = await anyio.to_thread.run_sync(tar_context, context_dir)
        except OSError as e:
            raise EngineError(doing, f"cannot read the build context: {e}") from e
        params = {"t": tag, "labels": json.dumps(labels), "rm": "1", "forcerm": "1"}
        async with (
            self._engine(doing, self.build_timeout_s, mutating=True),
            self._api._query(
                "build",
                "POST",
                params=params,
                data=archive,
                headers={"Content-Type": "application/x-tar"},
                timeout=_NO_TIMEOUT,
            ) as response,
        ):
            # The last lines of output say why a build failed (the error line only
            # names the step): `podctl dev` shows them.
            tail: collections.deque[str] = collections.deque(maxlen=BUILD_TAIL_LINES)
            async for line in response.content:
                error = stream_error(line)
                if error:
                    raise BuildError(doing, error.strip(), [*tail, error.strip()])
                tail.extend(t for t in stream_text(line).splitlines() if t.strip())

    # -- registry: tag and push (`podctl push`) ----------------------------------

    async def tag_image(self, source: str, target: str) -> None:
        repo, tag = split_image_ref(target)
        await self._mutate(
            f"tagging image {source} as {target}",
            "POST",
            f"images/{source}/tag",
            params={"repo": repo, "tag": tag},
        )

    async def push_image(self, ref: str) -> None:
        doing = f"pushing image {ref}"
        repo, tag = split_image_ref(ref)
        # The engine wants the header even for an anonymous push: `{}` then.
        auth = await anyio.to_thread.run_sync(registry_auth, ref) or "e30="
        async with (
            self._engine(doing, self.pull_timeout_s, mutating=True),
            self._api._query(
                f"images/{repo}/push",
                "POST",
                params={"tag": tag},
                headers={"X-Registry-Auth": auth},
                timeout=_NO_TIMEOUT,
            ) as response,
        ):
            # Failures after the 200 (refused, unauthorised) arrive in the stream.
            async for line in response.content:
                error = stream_error(line)
                if error:
                    raise EngineError(doing, error.strip())

    # -- exec and logs -------------------------------------------------------------

    async def exec(self, container_id: str, command: list[str], timeout_s: float) -> ExecResult:
        return await self.exec_as(container_id, command, timeout_s)

    # -- dev mode (`podctl dev`): live sync into running containers ---------------

    async def put_archive(self, container_id: str, path: str, archive: bytes) -> None:
        doing = f"copying {len(archive)} bytes into container {short_id(container_id)} at {path}"
        # Not a create or remove: it does not queue behind the mutation semaphore, so
        # a save reaches the replicas while a rollout is creating containers.
        async with (
            self._engine(doing, self.call_timeout_s),
            self._api._query(
                f"{container_path(container_id)}/archive",
                "PUT",
                params={"path": path},
                data=archive,
                headers={"Content-Type": "application/x-tar"},
                timeout=_NO_TIMEOUT,
            ) as response,
        ):
            await response.read()

    async def get_archive(self, container_id: str, path: str, max_bytes: int) -> bytes:
        doing = f"reading {path} from container {short_id(container_id)}"
        async with (
            self._engine(doing, self.call_timeout_s),
            self._api._query(
                f"{container_path(container_id)}/archive",
                "GET",
                params={"path": path},
                timeout=_NO_TIMEOUT,
            ) as response,
        ):
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    raise EngineError(doing, f"more than {max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

    async def restart_container(self, container_id: str, grace_s: float) -> None:
        grace = max(0, math.ceil(grace_s))
        doing = f"restarting container {short_id(container_id)}"
        self._inspect_cache.pop(container_id, None)
        try:
            # Like a stop, mostly a wait: the long-request pool, no semaphore.
            async with (
                self._engine(doing, grace + self.call_timeout_s),
                self._streams._query(
                    f"{container_path(container_id)}/restart",
                    "POST",
                    params={"t": str(grace)},
                    timeout=_NO_TIMEOUT,
                ) as response,
            ):
                await response.read()
        finally:
            self._inspect_cache.pop(container_id, None)

    async def exec_as(
        self,
        container_id: str,
        command: list[str],
        timeout_s: float,
        *,
        user: str | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        doing = f"running `{shlex.join(command)}` in container {short_id(container_id)}"
        config: dict[str, Any] = {
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": False,
            "Cmd": command,
        }
        if user is not None:
            config["User"] = user
        if workdir is not None:
            config["WorkingDir"] = workdir
        async with self._engine(doing, self.call_timeout_s):
            created = await self._api._query_json(
                f"{container_path(container_id)}/exec", "POST", data=config
            )
        exec_id = str(created["Id"])
        try:
            with anyio.fail_after(timeout_s):
                async with self._engine(doing, None):
                    # Without an Upgrade header the engine answers 200 and streams the
                    # multiplexed output until the command ends, then closes.
                    async with self._api._query(
                        f"exec/{exec_id}/start",
                        "POST",
                        data=json.dumps({"Detach": False, "Tty": False}),
                        timeout=_NO_TIMEOUT,
                    ) as response:
                        raw = await response.read()
                    exit_code = await self._exec_exit_code(exec_id)
        except TimeoutError:
            raise ExecTimeout(doing, f"did not finish within {timeout_s:g}s") from None
        return ExecResult(exit_code=exit_code, output=b"".join(demultiplex(raw)))

    async def _exec_exit_code(self, exec_id: str) -> int:
        # The stream can end a moment before the engine records the exit code.
        delay = 0.005
        while True:
            info = await self._api._query_json(f"exec/{exec_id}/json")
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def logs(
        self, container_id: str, *, follow: bool = False, tail: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        doing = f"reading logs of container {short_id(container_id)}"
        data = await self._get(doing, f"{container_path(container_id)}/json")
        tty = bool((data.get("Config") or {}).get("Tty"))
        params = {
            "stdout": "1",
            "stderr": "1",
            "follow": "1" if follow else "0",
            "tail": "all" if tail is None else str(max(tail, 0)),
        }
        async with self._engine(doing, self.call_timeout_s):
            response = await self._streams._do_query(
                f"{container_path(container_id)}/logs", "GET", params=params, timeout=_NO_TIMEOUT
            )
        # A followed stream may be quiet for ever; a finished one must not hang.
        read_timeout = None if follow else self.call_timeout_s
        try:
            while True:
                async with self._engine(doing, read_timeout):
                    chunk = await read_frame(response.content, tty)
                if chunk is None:
                    return
                if chunk:
                    yield chunk
        finally:
            response.close()

    # -- events --------------------------------------------------------------------

    async def events(self) -> AsyncGenerator[EngineEvent, None]:
        """Events of podctl-labelled containers, networks and volumes.

        Returns when the engine closes the stream; raises EngineUnavailable when the
        connection breaks. Either way the controller re-subscribes and re-observes.

        The engine filters by the label on the event's actor. Container events carry
        the container's labels; network and volume events of the 20.10 engine carry
        none, so in practice only container events arrive here. That is enough for a
        level-triggered controller: its periodic resync notices network and volume
        changes.
        """
        doing = "watching engine events"
        filters = json.dumps({"label": [labels.STACK], "type": ["container", "network", "volume"]})
        async with self._engine(doing, self.call_timeout_s):
            response = await self._streams._do_query(
                "events", "GET", params={"filters": filters}, timeout=_NO_TIMEOUT
            )
        try:
            while True:
                async with self._engine(doing, None):
                    line = await response.content.readline()
                if not line:
                    return
                event = engine_event(line)
                if event is not None:
                    yield event
        finally:
            response.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._api.close()
        await self._streams.close()
        # aiodocker leaves connectors it was handed to their owner: us.
        await self._api_connector.close()
        await self._stream_connector.close()


def _conforms(runtime: DockerRuntime) -> Runtime:
    # mypy checks here that DockerRuntime implements the whole protocol.
    return runtime
