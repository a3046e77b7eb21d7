"""The dev session: `develop.watch` rules acting on the running replicas of one podctl.

It runs as one task in the podctl instance's task group (`podctl dev` is `podctl
run` plus this task), so `podctl get`, `logs` and `events` from another terminal
see everything it does. Per batch of changes:

1. a notify thread reports paths under the rules' paths; the debouncer waits for
   a short quiet window (`debounce.py`);
2. each pod's `PodWatch` works out the batch in a worker thread: changed content
   only, by hash (`changes.py`);
3. the files go as one tar stream per replica through the engine's archive API,
   to every running replica of the pod at once; deletions are one `rm -rf` exec
   per replica; then `sync+exec` commands run, and `sync+restart` restarts the
   replicas one at a time, each ready again before the next goes;
4. one `Synced` event per batch: "synced N files to POD (R replicas) in X ms",
   X measured from the last file event of the batch to the last replica done.

A `rebuild` change (or a branch switch of over 1,000 files in a pod with
`build:`) builds the new image through the engine, keeping the last lines of
its output; a failed build is a `BuildFailed` event and the running revision
stays. A successful one hands the reloaded stacks to the instance, and the
controller rolls the pod with its rollout strategy.

Replicas that appear later (scaled up, rolled, replaced) get what was synced so
far once the controller reports them running.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.abc

from podctl import labels
from podctl.dev.archive import common_base, tar_files
from podctl.dev.changes import Batch, FileUpdate, PodWatch
from podctl.dev.debounce import Debouncer
from podctl.reload import notify_paths, open_notify, referenced_paths
from podctl.runtime.errors import BuildError, EngineError, NotFound
from podctl.spec.errors import SpecError
from podctl.spec.model import image_ref

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from podctl.api.handlers import ControlHandlers
    from podctl.api.schema import ServiceRow
    from podctl.reconcile.controller import Controller
    from podctl.reconcile.events import EventLog
    from podctl.reconcile.observed import ObservedState
    from podctl.reconcile.steps import Plan, ReplicaStatus
    from podctl.runtime.protocol import Runtime
    from podctl.spec.model import DesiredPod, DesiredStack, WatchExecSpec
    from podctl.stackset import StackSet

log = logging.getLogger("podctl.dev")

# The notify thread returns a group of events once STEP_MS pass without a new
# one (at most DEBOUNCE_MS after the first); it checks for cancellation every STEP_MS.
NOTIFY_DEBOUNCE_MS = 50
NOTIFY_STEP_MS = 20
EXEC_TIMEOUT_S = 60.0
RETRY_S = 2.0  # a batch that failed to send is tried again after this long
# The most of an image's target directory read to compare an initial sync with.
MAX_IMAGE_READ_BYTES = 256 * 1024 * 1024
# How long a `sync+restart` waits for a restarted replica to be ready again
# before it moves on to the next one anyway.
READY_TIMEOUT_S = 60.0
# Exit codes of an exec whose command does not exist in the image.
NOT_FOUND_EXIT_CODES = (126, 127)


class DevHost(Protocol):
    """What the session needs of the podctl instance it runs in (`podctl.app.Instance`)."""

    runtime: Runtime
    controller: Controller
    events: EventLog
    stacks: StackSet
    handlers: ControlHandlers


class _ViewOf:
    """The live view's window on the instance."""

    def __init__(self, host: DevHost) -> None:
        self.controller = host.controller
        self.events = host.events
        self._handlers = host.handlers

    def services(self) -> list[ServiceRow]:
        return self._handlers.service_rows(None)


def referenced_outside_dev(stacks: Sequence[DesiredStack]) -> set[Path]:
    """What hot reload watches under `podctl dev`: as `podctl run`, except the build
    contexts of pods with watch rules. Their rules say what a change there does (a
    sync must not rebuild and roll the pod); a `rebuild` rule rebuilds."""
    out = referenced_paths(stacks)
    for stack in stacks:
        for pod in stack.pods:
            if pod.build is not None and pod.develop is not None and pod.develop.watch:
                out.discard(Path(pod.build.context))
    return out


