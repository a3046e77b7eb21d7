"""The stacks one podctl runs, and every way that set changes.

Hot reload, `podctl scale` and `podctl down` all change what the controller
is asked to run; this is the one place that does it. A stack that leaves the
set (removed or renamed in its file, or `podctl down`) is taken down like
`podctl down`: containers first, then its network, then its files; volumes
only when asked.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import msgspec

from podctl.spec.errors import SpecError
from podctl.storage.errors import StateWriteError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from podctl.reconcile.controller import Controller
    from podctl.spec.model import DesiredStack
    from podctl.storage.files import StackFiles
    from podctl.storage.history import RevisionHistory

log = logging.getLogger("podctl.stacks")


class StackSet:
    def __init__(
        self,
        controller: Controller,
        files: StackFiles,
        load: Callable[[], list[DesiredStack]],
        history: RevisionHistory | None = None,
    ) -> None:
        self.controller = controller
        self.files = files
        self.load = load
        self.history = history

    async def record_revisions(self, cause: str) -> None:
        """Remember each pod's current template (a no-op when it is the newest already)."""
        if self.history is None:
            return
        for stack in self.controller.stacks:
            for pod in stack.pods:
                try:
                    await self.history.record_async(
                        stack.name, pod.name, pod.revision, pod.template, cause=cause
                    )
                except (OSError, ValueError, StateWriteError) as exc:
                    log.warning("could not record revision of %s/%s: %s", stack.name, pod.name, exc)

    async def replace_stacks(self, stacks: Sequence[DesiredStack], why: str) -> None:
        """Run `stacks` from now on. A stack no longer among them (renamed or removed
        from its file) goes down like `podctl down`: containers and network, not volumes."""
        before = {s.name: s for s in self.controller.stacks}
        self.controller.set_stacks(stacks)
        for name in before.keys() - {s.name for s in stacks}:
            self.controller.events.emit(
                name, f"stack:{name}", "Removed", f"{why}: taking the stack down"
            )
            await self.teardown(before[name], remove_volumes=False)

    async def down(self, stack: str, *, remove_volumes: bool) -> int:
        desired = self.controller.stack(stack)
        self.controller.set_stacks([s for s in self.controller.stacks if s.name != stack])
        return await self.teardown(desired, remove_volumes=remove_volumes, name=stack)

    def scale(self, stack: str, pod: str, replicas: int) -> None:
        def scaled(st: DesiredStack) -> DesiredStack:
            pods = tuple(
                msgspec.structs.replace(p, replicas=replicas) if p.name == pod else p
                for p in st.pods
            )
            return msgspec.structs.replace(st, pods=pods)

        self.controller.set_stacks(
            [scaled(s) if s.name == stack else s for s in self.controller.stacks]
        )
        self.controller.events.emit(stack, f"pod:{stack}/{pod}", "Scaled", f"replicas={replicas}")

    async def teardown(
        self, desired: DesiredStack | None, *, remove_volumes: bool, name: str = ""
    ) -> int:
        name = desired.name if desired is not None else name
        plan = await self.controller.teardown(name, remove_volumes=remove_volumes, desired=desired)
        await self.files.remove_stack(name)
        return len(plan.steps)

    async def reload(self) -> bool:
        """Read the stack files again: a valid edit is applied; an invalid one is
        reported with FILE:LINE:COL and the last good state keeps running."""
        try:
            stacks = await anyio.to_thread.run_sync(self.load)
        except SpecError as exc:
            for issue in exc.issues:
                log.error("%s", issue)
            self.controller.events.emit("", "reload", "Invalid", str(exc).splitlines()[0])
            return False
        if stacks != self.controller.stacks:
            self.controller.events.emit("", "reload", "Reloaded", "stack files changed")
            await self.replace_stacks(stacks, "no longer in the stack files")
            await self.record_revisions("file change")
        return True
