"""Descriptor exhaustion: the proxy and the control socket under a low RLIMIT_NOFILE.

The listeners run in a child process whose soft and hard RLIMIT_NOFILE are set
low (pytest keeps its own); the backend and the clients live here, so the
child's descriptors go to the proxy's connections only. The child obeys
commands on stdin ("exhaust": open /dev/null until EMFILE, "release": close
them) and answers each with one JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from podctl.net.limits import connection_cap

pytestmark = pytest.mark.anyio

LIMIT = 256

CHILD = r"""
import asyncio, json, logging, os, sys
from pathlib import Path

import msgspec

from podctl.api.schema import Reply
from podctl.api.server import serve
from podctl.net.proxy import Endpoint, ServiceProxy

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")


class Handler:
    async def handle(self, request):
        return Reply(ok=True, data="pong")

    async def stream(self, request):
        yield b""


async def main(backend_port: int, sock_path: str) -> None:
    loop = asyncio.get_running_loop()
    proxy = ServiceProxy("t/web", "127.0.0.1", 0, idle_timeout_s=300)
    proxy.set_endpoints([Endpoint("b", "127.0.0.1", backend_port)])
    await proxy.start()
    server = asyncio.ensure_future(serve(Path(sock_path), Handler()))
    while not os.path.exists(sock_path):
        await asyncio.sleep(0.01)
    out = sys.stdout
    def say(**kw):
        out.write(json.dumps(kw) + "\n")
        out.flush()
    say(port=proxy.address[1], cap=proxy.max_connections)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    held = []
    while line := (await reader.readline()).decode().strip():
        if line == "exhaust":
            try:
                while True:
                    held.append(os.open("/dev/null", os.O_RDONLY))
            except OSError as e:
                say(exhausted=len(held), error=e.strerror)
        elif line == "release":
            for fd in held:
                os.close(fd)
            say(released=len(held))
            held.clear()
        elif line == "stats":
            s = proxy.stats()
            say(active=s.active, rejected=s.rejected, serving=proxy.serving(),
                server_alive=not server.done())
    server.cancel()
    await proxy.close()


if sys.argv[1] == "uvloop":
    import uvloop
    uvloop.run(main(int(sys.argv[2]), sys.argv[3]))
else:
    asyncio.run(main(int(sys.argv[2]), sys.argv[3]))
"""


class Child:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stderr = bytearray()
        # Read all along: a full stderr pipe would block the child.
        self._drain = asyncio.ensure_future(self._read_stderr())

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self.stderr += chunk

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        async with asyncio.timeout(10):
            return json.loads(await self.proc.stdout.readline())  # type: ignore[no-any-return]


def _low_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


@contextlib.asynccontextmanager
async def child(
    loop_name: str, backend_port: int, sock: Path
) -> AsyncIterator[tuple[Child, dict[str, Any]]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        loop_name,
        str(backend_port),
        str(sock),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_low_limit,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            hello = json.loads(await proc.stdout.readline())
        c = Child(proc)
        yield c, hello
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await c._drain


async def echo_backend() -> asyncio.AbstractServer:
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        w.close()

    return await asyncio.start_server(echo, "127.0.0.1", 0, backlog=1024)


async def control_call(sock: Path) -> str:
    async with asyncio.timeout(10):
        r, w = await asyncio.open_unix_connection(str(sock))
    try:
        w.write(b'{"verb":"ping"}\n')
        await w.drain()
        async with asyncio.timeout(10):
            return (await r.readline()).decode()
    finally:
        w.close()


async def served(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """A connection through the proxy that echoes, or None if the proxy closed it."""
    try:
        async with asyncio.timeout(5):
            r, w = await asyncio.open_connection("127.0.0.1", port)
    except (OSError, TimeoutError):
        return None
    try:
        w.write(b"ping")
        await w.drain()
        async with asyncio.timeout(5):
            data = await r.readexactly(4)
    except (OSError, asyncio.IncompleteReadError, TimeoutError):
        w.close()
        return None
    assert data == b"ping"
    return r, w


async def wait_until(cond: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await cond()
        if got or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("loop_name", ["uvloop", "asyncio"])
async def test_idle_connections_cannot_exhaust_descriptors(loop_name: str) -> None:
    backend = await echo_backend()
    bport = backend.sockets[0].getsockname()[1]
    conns: list[asyncio.StreamWriter] = []
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "control.sock"
        async with child(loop_name, bport, sock) as (c, hello):
            cap = hello["cap"]
            assert cap == connection_cap(LIMIT) < LIMIT // 2
            # Far more idle clients than the cap: the first `cap` are served, the
            # rest closed at once; the child keeps its reserve of descriptors.
            for _ in range(cap + 60):
                got = await served(hello["port"])
                if got is not None:
                    conns.append(got[1])
            assert len(conns) == cap
            stats = await c.ask("stats")
            assert stats["active"] == cap and stats["rejected"] >= 60
            # The control socket answers while the proxy is full.
            async with asyncio.timeout(1):
                assert '"pong"' in await control_call(sock)
            # Old clients leave: new ones are served.
            for w in conns[:10]:
                w.close()
            del conns[:10]
            got = await wait_until(lambda: served(hello["port"]))
            assert got is not None
            conns.append(got[1])

            # Now run the child out of descriptors entirely.
            for w in conns:
                w.close()
            conns.clear()
            await wait_until(lambda: _active_is(c, 0))
            ex = await c.ask("exhaust")
            assert ex["error"] == "Too many open files"
            # A control request waits in the backlog (accept: EMFILE, back off) ...
            pending = asyncio.ensure_future(control_call(sock))
            proxied = asyncio.ensure_future(served(hello["port"]))
            await asyncio.sleep(0.3)  # let accept fail a few times (not synchronisation)
            assert not pending.done() or '"pong"' in pending.result()
            # ... and is answered once descriptors are free again.
            assert (await c.ask("release"))["released"] == ex["exhausted"]
            async with asyncio.timeout(5):
                assert '"pong"' in await pending
            await proxied  # served or closed at once: either way, no hang and no crash
            got = await wait_until(lambda: served(hello["port"]))
            assert got is not None, "the proxy stopped serving after EMFILE"
            got[1].close()
            stats = await c.ask("stats")
            assert stats["serving"] and stats["server_alive"]
            assert c.proc.returncode is None
            c.proc.stdin.close()  # type: ignore[union-attr]
            async with asyncio.timeout(10):
                await c.proc.wait()
            assert c.proc.returncode == 0
            async with asyncio.timeout(5):
                await c._drain
            err = c.stderr.decode()
            # No error from podctl's code. (Plain asyncio logs its own accept pauses,
            # and their leftover retry timers complain once the listener is closed;
            # podctl runs on uvloop, which says nothing.)
            assert "/podctl/" not in err, err
            if loop_name == "uvloop":
                assert "Traceback" not in err, err
            # Logged once per episode, not once per failed accept.
            assert err.count("control socket: cannot accept") == 1, err
    for w in conns:
        w.close()
    backend.close()


async def _active_is(c: Child, n: int) -> bool:
    return bool((await c.ask("stats"))["active"] == n)
