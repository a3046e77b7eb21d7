"""The control socket server: one JSON request line in, one reply line (or a stream) out."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import msgspec

from podctl.api.schema import Reply, Request
from podctl.net.limits import ACCEPT_RESOURCE_ERRNOS, ACCEPT_TRANSIENT_ERRNOS, AcceptBackoff

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine
    from pathlib import Path

log = logging.getLogger("podctl.api")

MAX_REQUEST_BYTES = 64 * 1024
REQUEST_TIMEOUT_S = 5.0


class Handler(Protocol):
    async def handle(self, request: Request) -> Reply: ...

    def stream(self, request: Request) -> AsyncIterator[bytes]: ...


def _prepare_path(path: Path) -> None:
    """Make the directory; remove a stale socket, refuse a live one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        if _socket_answers(path):
            raise SocketInUse(
                f"another podctl is already serving {path}; stop it or set PODCTL_SOCKET"
            )
        path.unlink()  # stale socket of a podctl that died


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


class SocketInUse(Exception):
    pass


async def serve(
    path: Path,
    handler: Handler,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `handler` on the unix socket `path` (0600) until cancelled."""
    await anyio.to_thread.run_sync(_prepare_path, path)
    old_umask = os.umask(0o177)
    try:
        listener = await anyio.create_unix_listener(path)
    finally:
        os.umask(old_umask)
    try:
        task_status.started()
        async with listener, anyio.create_task_group() as tg:
            await accept_loop(listener, lambda stream: _one(stream, handler), tg)
    finally:
        with contextlib.suppress(OSError):
            await anyio.Path(path).unlink()


async def accept_loop(
    listener: anyio.abc.SocketListener,
    handle: Callable[[anyio.abc.SocketStream], Coroutine[Any, Any, None]],
    tg: anyio.abc.TaskGroup,
    backoff: AcceptBackoff | None = None,
) -> None:
    """Accept until cancelled, one task per connection; accept errors never end it.

    Out of descriptors (EMFILE, ENFILE) or memory, accepting pauses like Go's
    net/http (5 ms, doubling to 1 s) and the connection waits in the backlog
    until a descriptor is free; said once in the log per episode. Any other
    accept error is logged and retried the same way.
    """
    backoff = backoff if backoff is not None else AcceptBackoff()
    while True:
        try:
            stream = await listener.accept()
        except (anyio.BrokenResourceError, OSError) as exc:
            cause = exc if isinstance(exc, OSError) else exc.__cause__
            code = cause.errno if isinstance(cause, OSError) else None
            if code in ACCEPT_TRANSIENT_ERRNOS:
                continue  # that one connection went away; the next one is fine
            if not backoff.pausing:
                if code in ACCEPT_RESOURCE_ERRNOS:
                    log.warning(
                        "control socket: cannot accept (%s); pausing until descriptors free up",
                        cause,
                    )
                else:
                    log.error("control socket: accept failed: %r; retrying", cause or exc)
            await anyio.sleep(backoff.failed())
            continue
        if backoff.succeeded():
            log.info("control socket: accepting again")
        tg.start_soon(handle, stream)


async def _one(stream: anyio.abc.SocketStream, handler: Handler) -> None:
    async with stream:
        try:
            with anyio.fail_after(REQUEST_TIMEOUT_S):
                line = await _read_line(stream)
            request = msgspec.json.decode(line, type=Request)
        except (TimeoutError, msgspec.DecodeError, anyio.EndOfStream, ValueError) as exc:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stream.send(
                    msgspec.json.encode(Reply(ok=False, error=f"bad request: {exc}")) + b"\n"
                )
            return
        try:
            if request.follow:
                try:
                    async for chunk in handler.stream(request):
                        await stream.send(chunk)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass  # the follower (`events -f`, `rollout status`) went away
                return
            reply = await handler.handle(request)
        except Exception as exc:  # the server must outlive any one bad request
            log.exception("control request %s failed", request.verb)
            reply = Reply(ok=False, error=str(exc))
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await stream.send(msgspec.json.encode(reply) + b"\n")


async def _read_line(stream: anyio.abc.SocketStream) -> bytes:
    buf = b""
    while b"\n" not in buf:
        buf += await stream.receive(65536)
        if len(buf) > MAX_REQUEST_BYTES:
            raise ValueError("request too large")
    return buf.split(b"\n", 1)[0]
