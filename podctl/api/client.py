"""Client side of the control socket, used by the CLI verbs while `podctl run` is active."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import msgspec

from podctl.api.schema import Reply, Request

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


class NotRunning(Exception):
    """No `podctl run` answers on the socket."""


async def call(path: Path, request: Request, timeout_s: float = 30.0) -> Reply:
    try:
        stream = await anyio.connect_unix(path)
    except OSError as exc:
        raise NotRunning(str(exc)) from exc
    async with stream:
        with anyio.fail_after(timeout_s):
            await stream.send(msgspec.json.encode(request) + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                try:
                    buf += await stream.receive(1 << 20)
                except anyio.EndOfStream:
                    break
    if not buf.strip():
        raise NotRunning("the control socket closed without an answer")
    return msgspec.json.decode(buf, type=Reply)


async def stream_lines(path: Path, request: Request) -> AsyncIterator[bytes]:
    try:
        stream = await anyio.connect_unix(path)
    except OSError as exc:
        raise NotRunning(str(exc)) from exc
    async with stream:
        await stream.send(msgspec.json.encode(request) + b"\n")
        buf = b""
        while True:
            try:
                buf += await stream.receive(65536)
            except anyio.EndOfStream:
                return
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield line
