"""Service listeners and the service manager's descriptor store (no systemd needed).

A fake notifier records FDSTORE/FDSTOREREMOVE; "adopted" listeners are plain
listening sockets, as `$LISTEN_FDS` would pass them.
"""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from podctl.net.proxy import Endpoint
from podctl.net.proxyset import ListenAddress, ListenerStore, ProxySet, ServiceBinding
from tests.fake.test_proxy import anyio_backend, backends  # noqa: F401 (fixture)

pytestmark = pytest.mark.anyio


class FakeNotifier:
    enabled = True

    def __init__(self) -> None:
        self.stored: list[tuple[str, int]] = []
        self.removed: list[str] = []

    def fdstore(self, fd: int, name: str, poll: bool = True) -> bool:
        self.stored.append((name, os.dup(fd)))  # systemd keeps a duplicate
        return True

    def fdstore_remove(self, name: str) -> bool:
        self.removed.append(name)
        return True


def listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


async def ask(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hi")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


async def test_a_bound_listener_is_stored_and_forgotten_when_unwanted() -> None:
    notifier = FakeNotifier()
    proxies = ProxySet(store=ListenerStore(notifier))  # type: ignore[arg-type]
    sock = listener()
    port = sock.getsockname()[1]
    sock.close()
    binding = ServiceBinding("shop/web", (ListenAddress("127.0.0.1", port),))
    try:
        assert await proxies.apply([binding]) == []
        assert [n for n, _ in notifier.stored] == ["shop/web"]
        await proxies.apply([])
        assert notifier.removed == ["shop/web"]
    finally:
        await proxies.close()
        for _, fd in notifier.stored:
            socket.socket(fileno=fd).close()


async def test_an_adopted_listener_accepts_once_its_service_has_an_endpoint() -> None:
    notifier = FakeNotifier()
    sock = listener()
    port = sock.getsockname()[1]
    # A client connects while nobody accepts: it waits in the backlog.
    early = asyncio.ensure_future(ask(port))
    stale = listener()  # a stored listener of a service that is gone
    store = ListenerStore(notifier, {"shop/web": sock, "old/svc": stale})  # type: ignore[arg-type]
    proxies = ProxySet(store=store)
    woken: list[int] = []
    proxies.wakeup = lambda: woken.append(1)
    binding = ServiceBinding("shop/web", (ListenAddress("127.0.0.1", port),))
    async with backends("a") as bs:
        try:
            assert await proxies.apply([binding]) == []
            assert proxies.pending_until() is not None  # not accepting: no endpoint yet
            assert notifier.removed == ["old/svc"]
            await asyncio.sleep(0.2)
            assert not early.done()
            proxies.set_endpoints("shop/web", [Endpoint("a", "127.0.0.1", bs[0].port)])
            assert woken == [1]
            await proxies.apply([binding])
            assert proxies.pending_until() is None
            assert await asyncio.wait_for(early, 10) == b"a"  # the waiting client is served
            assert notifier.stored == []  # adopted: the store has it already
        finally:
            await proxies.close(forget=False)
    assert notifier.removed == ["old/svc"]  # a stop that keeps the pods keeps the store


async def test_a_listener_on_another_address_is_not_adopted() -> None:
    notifier = FakeNotifier()
    sock = listener()
    store = ListenerStore(notifier, {"shop/web": sock})  # type: ignore[arg-type]
    free = listener()
    port = free.getsockname()[1]
    free.close()
    proxies = ProxySet(store=store)
    try:
        await proxies.apply([ServiceBinding("shop/web", (ListenAddress("127.0.0.1", port),))])
        assert notifier.removed == ["shop/web"]  # the old one is dropped from the store
        assert [n for n, _ in notifier.stored] == ["shop/web"]  # the new one stored
        assert sock.fileno() == -1
    finally:
        await proxies.close()
        for _, fd in notifier.stored:
            socket.socket(fileno=fd).close()


async def test_a_stored_listener_reopens_on_the_same_socket() -> None:
    # uvloop closes a listener after an accept error it cannot absorb; the stored twin
    # still holds the port, so the re-open must serve that same socket, not bind anew.
    notifier = FakeNotifier()
    proxies = ProxySet(store=ListenerStore(notifier))  # type: ignore[arg-type]
    free = listener()
    port = free.getsockname()[1]
    free.close()
    binding = ServiceBinding("shop/web", (ListenAddress("127.0.0.1", port),))
    async with backends("a") as bs:
        try:
            await proxies.apply([binding])
            proxies.set_endpoints("shop/web", [Endpoint("a", "127.0.0.1", bs[0].port)])
            (proxy,) = proxies._listeners.values()
            await proxy._reopen()
            assert proxy.reopens == 1
            assert await ask(port) == b"a"
        finally:
            await proxies.close()
            for _, fd in notifier.stored:
                socket.socket(fileno=fd).close()
