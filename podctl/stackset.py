"""The stacks one podctl runs, and every way that set changes.

Hot reload, `podctl scale` and `podctl down` all change what the controller
is asked to run; this is the one place that does it. A stack that leaves the
set (removed or renamed in its file, or `podctl down`) is taken down like
`podctl down`: containers first, then its network, then its files; volumes
only when asked.

`podctl scale` is an override: kept in the state directory (`scale.json`), applied
again after a restart, and released once the pod's entry in the stack file changes
(any field of it, `replicas` included: a digest of the entry as loaded is kept).
The revision history (`storage.history`) is kept here too: each new template
the files give, each revision `rollout undo` or an automatic rollback returns to,
and how each rollout ended.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import TYPE_CHECKING

import anyio
import msgspec

from podctl.reconcile.ledger import rollout_key
from podctl.reconcile.steps import RecordRollout
from podctl.runtime.errors import EngineError
from podctl.spec import DEFAULT_MAX_REPLICAS
from podctl.spec.errors import SpecError
from podctl.stacksdir import PartialLoad
from podctl.storage.errors import StateWriteError, StorageError
from podctl.storage.statedir import StateFile

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from podctl.reconcile.controller import Controller
    from podctl.reconcile.ledger import RolloutRecord
    from podctl.reconcile.observed import ObservedState
    from podctl.reconcile.steps import Plan
    from podctl.spec.model import ContainerTemplate, DesiredPod, DesiredStack
    from podctl.storage.files import StackFiles
    from podctl.storage.history import RevisionHistory, RevisionRecord
    from podctl.storage.locks import StackLocks
    from podctl.storage.statedir import StateDir

log = logging.getLogger("podctl.stacks")

SCALE_FILE = "scale.json"
# How a rollout event ends a revision's rollout, for `rollout history`.
OUTCOME_OF = {"RolloutComplete": "complete", "RolloutFailed": "failed"}
PENDING_OUTCOMES = 256


class ScaleOverride(msgspec.Struct, frozen=True, kw_only=True):
    replicas: int
    entry: str  # entry_digest() of the pod as its file said when it was scaled
    at: float


class ScaleOverrides(msgspec.Struct, kw_only=True):
    pods: dict[str, ScaleOverride] = {}  # by rollout_key(stack, pod)


def entry_digest(pod: DesiredPod) -> str:
    """A digest of the pod's entry as loaded (replicas, template, rollout, ...): a
    change of any of it releases a `podctl scale` override."""
    return hashlib.sha256(msgspec.json.encode(pod, order="deterministic")).hexdigest()[:16]


class StackSet:
    def __init__(
        self,
        controller: Controller,
        files: StackFiles,
        load: Callable[[], list[DesiredStack]],
        history: RevisionHistory | None = None,
        max_replicas: int = DEFAULT_MAX_REPLICAS,
        templates: dict[str, ContainerTemplate] | None = None,
        *,
        state: StateDir | None = None,
        load_without_set: Callable[[], list[DesiredStack]] | None = None,
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
        # The stacks without `--set` values (None: there are none), to tell a revision
        # that `--set` made from one the file made (`rollout history`'s cause).
        self.load_without_set = load_without_set
        # The stacks as their files say (the controller runs them with the overrides).
        self.file_stacks: list[DesiredStack] = list(controller.stacks)
        self._scale_file = (
            StateFile(state, SCALE_FILE, ScaleOverrides, ScaleOverrides) if state else None
        )
        self.scales: dict[str, ScaleOverride] = {}
        # Rollout outcomes seen in plans, written to the history by `follow_rollouts`.
        self._outcomes_in, self._outcomes_out = anyio.create_memory_object_stream[
            tuple[str, str, str, str]
        ](PENDING_OUTCOMES)
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

    async def restore(self) -> None:
        """Before the first pass: the revision history's templates, and the `podctl
        scale` overrides that still hold (the pod's entry in the file is unchanged)."""
        await self.load_history()
        if self._scale_file is not None:
            saved = await anyio.to_thread.run_sync(self._scale_file.load)
            self.scales = dict(saved.pods)
        stacks = self._with_scales(self.file_stacks)
        if stacks != self.controller.stacks:
            self.controller.set_stacks(stacks)
        await self._save_scales()

    def _with_scales(self, stacks: Sequence[DesiredStack]) -> list[DesiredStack]:
        """`stacks` (as the files say) with the scale overrides that hold; those whose
        pod entry changed (or whose pod is gone) are released."""
        live: set[str] = set()
        out = []
        for st in stacks:
            pods = []
            for p in st.pods:
                key = rollout_key(st.name, p.name)
                ov = self.scales.get(key)
                if ov is not None and ov.entry == entry_digest(p):
                    live.add(key)
                    p = msgspec.structs.replace(p, replicas=ov.replicas)
                pods.append(p)
            out.append(msgspec.structs.replace(st, pods=tuple(pods)))
        for key in set(self.scales) - live:
            stack, pod = key.split("/", 1)
            if any(s.name == stack for s in stacks):
                del self.scales[key]
                self.controller.events.emit(
                    stack,
                    f"pod:{stack}/{pod}",
                    "OverrideReleased",
                    "scale override released: the pod's entry in the file changed",
                )
        return out

    async def _save_scales(self) -> None:
        if self._scale_file is not None:
            await self._scale_file.save(ScaleOverrides(pods=dict(self.scales)))

    def scaled(self, stack: str, pod: str) -> int | None:
        ov = self.scales.get(rollout_key(stack, pod))
        return ov.replicas if ov is not None else None

    # -- revision history --------------------------------------------------------

    async def revisions(self, stack: str, pod: str) -> Sequence[RevisionRecord]:
        if self.history is None:
            return ()
        return await self.history.list_async(stack, pod)

    async def rollout_undo(self, stack: str, pod: str, to_revision: str | None) -> RolloutRecord:
        """`rollout undo` (see Controller.rollout_undo); the revision returned to goes
        to the end of the history with cause `undo`."""
        rec = await self.controller.rollout_undo(stack, pod, to_revision=to_revision)
        st, p = self.controller.desired_pod(stack, pod)
        revision, template = p.revision, p.template
        if rec.override is not None:
            revision, template = rec.override.revision, rec.override.template
        await self._record(st, pod, revision, template, "undo")
        return rec

    async def _record(
        self, st: DesiredStack, pod: str, revision: str, template: ContainerTemplate, cause: str
    ) -> None:
        self.templates[revision] = template
        if self.history is None:
            return
        try:
            await self.history.record_async(
                st.name, pod, revision, template, cause=cause, limit=st.history
            )
        except (OSError, ValueError, StateWriteError) as exc:
            log.warning("could not record revision of %s/%s: %s", st.name, pod, exc)

    def observe_plan(
        self, stacks: Sequence[DesiredStack], observed: ObservedState, plan: Plan
    ) -> None:
        """A plan observer: the rollout events it records, for the history (written by
        `follow_rollouts`, off the controller's path)."""
        for step in plan.steps:
            if not isinstance(step, RecordRollout) or not step.reason:
                continue
            rec = step.record
            if step.reason == "RolledBack" and rec.override is not None:
                items = [
                    (step.stack, step.pod, rec.override.from_revision or "", "rolled-back"),
                    (step.stack, step.pod, rec.revision, "rollback"),
                ]
            elif step.reason in OUTCOME_OF:
                items = [(step.stack, step.pod, rec.revision, OUTCOME_OF[step.reason])]
            else:
                continue
            for item in items:
                try:
                    self._outcomes_in.send_nowait(item)
                except anyio.WouldBlock:
                    log.warning("rollout history of %s/%s: too many pending updates", *item[:2])

    async def follow_rollouts(self) -> None:
        """Write what `observe_plan` saw into the revision history, until cancelled."""
        async with self._outcomes_out:
            async for stack, pod, revision, what in self._outcomes_out:
                if not revision or self.history is None:
                    continue
                st = self.controller.stack(stack)
                try:
                    if what == "rollback":
                        template = self.templates.get(revision)
                        if st is not None and template is not None:
                            await self._record(st, pod, revision, template, "rollback")
                    else:
                        await self.history.set_outcome_async(stack, pod, revision, what)
                except (OSError, ValueError, StorageError) as exc:
                    log.warning("could not update revision history of %s/%s: %s", stack, pod, exc)

    async def record_revisions(self, cause: str) -> None:
        """Remember each pod's current template (a no-op when it is the newest already),
        keeping the stack's `history` revisions per pod.

        At start (`cause` "start") a new revision is put down to `--set` when the pod's
        revision depends on `--set` values (the files alone give another), and to a
        file change otherwise; on a reload it is a file change (`--set` is the same).
        """
        plain: dict[tuple[str, str], str] | None = None
        if cause == "start" and self.load_without_set is not None:
            plain = await self._revisions_without_set(self.load_without_set)
        for stack in self.controller.stacks:
            for pod in stack.pods:
                why = cause
                if cause == "start":
                    made_by_set = plain is not None and plain.get((stack.name, pod.name)) != (
                        pod.revision
                    )
                    why = "--set" if made_by_set else "file change"
                await self._record(stack, pod.name, pod.revision, pod.template, why)

    @staticmethod
    async def _revisions_without_set(
        load: Callable[[], list[DesiredStack]],
    ) -> dict[tuple[str, str], str]:
        try:
            stacks = await anyio.to_thread.run_sync(load)
        except SpecError:
            return {}  # the files need `--set` to load at all: every revision depends on it
        return {(s.name, p.name): p.revision for s in stacks for p in s.pods}

    async def replace_stacks(self, stacks: Sequence[DesiredStack], why: str) -> None:
        """Run `stacks` from now on. A stack no longer among them (renamed or removed
        from its file) goes down like `podctl down`: containers and network, not volumes."""
        before = {s.name: s for s in self.controller.stacks}
        stacks = await self._lock_new(stacks, before)
        self._release_edited(self.file_stacks, stacks)
        self.file_stacks = list(stacks)
        stacks = self._with_scales(stacks)
        await self._save_scales()
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

    def _release_edited(self, old: Sequence[DesiredStack], new: Sequence[DesiredStack]) -> None:
        """Rollout overrides (undo, rollback, pause) hold until the pod's entry in the
        file changes. A new revision releases them in the planner; an entry edited
        with the same revision (replicas, rollout settings) is released here."""
        was = {(s.name, p.name): p for s in old for p in s.pods}
        for st in new:
            for p in st.pods:
                prev = was.get((st.name, p.name))
                if (
                    prev is not None
                    and prev.revision == p.revision
                    and entry_digest(prev) != entry_digest(p)
                ):
                    self.controller.release_overrides(
                        st.name, p.name, "the pod's entry in the file changed"
                    )

    async def down(self, stack: str, *, remove_volumes: bool) -> int:
        desired = self.controller.stack(stack)
        self.file_stacks = [s for s in self.file_stacks if s.name != stack]
        self.controller.set_stacks([s for s in self.controller.stacks if s.name != stack])
        n = await self.teardown(desired, remove_volumes=remove_volumes, name=stack)
        if self.locks is not None and desired is not None and self.controller.stack(stack) is None:
            self.locks.release_stack(stack)
        return n

    async def scale(self, stack: str, pod: str, replicas: int) -> None:
        """`podctl scale`: an override until the pod's entry in the file changes."""
        if not 0 <= replicas <= self.max_replicas:
            raise ValueError(f"replicas must be between 0 and {self.max_replicas}, got {replicas}")
        in_file = next((s.pod(pod) for s in self.file_stacks if s.name == stack), None)
        if in_file is not None:
            key = rollout_key(stack, pod)
            if in_file.replicas == replicas:
                self.scales.pop(key, None)  # back to what the file says: no override
            else:
                self.scales[key] = ScaleOverride(
                    replicas=replicas, entry=entry_digest(in_file), at=time.time()
                )
            await self._save_scales()

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
        if stacks != self.file_stacks:
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
