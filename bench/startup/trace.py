"""Where start-up time goes: every engine API call a tool makes, timed, via a tracing proxy.

    python -m bench.startup.trace [--n 50] [--tools floor,podctl]

Each tool runs once with DOCKER_HOST pointing at a unix-socket proxy that
forwards bytes to the real engine and records each request (method, path,
time sent, time the first response byte came back). The run stops being
recorded once N containers are running (the engine's `start` events, read on
the real socket), then is torn down like a benchmark sample. Prints, per tool:
the calls grouped by endpoint (count, median and total latency), and the
calls made before the first container create (the tool's start-up).

The proxy adds a little latency to every call of every tool alike; use the
benchmark proper (`python -m bench.startup`) for the figures, this for the why.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from bench.startup.engine import Engine, event_time, socket_path
from bench.startup.run import (
    COMMAND,
    LABEL,
    PODCTL,
    PREFIX,
    PY,
    ROOT,
    Bench,
    podctl_env,
    stack_yaml,
)
from podctl.defaults import ENGINE_CONCURRENCY

_VERSION = re.compile(r"^/v\d+\.\d+")
_ID = re.compile(r"/[0-9a-f]{64}(?=/|$)")


@dataclass
class Call:
    sent: float
    method: str
    target: str
    answered: float | None = None
    status: str = ""

    @property
    def endpoint(self) -> str:
        path = _VERSION.sub("", self.target.split("?", 1)[0])
        path = _ID.sub("/{id}", path)
        path = re.sub(r"^/images/.+/json$", "/images/{ref}/json", path)
        path = re.sub(r"^/networks/[0-9a-f]{12,64}$", "/networks/{id}", path)
        return f"{self.method} {path}"


class TracingProxy:
    """A unix socket that forwards HTTP/1.1 to the engine and records each request."""

    def __init__(self, listen: Path, upstream: str) -> None:
        self.listen = listen
        self.upstream = upstream
        self.calls: list[Call] = []
        self.recording = True
        self._server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> TracingProxy:
        self._server = await asyncio.start_unix_server(self._handle, path=str(self.listen))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_unix_connection(self.upstream)
        pending: deque[Call] = deque()

        async def requests() -> None:
            while True:
                try:
                    head = await cr.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                line, _, headers = head.decode("latin-1").partition("\r\n")
                method, target, _ = line.split(" ", 2)
                length = 0
                chunked = False
                for h in headers.split("\r\n"):
                    k, _, v = h.partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v.strip())
                    elif k.strip().lower() == "transfer-encoding" and "chunked" in v.lower():
                        chunked = True
                call = Call(sent=time.time(), method=method, target=target)
                if self.recording:
                    self.calls.append(call)
                pending.append(call)
                uw.write(head)
                if chunked:  # no tool here sends one; pass the rest through untraced
                    while data := await cr.read(65536):
                        uw.write(data)
                    break
                if length:
                    uw.write(await cr.readexactly(length))
                await uw.drain()
            with contextlib.suppress(OSError):
                uw.write_eof()

        async def responses() -> None:
            # HTTP/1.1 without pipelining: the first bytes after a request are its answer.
            while data := await ur.read(65536):
                if pending and data.startswith(b"HTTP/"):
                    call = pending.popleft()
                    call.answered = time.time()
                    call.status = data.split(b" ", 2)[1].decode()
                cw.write(data)
                await cw.drain()
            cw.close()

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(requests())
                tg.create_task(responses())
        except* (ConnectionError, OSError):
            pass
        finally:
            uw.close()
            cw.close()


def summarise(tool: str, calls: list[Call], t0: float, first_create: float | None) -> str:
    lines = [f"## {tool}: {len(calls)} engine calls until N running", ""]
    groups: dict[str, list[Call]] = {}
    for c in calls:
        groups.setdefault(c.endpoint, []).append(c)
    lines += ["| endpoint | calls | median latency s | total s |", "|---|---|---|---|"]
    for ep, cs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        lat = [c.answered - c.sent for c in cs if c.answered is not None]
        med = f"{statistics.median(lat):.3f}" if lat else "(open)"
        lines.append(f"| {ep} | {len(cs)} | {med} | {sum(lat):.2f} |")
    if first_create is not None:
        lines += ["", f"Calls before the first container create (+{first_create - t0:.2f}s):", ""]
        for c in calls:
            if c.sent >= first_create:
                break
            took = f"{c.answered - c.sent:.3f}s" if c.answered else "open"
            lines.append(f"- +{c.sent - t0:.3f}s {c.endpoint} ({took})")
    return "\n".join(lines) + "\n"


async def trace_one(bench: Bench, tool: str, n: int, sock: Path) -> str:
    name = f"{PREFIX}{bench.run_id}-tr{tool[:2]}{n}"
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}")
    async with TracingProxy(sock, socket_path()) as proxy:
        try:
            async with bench.engine.watch(
                label=[f"{LABEL}={name}"], event=["create", "start"]
            ) as watch:
                t0 = time.time()
                if tool == "podctl":
                    d = bench.tmp / name
                    d.mkdir()
                    (d / "stack.yaml").write_text(stack_yaml(name, n))
                    env.update(podctl_env(d))
                    await bench.spawn(
                        PODCTL, "run", str(d / "stack.yaml"), "--no-watch", "-v",
                        env=env, log=d / "podctl.log",
                    )  # fmt: skip
                else:
                    await bench.spawn(
                        PY, "-m", "bench.startup.floor", "--stack", name, "--n", str(n),
                        "--concurrency", str(ENGINE_CONCURRENCY), "--label", f"{LABEL}={name}",
                        *COMMAND, env=env,
                    )  # fmt: skip
                await watch.nth_start(n, 180)
                proxy.recording = False
                creates = [event_time(e) for e in watch.events if e["Action"] == "create"]
            return summarise(tool, proxy.calls, t0, min(creates) if creates else None)
        finally:
            await bench.cleanup("podctl" if tool == "podctl" else "floor", name)


async def amain(args: argparse.Namespace) -> None:
    engine = Engine()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-trace-") as tmp:
            bench = Bench(engine, "t" + os.urandom(2).hex(), Path(tmp), verbose_podctl=True)
            out = []
            for tool in args.tools.split(","):
                out.append(await trace_one(bench, tool, args.n, Path(tmp) / f"{tool}.sock"))
                if args.keep_logs and tool == "podctl":
                    for log in Path(tmp).glob("*/podctl.log"):
                        dest = Path(args.keep_logs)
                        dest.mkdir(parents=True, exist_ok=True)
                        (dest / f"trace-{log.parent.name}.log").write_bytes(log.read_bytes())
            print("\n".join(out))
    finally:
        await engine.close()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.startup.trace", description=__doc__)
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--tools", default="floor,podctl")
    p.add_argument("--keep-logs", metavar="DIR", help="copy podctl's -v log to DIR")
    args = p.parse_args()
    os.chdir(ROOT)
    asyncio.run(amain(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
