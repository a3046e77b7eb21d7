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

from podctl.runtime.errors import EngineError
from podctl.spec import DEFAULT_MAX_REPLICAS
from podctl.spec.errors import SpecError
from podctl.stacksdir import PartialLoad
from podctl.storage.errors import StateWriteError, StorageError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from podctl.reconcile.controller import Controller
    from podctl.spec.model import ContainerTemplate, DesiredStack
    from podctl.storage.files import StackFiles
    from podctl.storage.history import RevisionHistory
    from podctl.storage.locks import StackLocks

log = logging.getLogger("podctl.stacks")


class StackSet:
    def __init__(
        self,
        controller: Controller,
        files: StackFiles,
        load: Callable[[], list[DesiredStack]],
        history: RevisionHistory | None = None,
        max_replicas: int = DEFAULT_MAX_REPLICAS,
        templates: dict[str, ContainerTemplate] | None = None,
        locks: StackLocks | None = None,
    ) -> None:
        self.max_replicas = max_replicas
        # The host-wide stack locks this process holds: a stack that joins the set
        # (hot reload, a file added to the stacks directory) is locked first, and
        # one that leaves it is unlocked once it is down.
        self.locks = locks
        # Told of every new set of stacks from the files before it applies (blocking:
        # run in a worker thread), e.g. to teach the log redactor their secrets.
        self.on_load: Callable[[list[DesiredStack]], None] = lambda stacks: None
        self.controller = controller
        self.files = files
        self.load = load
        self.history = history
        # revision -> template, of every revision recorded or read from the history:
        # what the planner falls back on for a revision the Ledger has no template for
        # (the controller reads it each pass).
        self.templates: dict[str, ContainerTemplate] = {} if templates is None else templates

    async def load_history(self) -> None:
        """Read the recorded revisions of the pods being run into `templates` (once, at
        start: a rollout that begins with no record in the Ledger can then still find
        the template of the revision it leaves)."""
        history = self.history
        if history is None:
            return
        pods = [(s.name, p.name) for s in self.controller.stacks for p in s.pods]

        def read() -> dict[str, ContainerTemplate]:
            out: dict[str, ContainerTemplate] = {}
            for stack, pod in pods:
                try:
                    records = history.list(stack, pod)
                except (OSError, ValueError, StorageError) as exc:
                    log.warning("could not read revision history of %s/%s: %s", stack, pod, exc)
                    continue
                out.update((r.revision, r.template) for r in records)
            return out

        self.templates.update(await anyio.to_thread.run_sync(read))

    async def record_revisions(self, cause: str) -> None:
        """Remember each pod's current template (a no-op when it is the newest already)."""
        for stack in self.controller.stacks:
            for pod in stack.pods:
                self.templates[pod.revision] = pod.template
                if self.history is None:
                    continue
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
        stacks = await self._lock_new(stacks, before)
        self.controller.set_stacks(stacks)
        for name in before.keys() - {s.name for s in stacks}:
            self.controller.events.emit(
                name, f"stack:{name}", "Removed", f"{why}: taking the stack down"
            )
            await self.teardown(before[name], remove_volumes=False)
            if self.locks is not None and self.controller.stack(name) is None:
                self.locks.release_stack(name)

    async def _lock_new(
        self, stacks: Sequence[DesiredStack], before: dict[str, DesiredStack]
    ) -> list[DesiredStack]:
        """`stacks` without the new ones another podctl runs (reported, not run)."""
        locks = self.locks
        if locks is None:
            return list(stacks)
        out = []
        for stack in stacks:
            if stack.name not in before:
                try:
                    await anyio.to_thread.run_sync(locks.acquire, stack.name)
                except StorageError as exc:
                    log.error("not running stack %s: %s", stack.name, exc)
                    self.controller.events.emit(
                        stack.name, f"stack:{stack.name}", "Failed", str(exc)
                    )
                    continue
            out.append(stack)
        return out

    async def down(self, stack: str, *, remove_volumes: bool) -> int:
        desired = self.controller.stack(stack)
        self.controller.set_stacks([s for s in self.controller.stacks if s.name != stack])
        n = await self.teardown(desired, remove_volumes=remove_volumes, name=stack)
        if self.locks is not None and desired is not None and self.controller.stack(stack) is None:
            self.locks.release_stack(stack)
        return n

    def scale(self, stack: str, pod: str, replicas: int) -> None:
        if not 0 <= replicas <= self.max_replicas:
            raise ValueError(f"replicas must be between 0 and {self.max_replicas}, got {replicas}")

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

    async def teardown_all(self, timeout_s: float) -> None:
        """Every stack down at once (a clean stop of `podctl run`); errors are reported."""

        async def one(stack: DesiredStack) -> None:
            try:
                with anyio.fail_after(timeout_s):
                    await self.teardown(stack, remove_volumes=False)
            except (EngineError, TimeoutError, OSError) as exc:
                log.error("stopping stack %s: %s", stack.name, exc)

        async with anyio.create_task_group() as tg:
            for stack in self.controller.stacks:
                tg.start_soon(one, stack)

    async def teardown(
        self, desired: DesiredStack | None, *, remove_volumes: bool, name: str = ""
    ) -> int:
        name = desired.name if desired is not None else name
        plan = await self.controller.teardown(name, remove_volumes=remove_volumes, desired=desired)
        await self.files.remove_stack(name)
        return len(plan.steps)

    async def reload(self) -> bool:
        """Read the stack files again (also what SIGHUP does); False when invalid."""
        try:
            stacks = await anyio.to_thread.run_sync(self.load)
        except PartialLoad as exc:
            # Some files of a stacks directory are bad: the others still apply.
            self.invalid(exc)
            await self.loaded(exc.stacks)
            return False
        except SpecError as exc:
            self.invalid(exc)
            return False
        await self.loaded(stacks)
        return True

    async def loaded(self, stacks: list[DesiredStack]) -> None:
        """A valid edit of the stack files: apply it."""
        if stacks != self.controller.stacks:
            await anyio.to_thread.run_sync(self.on_load, stacks)
            self.controller.events.emit("", "reload", "Reloaded", "stack files changed")
            await self.replace_stacks(stacks, "no longer in the stack files")
            await self.record_revisions("file change")

    def invalid(self, exc: SpecError) -> None:
        """An invalid edit: report it with FILE:LINE:COL; the last good state keeps running."""
        for issue in exc.issues:
            log.error("%s", issue)
        # One event per bad file (a stacks directory can have several).
        first: dict[str, str] = {}
        for issue in exc.issues:
            first.setdefault(issue.file, str(issue))
        for message in first.values() or [str(exc).splitlines()[0]]:
            self.controller.events.emit("", "reload", "Invalid", message)
