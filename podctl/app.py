"""`podctl run`: the rooms of one podctl, wired together and run in one task group.

Nothing here decides anything. The controller (reconcile) decides what the
engine should do; the probers (health) decide readiness; the services router
(net) routes to what is ready; the stack files (storage) hold configs and
secrets; the control handlers (api) answer the CLI. This module builds them,
connects their hooks, and owns the set of stacks this process runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from typing import TYPE_CHECKING

import anyio

from podctl import early_signals
from podctl.api.handlers import ControlHandlers
from podctl.api.server import serve
from podctl.bridge.inputs import load_stacks  # stack files and Kubernetes YAML
from podctl.health.prober import ProberSupervisor
from podctl.health.store import HealthEvent, HealthStore
from podctl.host.notify import Notifier
from podctl.lifecycle import DEFAULT_READY_TIMEOUT_S, ServiceManager, Summary, summarize
from podctl.logs import configure_logging
from podctl.net.metrics import render, serve_metrics
from podctl.net.proxyset import ListenerStore, ProxySet
from podctl.net.services import ServiceRouter
from podctl.reconcile.controller import Controller
from podctl.reconcile.events import EventLog
from podctl.reconcile.ledger import Ledger
from podctl.reload import StackWatcher, referenced_paths
from podctl.spec import DEFAULT_MAX_REPLICAS
from podctl.stackset import StackSet
from podctl.storage.files import EnvironStackFiles, StackFiles
from podctl.storage.history import RevisionHistory
from podctl.storage.redact import secret_values
from podctl.storage.statedir import StateDir, StateFile

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    from podctl.dev.session import DevSession
    from podctl.reconcile.observed import ObservedState
    from podctl.reconcile.steps import Plan
    from podctl.runtime.protocol import Runtime
    from podctl.spec.model import ContainerTemplate, DesiredStack
    from podctl.stacksdir import StacksDir
    from podctl.storage.locks import StackLocks
    from podctl.storage.redact import Redactor

__all__ = ["Instance", "configure_logging", "secret_values"]

log = logging.getLogger("podctl")

LEDGER_FILE = "ledger.json"
TEARDOWN_TIMEOUT_S = 120.0
CONTROLLER_EXIT_S = 35.0  # an engine call's own deadline, and a little more
# Stopping with the pods left running (--keep, the systemd unit): open proxied
# connections get this long to finish; new ones wait in the stored listeners' backlog.
KEEP_DRAIN_S = 10.0


class Instance:
    """One running podctl: its rooms and the stacks it runs."""

    def __init__(
        self,
        runtime: Runtime,
        paths: Sequence[Path],
        stacks: Sequence[DesiredStack],
        *,
        overrides: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        socket_path: Path,
        state_dir: Path,
        watch: bool = True,
        keep: bool = False,
        redactor: Redactor | None = None,
        metrics: tuple[str, int] | None = None,
        kernel_fast_path: bool = False,
        max_replicas: int = DEFAULT_MAX_REPLICAS,
        clock: Callable[[], float] = time.time,
        stacks_dir: StacksDir | None = None,
        notifier: Notifier | None = None,
        listeners: dict[str, socket.socket] | None = None,
        ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S,
        locks: StackLocks | None = None,
        dev: DevSession | None = None,
    ) -> None:
        """`stacks_dir`: run every stack file in a directory (`paths` is then empty).
        `notifier`: the service manager to keep informed (systemd's notify socket);
        `listeners`: service listeners it passed back ($LISTEN_FDS, by name);
        `locks`: the stack locks held, extended as stacks join the set."""
        self.runtime = runtime
        self.dev = dev  # `podctl dev`: the watch rules' task, run beside the others
        self.paths = list(paths)
        self.stacks_dir = stacks_dir
        self.overrides = dict(overrides or {})
        self.environ = dict(environ if environ is not None else os.environ)
        self.socket_path = socket_path
        self.state = StateDir(state_dir)
        self.watch = watch
        self.keep = keep
        self.metrics = metrics
        self.events = EventLog(clock)
        self.health = HealthStore(on_change=self._health_changed, on_event=self._health_event)
        self.prober = ProberSupervisor(runtime, self.health, clock)
        self.notifier = notifier if notifier is not None else Notifier(None)
        self.router = ServiceRouter(
            ProxySet(
                kernel_fast_path=kernel_fast_path,
                store=ListenerStore(self.notifier, listeners),
            ),
            self.health.view,
            self.events.emit,
        )
        self.files = StackFiles()
        ledger = StateFile(self.state, LEDGER_FILE, Ledger, Ledger)
        # Templates of recorded revisions (StackSet keeps it up to date): the planner's
        # fallback for a revision the Ledger holds no template for.
        templates: dict[str, ContainerTemplate] = {}
        self.controller = Controller(
            runtime,
            stacks,
            prober=self.prober,
            files=EnvironStackFiles(self.files, self.environ),
            ledger=ledger.load(),
            clock=clock,
            events=self.events,
            observers=[self._follow_plan],
            on_died=self.router.died,
            drain=self.router.drain,
            on_ledger_change=ledger.save,
            templates=lambda: templates,
            backend_failures=self.router.backend_failures,
        )
        self.stacks = StackSet(
            self.controller,
            self.files,
            stacks_dir.load
            if stacks_dir is not None
            else lambda: load_stacks(
                self.paths, self.overrides, self.environ, max_replicas=max_replicas
            ),
            RevisionHistory(self.state),
            max_replicas,
            templates,
            state=self.state,
            load_without_set=(
                (lambda: load_stacks(self.paths, {}, self.environ, max_replicas=max_replicas))
                if self.overrides and stacks_dir is None
                else None
            ),
            locks=locks,
        )
        self._engine_seen = False
        self.manager = ServiceManager(
            self.notifier,
            self.summary,
            ready_timeout_s=ready_timeout_s,
            pulling=lambda: self.controller.pulling,
        )
        self.controller.observers.append(self.stacks.observe_plan)
        self.handlers = ControlHandlers(
            self.controller, self.router, self.health, self.stacks, redactor=redactor
        )
        if redactor is not None:
            known = dict(secret_values(stacks, self.environ))

            def learn_secrets(new: list[DesiredStack]) -> None:
                # A stack that joins later (hot reload, a new file in --stacks-dir)
                # brings secrets the logs must not show either; old values stay known.
                for name, value in secret_values(new, self.environ).items():
                    old = known.get(name)
                    if old is not None and old != value:
                        known[f"{name}~{len(known)}"] = old  # an edited secret's old value
                    known[name] = value
                redactor.update(known)

            self.stacks.on_load = learn_secrets

    # -- hooks between the rooms ------------------------------------------------

    def _follow_plan(
        self, stacks: Sequence[DesiredStack], observed: ObservedState, plan: Plan
    ) -> None:
        self.router.observe(stacks, plan.status, observed.networks)
        self._engine_seen = True  # a plan follows a snapshot: the engine answered
        self.manager.changed()

    def summary(self) -> Summary:
        """What `systemctl status` shows, and whether podctl is ready."""
        c = self.controller
        return summarize(
            c.stacks,
            c.status(),
            engine_seen=self._engine_seen,
            engine_ok=c.engine_ok,
            engine_error=c.engine_error,
            pulling=c.pulling,
        )

    async def _follow_engine(self) -> None:
        """The engine going away changes the STATUS line at once. (Its return does
        with the pass that follows: the last plan's readiness is stale by then.)"""
        while True:
            await self.controller.wait_engine(ok=not self.controller.engine_ok)
            if not self.controller.engine_ok:
                self.manager.changed()

    async def _reload(self) -> None:
        """SIGHUP: read every stack file again, with the service manager told."""
        log.info("received SIGHUP: reading the stack files again")
        await self.manager.reload(self.stacks.reload)

    def _health_changed(self, stack: str) -> None:
        self.router.health_changed(stack)  # at once, engine or not
        self.controller.wake()  # restarts and rollouts follow on the next pass

    def _health_event(self, event: HealthEvent) -> None:
        """Probe failures into `podctl events`, once per run of identical failures (the
        store counts repeats; a probe failing every second must not flood the log)."""
        if event.count != 1:
            return
        s = next(
            (r for r in self.controller.status() if r.container_id == event.container_id), None
        )
        obj = (
            f"probe:{s.stack}/{s.pod}/{s.replica}" if s else f"container:{event.container_id[:12]}"
        )
        self.events.emit(event.stack, obj, event.kind, event.message)

    # -- the run -------------------------------------------------------------------

    async def run(self) -> int:
        """Serve until SIGINT/SIGTERM; then take the stacks down (unless --keep).

        Only a clean stop tears down. If podctl itself fails, the containers stay
        for the next start to adopt: a crash of the orchestrator must not become an
        outage of everything it runs.
        """
        # Signals are caught from the very start: a Ctrl-C during start-up must still
        # tear down whatever the controller managed to create.
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async with anyio.create_task_group() as tg:
                controller_scope = anyio.CancelScope()
                controller_done = anyio.Event()
                controller_started = clean_stop = False
                try:
                    if early_signals.pending() is not None:
                        clean_stop = True
                        return 0
                    await tg.start(self.manager.run)
                    tg.start_soon(self._follow_engine)
                    await tg.start(self.prober.run)
                    await tg.start(self.router.run)
                    await tg.start(serve, self.socket_path, self.handlers)

                    async def controller_main() -> None:
                        try:
                            with controller_scope:
                                await self.controller.run()
                        finally:
                            controller_done.set()

                    # Before the first pass: a rollout that starts with no record in
                    # the Ledger looks up the template of the revision it leaves.
                    await self.stacks.restore()
                    tg.start_soon(self.stacks.follow_rollouts)
                    tg.start_soon(controller_main)
                    controller_started = True
                    await self.stacks.record_revisions("start")
                    if self.metrics is not None:
                        stats = self.router.stats
                        await tg.start(serve_metrics, *self.metrics, lambda: render(stats()))
                    if self.watch:
                        watcher = StackWatcher(
                            self.paths,
                            self.stacks.load,
                            self.stacks.loaded,
                            self.stacks.invalid,
                            current=self.stacks.file_stacks,
                            referenced=self.dev.referenced if self.dev else referenced_paths,
                            stack_dirs=[self.stacks_dir.directory] if self.stacks_dir else [],
                        )
                        await tg.start(watcher.run)
                    if self.dev is not None:
                        await tg.start(self.dev.run, self)
                    early = early_signals.pending()
                    if early is None:
                        async for signum in signals:
                            if signum == signal.SIGHUP:
                                tg.start_soon(self._reload)
                                continue
                            early = signum
                            break
                    name = signal.Signals(early or signal.SIGTERM).name
                    log.info("received %s: stopping", name)
                    self.manager.stopping(
                        f"stopping on {name}"
                        + ("; pods stay running" if self.keep else "; removing the pods")
                    )
                    clean_stop = True
                    return 0
                finally:
                    controller_scope.cancel()
                    # Its engine calls under way end first (creates are let finish), so
                    # the teardown sees everything the controller made.
                    with anyio.CancelScope(shield=True), anyio.move_on_after(CONTROLLER_EXIT_S):
                        if controller_started:
                            await controller_done.wait()
                    pods_stay = not clean_stop or self.keep
                    if pods_stay:
                        log.info("leaving containers running for the next start to adopt")
                        # Stop accepting first (clients queue on the stored listeners
                        # for the next podctl) and let open connections finish, before
                        # the probes stop: without probe results no replica is ready,
                        # and a client accepted then would find no backend.
                        with anyio.CancelScope(shield=True):
                            await self.router.close(KEEP_DRAIN_S, forget=False)
                    # Probing containers that are being stopped only makes noise.
                    with contextlib.suppress(RuntimeError):
                        self.prober.sync([])
                    if not pods_stay:
                        with anyio.CancelScope(shield=True):
                            await self.stacks.teardown_all(TEARDOWN_TIMEOUT_S)
                            await self.router.close(forget=True)
                    tg.cancel_scope.cancel()
        return 0
