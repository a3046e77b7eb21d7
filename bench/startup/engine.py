"""The harness's own view of the engine: an event watch, listings, bounded teardown.

The harness measures through the engine (its event stream and container list),
never through podctl's CLI, so no tool's own reporting overhead is counted.
Event times are the engine's (`timeNano`, wall clock of this host), compared
with `time.time()` taken just before a method's process is spawned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

import aiodocker
import aiohttp

T = TypeVar("T")

Event = dict[str, Any]


def socket_path() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return host[len("unix://") :]
    return "/var/run/docker.sock"


def event_time(ev: Event) -> float:
    return int(ev["timeNano"]) / 1e9


def event_labels(ev: Event) -> dict[str, str]:
    return dict((ev.get("Actor") or {}).get("Attributes") or {})


class EventWatch:
    """Container events matching `filters`, recorded from the moment the watch opens.

    Opened before the method under test starts, so no event can be missed: the
    engine answers the subscription's headers only once it is subscribed.
    """

    def __init__(self, session: aiohttp.ClientSession, filters: dict[str, list[str]]) -> None:
        self._session = session
        self._filters = {"type": ["container"], **filters}
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        self._response: aiohttp.ClientResponse | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventWatch:
        self._response = await self._session.get(
            "http://docker/events",
            params={"filters": json.dumps(self._filters)},
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        )
        self._response.raise_for_status()
        self._task = asyncio.create_task(self._read(self._response))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            # asyncio.wait, not `await task` under suppress(CancelledError): a
            # cancellation of *this* task (Ctrl-C) must not be swallowed here.
            await asyncio.wait([self._task])
            if not self._task.cancelled():
                self._task.exception()  # retrieved: a stream that broke after we stopped caring
        if self._response is not None:
            self._response.close()

    async def _read(self, response: aiohttp.ClientResponse) -> None:
        async for line in response.content:
            if line.strip():
                self.events.append(json.loads(line))
                self._changed.set()

    async def wait(self, what: str, check: Callable[[list[Event]], T | None], timeout: float) -> T:
        """Wait until `check(events so far)` gives an answer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._changed.clear()
            answer = check(self.events)
            if answer is not None:
                return answer
            if self._task is not None and self._task.done():
                raise RuntimeError(f"the engine's event stream ended while waiting for {what}")
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def nth_start(self, n: int, timeout: float, after: float = 0.0) -> list[float]:
        """Times of the first `start` of `n` distinct containers (sorted)."""

        def check(events: list[Event]) -> list[float] | None:
            first: dict[str, float] = {}
            for ev in events:
                if ev.get("Action") == "start" and event_time(ev) >= after:
                    first.setdefault(str(ev["id"]), event_time(ev))
            return sorted(first.values()) if len(first) >= n else None

        return await self.wait(f"{n} started containers", check, timeout)


class Engine:
    """aiodocker for calls, a plain aiohttp session for the event stream."""

    def __init__(self) -> None:
        path = socket_path()
        self.docker = aiodocker.Docker(url="unix://" + path)
        self.session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path))

    async def close(self) -> None:
        await self.docker.close()
        await self.session.close()

    def watch(self, **filters: list[str]) -> EventWatch:
        return EventWatch(self.session, dict(filters))

    async def containers(self, label: str, *, all_: bool = True) -> list[dict[str, Any]]:
        params = {"all": "1" if all_ else "0", "filters": json.dumps({"label": [label]})}
        result = await self.docker._query_json("containers/json", params=params)
        return list(result)

    async def running(self, label: str) -> int:
        return sum(1 for c in await self.containers(label) if c.get("State") == "running")

    async def image_exists(self, ref: str) -> bool:
        try:
            await self.docker.images.inspect(ref)
        except aiodocker.DockerError:
            return False
        return True

    async def remove_containers(self, label: str, concurrency: int, timeout: float = 180) -> int:
        """Force-remove every container carrying `label`, `concurrency` at a time.

        The Debian 20.10 engine has deadlocked when asked to remove dozens of
        containers at once: never more than `concurrency` removals in flight.
        Returns how many were removed.
        """
        sem = asyncio.Semaphore(max(concurrency, 1))
        removed = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        async def rm(cid: str) -> None:
            nonlocal removed
            async with sem:
                try:
                    await asyncio.wait_for(
                        self.docker._query_json(
                            f"containers/{cid}", method="DELETE", params={"force": "1", "v": "1"}
                        ),
                        60,
                    )
                    removed += 1
                except aiodocker.DockerError as e:
                    if e.status not in (404, 409):  # gone, or its removal already under way
                        raise

        while True:
            ids = [str(c["Id"]) for c in await self.containers(label)]
            if not ids:
                return removed
            if loop.time() > deadline:
                raise TimeoutError(f"containers labelled {label} still there after {timeout:g}s")
            async with asyncio.TaskGroup() as tg:
                for cid in ids:
                    tg.create_task(rm(cid))
            await asyncio.sleep(0.2)  # a removal "already in progress" finishes on its own

    async def remove_networks(self, names: set[str], patience_s: float = 10.0) -> None:
        """Remove networks by exact name (call only once their containers are gone).

        The 20.10 engine sometimes refuses with "has active endpoints" although no
        container is attached (its endpoint count lags, or is stuck after a burst of
        removals): retry for `patience_s`, then raise saying so.
        """
        stuck: list[str] = []
        for net in await self.docker._query_json("networks"):
            if net.get("Name") not in names:
                continue
            try:
                await self._remove_network(net, patience_s)
            except RuntimeError as e:
                stuck.append(str(e))  # try the others before saying so
        if stuck:
            raise RuntimeError("; ".join(stuck))

    async def _remove_network(self, net: dict[str, Any], patience_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience_s
        while True:
            try:
                await self.docker._query_json(f"networks/{net['Id']}", method="DELETE")
                return
            except aiodocker.DockerError as e:
                if e.status == 404:
                    return
                if "active endpoints" not in str(e.message) or loop.time() > deadline:
                    info = await self.docker._query_json(f"networks/{net['Id']}")
                    attached = len(info.get("Containers") or {})
                    raise RuntimeError(
                        f"network {net['Name']} not removed: {e.message} "
                        f"(containers attached per the engine: {attached})"
                    ) from e
            await asyncio.sleep(1.0)

    async def network_names(self, prefix: str) -> set[str]:
        return {
            str(n["Name"])
            for n in await self.docker._query_json("networks")
            if prefix in str(n.get("Name", ""))
        }

    async def kill(self, cid: str) -> None:
        await self.docker._query_json(
            f"containers/{cid}/kill", method="POST", params={"signal": "SIGKILL"}
        )

    async def inspect(self, cid: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.docker._query_json(f"containers/{cid}/json")
        return result

    async def create_and_start(self, name: str, body: dict[str, Any]) -> str:
        created = await self.docker._query_json(
            "containers/create", method="POST", params={"name": name}, data=json.dumps(body)
        )
        cid = str(created["Id"])
        await self.docker._query_json(f"containers/{cid}/start", method="POST")
        return cid

    async def create_network(self, name: str, labels: dict[str, str]) -> None:
        await self.docker._query_json(
            "networks/create",
            method="POST",
            data=json.dumps(
                {"Name": name, "Driver": "bridge", "Labels": labels, "CheckDuplicate": True}
            ),
        )
