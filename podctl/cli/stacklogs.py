"""`podctl logs STACK [-f]`: every replica of a stack, merged, one `pod-N | ` prefix a line.

With `-f` it follows replicas that come and go: the engine's event stream says
when a container of the stack starts (a rollout, a scale-up, a restart), and a
follower is started for each running replica not followed yet (level-triggered:
each event means "list the stack again"). A follower ends when its container's
stream does. Prefixes are coloured (one colour per replica name) only when
stdout is a terminal.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, BinaryIO

import anyio
import typer

from podctl import labels
from podctl.reconcile.phase import replica_index
from podctl.runtime.errors import EngineError

if TYPE_CHECKING:
    from podctl.runtime.protocol import ContainerInfo, Runtime

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_magenta")


def prefix_of(c: ContainerInfo) -> str:
    """`pod-N` of a replica (its container name when it carries no podctl pod label)."""
    pod = c.labels.get(labels.POD)
    replica = replica_index(c.labels)
    if pod is None or replica is None:
        return c.name
    return f"{pod}-{replica}"


class LinePrefixer:
    """Splits one container's chunks into lines and prefixes each complete one."""

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self._partial = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        return b"".join(self.prefix + line + b"\n" for line in lines)

    def flush(self) -> bytes:
        rest, self._partial = self._partial, b""
        return self.prefix + rest + b"\n" if rest else b""


class StackLogs:
    def __init__(
        self, rt: Runtime, stack: str, *, out: BinaryIO, colour: bool, tail: int | None
    ) -> None:
        self.rt = rt
        self.stack = stack
        self.out = out
        self.colour = colour
        self.tail = tail
        self.followed: set[str] = set()
        self.seen: set[str] = set()
        self._colours: dict[str, str] = {}

    def _prefix(self, c: ContainerInfo, width: int) -> bytes:
        name = prefix_of(c)
        text = f"{name:<{width}} | "
        if self.colour:
            colour = self._colours.setdefault(name, COLOURS[len(self._colours) % len(COLOURS)])
            text = typer.style(text, fg=colour)
        return text.encode()

    async def _containers(self) -> list[ContainerInfo]:
        found = await self.rt.list_containers(self.stack)
        return sorted(found, key=lambda c: (c.labels.get(labels.POD, ""), prefix_of(c)))

    async def _copy(self, c: ContainerInfo, width: int, *, follow: bool, tail: int | None) -> None:
        lines = LinePrefixer(self._prefix(c, width))
        try:
            async for chunk in self.rt.logs(c.id, follow=follow, tail=tail):
                self._write(lines.feed(chunk))
        except EngineError:
            pass  # the container went away: its stream simply ends
        self._write(lines.flush())

    def _write(self, data: bytes) -> None:
        if data:
            self.out.write(data)
            self.out.flush()

    async def once(self) -> int:
        """Every replica's logs one after the other (no follow). Returns how many."""
        found = await self._containers()
        width = max((len(prefix_of(c)) for c in found), default=0)
        for c in found:
            await self._copy(c, width, follow=False, tail=self.tail)
        return len(found)

    async def follow(self) -> None:
        """Until cancelled: every running replica, and each one that starts later."""
        async with anyio.create_task_group() as tg:
            changed = anyio.Event()
            width = 0

            async def watch_events() -> None:
                nonlocal changed
                while True:
                    with contextlib.suppress(EngineError):
                        async with contextlib.aclosing(self.rt.events()) as events:
                            async for ev in events:
                                if ev.labels.get(labels.STACK) == self.stack:
                                    changed.set()
                    # The stream dropped: look again, then re-subscribe.
                    changed.set()
                    await anyio.sleep(1.0)

            tg.start_soon(watch_events)
            first = True
            while True:
                found = [c for c in await self._containers() if c.state == "running"]
                width = max([width, *(len(prefix_of(c)) for c in found)])
                for c in found:
                    if c.id not in self.followed:
                        self.followed.add(c.id)
                        # Replicas running at start show their last `tail` lines, new
                        # ones all they wrote, restarted ones only what comes now.
                        tail = self.tail if first else 0 if c.id in self.seen else None
                        self.seen.add(c.id)
                        tg.start_soon(self._follow_one, c, width, tail)
                first = False
                await changed.wait()
                changed = anyio.Event()

    async def _follow_one(self, c: ContainerInfo, width: int, tail: int | None) -> None:
        try:
            await self._copy(c, width, follow=True, tail=tail)
        finally:
            # A restarted container (same id) is followed again on its next start.
            self.followed.discard(c.id)


async def stack_logs(rt: Runtime, stack: str, *, follow: bool, tail: int | None) -> int:
    """Print the stack's merged logs; returns the number of replicas found (0: none)."""
    logs = StackLogs(rt, stack, out=sys.stdout.buffer, colour=sys.stdout.isatty(), tail=tail)
    if not follow:
        return await logs.once()
    if not await rt.list_containers(stack):
        return 0
    await logs.follow()
    return 1