class DevSession:
    """Watch rules of every pod with `develop.watch`, applied until cancelled."""

    def __init__(self, *, rules: bool = True, view: bool = False) -> None:
        # `podctl dev`: rules on; `podctl run --view`: the live view only (run never syncs).
        self.rules = rules
        self.view = view  # the live view (stdout is a terminal)
        self.retry_s = RETRY_S
        self.debouncer = Debouncer()
        self.watches: dict[tuple[str, str], PodWatch] = {}
        self.batches = 0  # batches that did something (tests, bench)
        self._wake = anyio.Event()
        self._plan_seen = anyio.Event()
        self._status: list[ReplicaStatus] = []
        # (stack, pod) -> container ids that hold everything synced so far.
        self._current: dict[tuple[str, str], set[str]] = {}
        self._rebuilding: set[tuple[str, str]] = set()
        self._host: DevHost | None = None
        self._stacks_seen: Sequence[DesiredStack] | None = None
        self._roots_watched: tuple[str, ...] = ()
        self._notify_scope: anyio.CancelScope | None = None
        self._watch_failed = False

    # -- wiring ------------------------------------------------------------------------

    def referenced(self, stacks: Sequence[DesiredStack]) -> set[Path]:
        """What hot reload should watch while this session runs."""
        return referenced_outside_dev(stacks) if self.rules else referenced_paths(stacks)

    def _observe(self, stacks: Sequence[DesiredStack], _obs: ObservedState, plan: Plan) -> None:
        """Each controller pass: note the replicas; a new running one, or new stacks
        (a reload may change the rules), wakes the session."""
        self._status = list(plan.status)
        self._plan_seen.set()
        self._plan_seen = anyio.Event()
        if stacks is not self._stacks_seen:
            self._stacks_seen = stacks
            self._wake.set()
            return
        for key, held in self._current.items():
            if any(cid not in held for cid in self._running(key)):
                self._wake.set()
                return

    def _running(self, key: tuple[str, str]) -> list[str]:
        return [
            r.container_id
            for r in self._status
            if (r.stack, r.pod) == key and r.container_id and r.phase == "Running"
        ]

    def _refresh(self, stacks: Sequence[DesiredStack]) -> list[PodWatch]:
        """Watch state for the pods of `stacks` (kept for pods whose rules did not change).
        Returns the new ones (they still need a `scan`)."""
        new: list[PodWatch] = []
        fresh: dict[tuple[str, str], PodWatch] = {}
        for stack in stacks:
            for pod in stack.pods:
                if pod.develop is None or not pod.develop.watch:
                    continue
                key = (stack.name, pod.name)
                old = self.watches.get(key)
                if old is not None and old.pod.develop == pod.develop:
                    old.pod = pod
                    fresh[key] = old
                else:
                    fresh[key] = PodWatch(pod)
                    new.append(fresh[key])
        self.watches = fresh
        return new

    def _roots(self) -> tuple[str, ...]:
        roots: set[str] = set()
        for w in self.watches.values():
            for rule in w.rules:
                p = rule.spec.path
                roots.add(p if os.path.isdir(p) else os.path.dirname(p))
        # A root inside another is watched by it already.
        ordered = sorted(roots)
        return tuple(r for r in ordered if not any(r.startswith(o + os.sep) for o in ordered))

    # -- the run -------------------------------------------------------------------

    async def run(
        self, host: DevHost, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self._host = host
        if not self.rules:
            task_status.started()
            if self.view:
                from podctl.dev.view import run_view

                await run_view(_ViewOf(host))
            return
        host.controller.observers.append(self._observe)
        self._status = host.controller.status()
        self._stacks_seen = host.controller.stacks
        for w in self._refresh(host.controller.stacks):
            await anyio.to_thread.run_sync(w.scan)
        for key in self.watches:
            self._current[key] = set(self._running(key))
        try:
            async with anyio.create_task_group() as tg:
                await self._rewatch(tg)
                task_status.started()
                if self.view:
                    from podctl.dev.view import run_view

                    tg.start_soon(run_view, _ViewOf(host))
                for key, w in self.watches.items():
                    if any(r.spec.initial_sync for r in w.rules):
                        tg.start_soon(self._initial_sync, key, w)
                while True:
                    await self._wake.wait()
                    self._wake = anyio.Event()
                    await self._settle()
                    await self._round(tg)
        finally:
            if self._observe in host.controller.observers:
                host.controller.observers.remove(self._observe)

    async def _settle(self) -> None:
        """Until the pending batch is due (the debouncer's sliding window), if any."""
        while True:
            due = self.debouncer.due()
            if due is None:
                return
            wait = due - self.debouncer.clock()
            if wait <= 0:
                return
            await anyio.sleep(wait)

    async def _rewatch(self, tg: anyio.abc.TaskGroup) -> None:
        """Watch the rules' paths (again, when they changed); the old watch stops after
        the new one is in place, so no event falls between them."""
        roots = self._roots()
        watching = self._notify_scope is not None and not self._watch_failed
        if roots == self._roots_watched and watching:
            return
        old = self._notify_scope
        self._notify_scope = None
        self._watch_failed = False
        if roots:
            scope = anyio.CancelScope()
            await tg.start(self._notify, roots, scope)
            self._notify_scope = scope
        if old is not None:
            old.cancel()
        self._roots_watched = roots
        names = ", ".join(f"{s}/{p}" for s, p in self.watches) or "none"
        log.info("dev: watching %s for %s", ", ".join(roots) or "nothing", names)

    async def _round(self, tg: anyio.abc.TaskGroup) -> None:
        assert self._host is not None
        # Rules may have changed with a reload of the stack files.
        for w in self._refresh(self._host.controller.stacks):
            await anyio.to_thread.run_sync(w.scan)
        await self._rewatch(tg)
        last_event = self.debouncer.last_event
        paths = self.debouncer.take() or set()
        async with anyio.create_task_group() as pods:
            for key, w in self.watches.items():
                pods.start_soon(self._pod_round, tg, key, w, paths, last_event)

    async def _pod_round(
        self,
        tg: anyio.abc.TaskGroup,
        key: tuple[str, str],
        w: PodWatch,
        paths: set[str],
        last_event: float,
    ) -> None:
        await self._late_replicas(key, w)
        if not paths:
            return
        took = self.debouncer.clock()
        batch = await anyio.to_thread.run_sync(w.batch, paths)
        log.debug(
            "dev: %s/%s: batch of %d paths taken %.0f ms after the last event, made in %.0f ms",
            *key,
            len(paths),
            (took - last_event) * 1000,
            (self.debouncer.clock() - took) * 1000,
        )
        host = self._host
        assert host is not None
        obj = f"pod:{key[0]}/{key[1]}"
        for note in batch.notices:
            host.events.emit(key[0], obj, "SyncSkipped", note)
        if batch.fallback:
            host.events.emit(key[0], obj, "SyncFallback", batch.fallback)
        if batch.rebuild and key not in self._rebuilding:
            self._rebuilding.add(key)
            tg.start_soon(self._rebuild, key)
        if batch.empty or (batch.rebuild and not batch.syncs):
            return
        if not await self._apply(key, w, batch, last_event):
            tg.start_soon(self._retry, paths)

    # -- sync --------------------------------------------------------------------------

    async def _apply(
        self, key: tuple[str, str], w: PodWatch, batch: Batch, last_event: float
    ) -> bool:
        """Apply one batch; False when it could not be sent (nothing was committed)."""
        host = self._host
        assert host is not None
        obj = f"pod:{key[0]}/{key[1]}"
        replicas = self._running(key)
        if not replicas:
            # Nothing to send to yet: a replica that starts gets it as a late one.
            w.commit(batch)
            return True
        deleted = True
        if batch.syncs:
            ok, deleted = await self._sync_to(w.pod, replicas, batch.puts, batch.deletes)
            if not ok:
                return False  # not committed: sent again on retry or the next save
            w.commit(batch, deleted=deleted)
            self._current.setdefault(key, set()).update(replicas)
            n = len(batch.puts) + (len(batch.deletes) if deleted else 0)
            ms = (self.debouncer.clock() - last_event) * 1000 if last_event else 0.0
            self.batches += 1
            host.events.emit(
                key[0],
                obj,
                "Synced",
                f"synced {n} files to {key[1]} ({len(replicas)} replicas) in {ms:.0f} ms",
            )
        for spec in batch.execs:
            await self._exec_all(key, replicas, spec)
        if batch.restart:
            await self._restart_one_by_one(key, w.pod, replicas)
        return True

    async def _sync_to(
        self,
        pod: DesiredPod,
        replicas: list[str],
        puts: list[FileUpdate],
        deletes: list[str],
    ) -> tuple[bool, bool]:
        """Send to every replica at once. (all sent, deletions applied)."""
        host = self._host
        assert host is not None
        runtime = host.runtime
        # Extract where every file lives below: `/` unless the root is read-only,
        # then the deepest directory holding them (a writable mount, as checked
        # when the stack loaded).
        base = common_base(f.target for f in puts) if pod.template.read_only_rootfs else "/"
        archive = await anyio.to_thread.run_sync(tar_files, puts, base) if puts else b""
        failures: list[str] = []
        no_rm: list[str] = []

        async def one(cid: str) -> None:
            try:
                # Deletions first: a directory replaced by a file of the same name (or
                # the other way round) in one batch must go before its successor lands.
                if deletes:
                    result = await runtime.exec_as(
                        cid, ["rm", "-rf", "--", *deletes], EXEC_TIMEOUT_S
                    )
                    if result.exit_code in NOT_FOUND_EXIT_CODES:
                        no_rm.append(cid)
                    elif result.exit_code != 0:
                        failures.append(f"{cid[:12]}: rm: {_tail(result.output)}")
                if archive:
                    await runtime.put_archive(cid, base, archive)
            except NotFound:
                pass  # the replica went away meanwhile (rolled, scaled down)
            except EngineError as exc:
                failures.append(str(exc))

        began = time.monotonic()
        async with anyio.create_task_group() as tg:
            for cid in replicas:
                tg.start_soon(one, cid)
        log.debug(
            "dev: %s/%s: %d bytes to %d replicas in %.0f ms",
            pod.stack,
            pod.name,
            len(archive),
            len(replicas),
            (time.monotonic() - began) * 1000,
        )
        obj = f"pod:{pod.stack}/{pod.name}"
        if no_rm:
            host.events.emit(
                pod.stack,
                obj,
                "SyncIncomplete",
                f"{len(deletes)} deletions not applied to {pod.name}: the image has no `rm` "
                f"({', '.join(deletes[:5])}{' ...' if len(deletes) > 5 else ''})",
            )
        if failures:
            host.events.emit(pod.stack, obj, "SyncFailed", "; ".join(failures)[:500])
            return False, not no_rm
        return True, not no_rm

    async def _retry(self, paths: set[str]) -> None:
        """A batch that could not be sent is looked at again after RETRY_S (the engine
        may have been busy, or a replica was being replaced)."""
        await anyio.sleep(self.retry_s)
        self.debouncer.add(paths)
        self._wake.set()

    async def _late_replicas(self, key: tuple[str, str], w: PodWatch) -> None:
        """Replicas that started after the files were synced get them now."""
        held = self._current.setdefault(key, set())
        running = self._running(key)
        late = [cid for cid in running if cid not in held]
        held.intersection_update(running)
        if not late:
            return
        files = await anyio.to_thread.run_sync(w.synced)
        if files:
            ok, _ = await self._sync_to(w.pod, late, files, [])
            if not ok:
                return
            assert self._host is not None
            self._host.events.emit(
                key[0],
                f"pod:{key[0]}/{key[1]}",
                "Synced",
                f"synced {len(files)} files to {key[1]} ({len(late)} new replicas)",
            )
        held.update(late)

    async def _initial_sync(self, key: tuple[str, str], w: PodWatch) -> None:
        """Send the `initial_sync` rules' files that differ from what the image holds
        at their targets (read once, from one running replica)."""
        assert self._host is not None
        while not self._running(key):
            await self._plan_seen.wait()  # the pod's first replica is still starting
        replicas = self._running(key)
        for i, rule in enumerate(w.rules):
            if not (rule.spec.initial_sync and rule.spec.target and replicas):
                continue
            try:
                archive = await self._host.runtime.get_archive(
                    replicas[0], rule.spec.target, MAX_IMAGE_READ_BYTES
                )
            except NotFound:
                continue  # nothing there in the image: every file differs
            except EngineError as exc:
                log.warning("dev: %s: comparing with the image: %s; sending all", key[1], exc)
                continue
            n = await anyio.to_thread.run_sync(w.seed_from_image, i, archive)
            log.debug("dev: %s/%s: %d files of the image at %s", *key, n, rule.spec.target)
        batch = await anyio.to_thread.run_sync(lambda: w.full(initial_only=True))
        if batch.syncs:
            await self._apply(key, w, batch, self.debouncer.clock())

    # -- exec and restart ----------------------------------------------------------------

    async def _exec_all(
        self, key: tuple[str, str], replicas: list[str], spec: WatchExecSpec
    ) -> None:
        host = self._host
        assert host is not None
        command = list(spec.command)

        async def one(cid: str) -> None:
            try:
                result = await host.runtime.exec_as(
                    cid, command, EXEC_TIMEOUT_S, user=spec.user, workdir=spec.workdir
                )
            except NotFound:
                return
            except EngineError as exc:
                host.events.emit(key[0], f"pod:{key[0]}/{key[1]}", "ExecFailed", str(exc))
                return
            if result.exit_code != 0:
                host.events.emit(
                    key[0],
                    f"pod:{key[0]}/{key[1]}",
                    "ExecFailed",
                    f"`{' '.join(command)}` in {cid[:12]} exited {result.exit_code}: "
                    f"{_tail(result.output)}",
                )

        async with anyio.create_task_group() as tg:
            for cid in replicas:
                tg.start_soon(one, cid)

    async def _restart_one_by_one(
        self, key: tuple[str, str], pod: DesiredPod, replicas: list[str]
    ) -> None:
        """Each replica once, one at a time, each ready again before the next goes: the
        service keeps answering (the rollout's default budget, max_unavailable 0 with
        the others serving)."""
        host = self._host
        assert host is not None
        for cid in replicas:
            since = time.time()
            try:
                await host.runtime.restart_container(cid, pod.template.stop_grace_s)
            except NotFound:
                continue
            except EngineError as exc:
                host.events.emit(key[0], f"pod:{key[0]}/{key[1]}", "RestartFailed", str(exc))
                continue
            host.events.emit(
                key[0], f"pod:{key[0]}/{key[1]}", "Restarted", f"{cid[:12]}: synced files changed"
            )
            host.controller.wake()
            if len(replicas) > 1:
                await self._wait_ready(cid, since)

    async def _wait_ready(self, cid: str, since: float) -> None:
        """Until the controller reports `cid` ready in a run started after `since`."""
        with anyio.move_on_after(READY_TIMEOUT_S):
            while True:
                row = next((r for r in self._status if r.container_id == cid), None)
                if row is None:
                    return  # gone: nothing to wait for
                started = row.started_at or 0.0
                if row.ready and started >= since - 1.0:
                    return
                await self._plan_seen.wait()

    # -- rebuild -------------------------------------------------------------------------

    async def _rebuild(self, key: tuple[str, str]) -> None:
        """Build the pod's image from its context now; roll only once it is built."""
        host = self._host
        assert host is not None
        obj = f"pod:{key[0]}/{key[1]}"
        try:
            try:
                stacks = await anyio.to_thread.run_sync(host.stacks.load)
            except SpecError as exc:
                host.stacks.invalid(exc)
                return
            stack = next((s for s in stacks if s.name == key[0]), None)
            pod = stack.pod(key[1]) if stack is not None else None
            if pod is None or pod.build is None:
                return
            tag = image_ref(pod)
            started = time.monotonic()
            if not await host.runtime.image_exists(tag):
                host.events.emit(key[0], obj, "Building", f"building {tag}")
                try:
                    await host.runtime.build_image(pod.build.context, tag, {labels.KIND: "build"})
                except BuildError as exc:
                    last = "\n".join(exc.lines[-10:])
                    host.events.emit(
                        key[0],
                        obj,
                        "BuildFailed",
                        f"{key[1]} keeps its running revision; the build said:\n{last}",
                    )
                    return
                except EngineError as exc:
                    host.events.emit(
                        key[0], obj, "BuildFailed", f"{key[1]} keeps its running revision: {exc}"
                    )
                    return
                host.events.emit(
                    key[0], obj, "Built", f"built {tag} in {time.monotonic() - started:.1f} s"
                )
            await host.stacks.loaded(stacks)
            w = self.watches.get(key)
            if w is not None:
                w.pod = pod
                w.forget()  # the new image holds the files as they are now
        except EngineError as exc:
            host.events.emit(key[0], obj, "BuildFailed", f"{key[1]}: {exc}")
        finally:
            self._rebuilding.discard(key)

    # -- notify thread -------------------------------------------------------------------

    async def _notify(
        self,
        roots: tuple[str, ...],
        scope: anyio.CancelScope,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            notify = await open_notify(roots, True)
        except OSError as exc:
            # A root vanished meanwhile, or inotify is out of watches: say so and go on
            # without (the next round tries again).
            log.warning("dev: cannot watch %s: %s", ", ".join(roots), exc)
            self._watch_failed = True
            task_status.started()
            return

        def on_paths(paths: Iterable[str]) -> None:
            self.debouncer.add(paths)
            self._wake.set()

        await notify_paths(
            notify, scope, on_paths, NOTIFY_DEBOUNCE_MS, NOTIFY_STEP_MS, task_status=task_status
        )


def _tail(output: bytes, limit: int = 200) -> str:
    text = output.decode(errors="replace").strip()
    return text[-limit:]
