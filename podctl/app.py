"""`podctl run`: one asyncio process holding the controller, probers, proxies,
file watcher and control API in a single task group.

This module only wires the rooms together; each decision lives in its room
(the planner decides, the proxy forwards, the prober probes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import msgspec

from podctl import early_signals
from podctl.api.schema import (
    EndpointRow,
    EventRow,
    Reply,
    Request,
    ServiceRow,
    StackRow,
)
from podctl.api.server import serve
from podctl.health.prober import ProberSupervisor, ProbeTarget
from podctl.health.store import HealthEvent, HealthStore
from podctl.net.metrics import MetricsServer
from podctl.net.metrics import render as render_metrics
from podctl.net.proxy import Endpoint
from podctl.net.proxyset import ListenAddress, ProxySet, ServiceBinding
from podctl.reconcile.controller import Controller
from podctl.reconcile.ledger import Ledger
from podctl.runtime.errors import EngineError
from podctl.spec import load_stacks
from podctl.spec.errors import SpecError
from podctl.storage.files import StackFiles, load_config, load_secret
from podctl.storage.statedir import StateDir

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence
    from pathlib import Path

    from podctl.reconcile.observed import ObservedState
    from podctl.reconcile.steps import Plan, ReplicaStatus
    from podctl.runtime.protocol import MountBinding, NetworkInfo, Runtime
    from podctl.spec.model import DesiredStack
    from podctl.storage.redact import Redactor

log = logging.getLogger("podctl")

LEDGER_FILE = "ledger.json"


class FilesForApply:
    """Adapts podctl.storage to what apply() needs: materialised mounts and env values."""

    def __init__(self, files: StackFiles, environ: Mapping[str, str]) -> None:
        self.files = files
        self.environ = environ

    async def materialise(self, stack: DesiredStack) -> None:
        result = await self.files.materialise(stack, self.environ)
        for warning in result.warnings:
            log.warning("%s", warning)

    def mounts_for(self, stack: DesiredStack, pod: str) -> dict[str, MountBinding]:
        p = stack.pod(pod)
        if p is None:
            return {}
        return {
            m.target: self.files.binding(stack, m)
            for m in p.template.mounts
            if m.kind in ("config", "secret")
        }

    async def env_values(self, stack: DesiredStack, pod: str) -> dict[str, str]:
        p = stack.pod(pod)
        if p is None or not p.template.env_from:
            return {}

        def read() -> dict[str, str]:
            out = {}
            for ref in p.template.env_from:
                if ref.kind == "secret":
                    sec = next(s for s in stack.secrets if s.name == ref.source)
                    out[ref.name] = load_secret(sec, self.environ).decode()
                else:
                    cfg = next(c for c in stack.configs if c.name == ref.source)
                    out[ref.name] = load_config(cfg).decode()
            return out

        return await anyio.to_thread.run_sync(read)


class Instance:
    """A running podctl: the state the control API answers from."""

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
        clock: Any = time.time,
    ) -> None:
        self.runtime = runtime
        self.paths = list(paths)
        self.overrides = dict(overrides or {})
        self.environ = dict(environ if environ is not None else os.environ)
        self.socket_path = socket_path
        self.state = StateDir(state_dir)
        self.watch = watch
        self.keep = keep
        self.redactor = redactor
        self.metrics = metrics
        self.clock = clock
        self.health = HealthStore(
            on_change=lambda stack: self.controller.wake(), on_event=self._health_event
        )
        self.prober = ProberSupervisor(runtime, self.health, clock)
        self.proxies = ProxySet(kernel_fast_path=kernel_fast_path)
        self.files = StackFiles()
        self._bindings: list[ServiceBinding] = []
        self._bindings_changed = anyio.Event()
        self._service_listen: dict[str, tuple[str | None, str | None]] = {}
        self._listen_errors: dict[str, str] = {}
        self._warned: set[str] = set()
        ledger = self._load_ledger()
        self.controller = Controller(
            runtime,
            stacks,
            prober=_ProberAdapter(self.prober, self.health),
            files=FilesForApply(self.files, self.environ),
            ledger=ledger,
            clock=clock,
            observers=[self._on_plan],
            service_hosts=self._service_hosts,
            before_stop=self._drain,
            on_ledger_change=self._save_ledger,
        )

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
        self.controller.events.emit(event.stack, obj, event.kind, event.message)

    # -- state -------------------------------------------------------------

    def _load_ledger(self) -> Ledger:
        try:
            return self.state.read_json(LEDGER_FILE, Ledger) or Ledger()
        except Exception as exc:  # a corrupt ledger only costs restart counts
            log.warning("ignoring unreadable %s: %s", LEDGER_FILE, exc)
            return Ledger()

    async def _save_ledger(self, ledger: Ledger) -> None:
        try:
            await self.state.write_json_async(LEDGER_FILE, ledger)
        except Exception as exc:  # reported, never fatal: the engine holds the truth
            log.warning("could not save restart counts: %s", exc)

    # -- services ----------------------------------------------------------

    def _service_hosts(self, stack: str, net: NetworkInfo | None) -> list[str]:
        """/etc/hosts entries: every service of the stack at the stack network's gateway,
        where podctl's proxy listens and forwards to ready replicas only."""
        if net is None or not net.gateway:
            return []
        desired = next((s for s in self.controller.stacks if s.name == stack), None)
        if desired is None:
            return []
        return [f"{svc.name}:{net.gateway}" for svc in desired.services]

    def _on_plan(self, stacks: Sequence[DesiredStack], observed: ObservedState, plan: Plan) -> None:
        """Route to ready replicas at once; open/close listeners in the background."""
        ready: dict[tuple[str, str], list[ReplicaStatus]] = {}
        for s in plan.status:
            if s.ready and s.ip and s.container_id:
                ready.setdefault((s.stack, s.pod), []).append(s)
        bindings = []
        for stack in stacks:
            net = observed.network(stack.network)
            for svc in stack.services:
                key = f"{stack.name}/{svc.name}"
                eps = [
                    Endpoint(key=r.container_id or "", host=r.ip or "", port=svc.target_port)
                    for r in sorted(ready.get((stack.name, svc.pod), []), key=lambda r: r.name)
                ]
                self.proxies.set_endpoints(key, eps)
                listen = []
                host = in_stack = None
                if svc.port is not None:
                    if (
                        svc.bind not in ("127.0.0.1", "::1", "localhost")
                        and key not in self._warned
                    ):
                        self._warned.add(key)
                        log.warning(
                            "service %s listens on %s:%d: reachable from other hosts",
                            key,
                            svc.bind,
                            svc.port,
                        )
                    listen.append(ListenAddress(svc.bind, svc.port))
                    host = f"{svc.bind}:{svc.port}"
                if net is not None and net.gateway:
                    port = svc.port if svc.port is not None else svc.target_port
                    listen.append(ListenAddress(net.gateway, port, kernel=False))
                    in_stack = f"{net.gateway}:{port}"
                self._service_listen[key] = (host, in_stack)
                bindings.append(ServiceBinding(name=key, listen=tuple(listen)))
        if bindings != self._bindings:
            self._bindings = bindings
            self._bindings_changed.set()

    async def _keep_listeners(self) -> None:
        while True:
            await self._bindings_changed.wait()
            self._bindings_changed = anyio.Event()
            errors = await self.proxies.apply(list(self._bindings))
            self._listen_errors = {}
            for e in errors:
                msg = f"cannot listen on {e.address}: {e.message}"
                if self._listen_errors.get(e.service) != msg:
                    self.controller.events.emit(
                        e.service.split("/", 1)[0], f"service:{e.service}", "Failed", msg
                    )
                self._listen_errors[e.service] = msg
            if errors:
                # Retry: the port may be freed by whoever holds it.
                with anyio.move_on_after(5.0):
                    await self._bindings_changed.wait()
                self._bindings_changed.set()

    async def _drain(self, container_id: str, grace_s: float) -> None:
        """Before a replica stops: no new connections (already out of the table), and
        open ones get up to its grace period to finish."""
        for stack in self.controller.stacks:
            for svc in stack.services:
                await self.proxies.drain(f"{stack.name}/{svc.name}", container_id, grace_s)

    # -- the run -------------------------------------------------------------

    async def run(self) -> int:
        # Signals are caught from the very start: a Ctrl-C during start-up must still
        # tear down whatever the controller managed to create.
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as tg:
                controller_scope = anyio.CancelScope()
                metrics_server = None
                try:
                    if early_signals.pending() is not None:
                        return 0
                    await tg.start(self.prober.run)
                    await tg.start(self.proxies.run)
                    await tg.start(serve, self.socket_path, self)

                    async def controller_main() -> None:
                        with controller_scope:
                            await self.controller.run()

                    tg.start_soon(controller_main)
                    tg.start_soon(self._keep_listeners)
                    if self.metrics is not None:
                        metrics_server = MetricsServer(
                            *self.metrics, source=lambda: render_metrics(self.proxies.stats())
                        )
                        await metrics_server.start()
                        log.info("metrics on http://%s:%d/metrics", *self.metrics)
                    if self.watch:
                        tg.start_soon(self._watch_files)
                    early = early_signals.pending()
                    if early is not None:
                        log.info(
                            "received %s during start-up: stopping", signal.Signals(early).name
                        )
                        return 0  # the finally below tears down what was started
                    async for signum in signals:
                        log.info("received %s: stopping", signal.Signals(signum).name)
                        break
                finally:
                    controller_scope.cancel()
                    # Probing containers that are being stopped only makes noise
                    # (RuntimeError: stopped before the prober even started).
                    with contextlib.suppress(RuntimeError):
                        self.prober.sync([])
                    with anyio.CancelScope(shield=True):
                        if metrics_server is not None:
                            await metrics_server.close()
                        await self._shutdown()
                    tg.cancel_scope.cancel()
        return 0

    async def _shutdown(self) -> None:
        with anyio.CancelScope(shield=True):
            if self.keep:
                log.info("--keep: leaving containers running for the next start to adopt")
            else:
                for stack in self.controller.stacks:
                    try:
                        with anyio.fail_after(120):
                            await self.controller.teardown(stack.name)
                        await self.files.remove_stack(stack.name)
                    except (EngineError, TimeoutError, OSError) as exc:
                        log.error("stopping stack %s: %s", stack.name, exc)
            await self.proxies.close(drain_s=0.0)

    async def _watch_files(self) -> None:
        """Hot reload: a valid edit is applied; an invalid one is reported and the
        last good state keeps running."""
        import watchfiles

        # Watch the stack files' directories: configs, secrets and build contexts
        # live there too. Reloading is cheap and a no-op when nothing changed.
        dirs = sorted({str(p.absolute().parent) for p in self.paths})
        async for _changes in watchfiles.awatch(*dirs, debounce=300, recursive=True):
            await self.reload()

    async def reload(self) -> bool:
        try:
            stacks = await anyio.to_thread.run_sync(
                lambda: load_stacks(self.paths, self.overrides, self.environ)
            )
        except SpecError as exc:
            for issue in exc.issues:
                log.error("%s", issue)
            self.controller.events.emit("", "reload", "Invalid", str(exc).splitlines()[0])
            return False
        if stacks != self.controller.stacks:
            self.controller.events.emit("", "reload", "Reloaded", "stack files changed")
            self.controller.set_stacks(stacks)
        return True

    # -- control API -----------------------------------------------------------

    def _engine(self) -> str:
        c = self.controller
        return "ok" if c.engine_ok else f"unavailable: {c.engine_error}"

    async def handle(self, request: Request) -> Reply:
        verb = request.verb
        if verb == "ping":
            return Reply(ok=True, data={"pid": os.getpid()}, engine=self._engine())
        if verb == "get_pods":
            return self._reply(self._status(request.stack))
        if verb == "get_services":
            await self.proxies.refresh_stats()
            return self._reply(self.service_rows(request.stack))
        if verb == "get_stacks":
            return self._reply(self.stack_rows())
        if verb == "describe_pod":
            return self.describe_pod(request.name or "")
        if verb == "describe_service":
            await self.proxies.refresh_stats()
            rows = [
                r
                for r in self.service_rows(None)
                if request.name in (r.name, f"{r.stack}/{r.name}")
            ]
            if not rows:
                return Reply(ok=False, error=f"no service named {request.name!r}")
            return self._reply(rows[0])
        if verb == "events":
            return self._reply(self._events(request.stack))
        if verb == "scale":
            return self.scale(request.stack or "", request.name or "", request.replicas or 0)
        return await self.down(request.stack or "", request.volumes)  # the only verb left

    async def stream(self, request: Request) -> AsyncIterator[bytes]:
        receive = self.controller.events.subscribe()
        for ev in self._events(request.stack):
            yield msgspec.json.encode(ev) + b"\n"
        async with receive:
            async for e in receive:
                if request.stack is None or e.stack in (request.stack, ""):
                    row = EventRow(
                        time=e.time,
                        stack=e.stack,
                        object=e.object,
                        reason=e.reason,
                        message=self._redact(e.message),
                    )
                    yield msgspec.json.encode(row) + b"\n"

    def _redact(self, text: str) -> str:
        return self.redactor.redact(text) if self.redactor else text

    def _reply(self, data: Any) -> Reply:
        return Reply(ok=True, data=msgspec.to_builtins(data), engine=self._engine())

    def _status(self, stack: str | None) -> list[ReplicaStatus]:
        return [s for s in self.controller.status() if stack is None or s.stack == stack]

    def _events(self, stack: str | None) -> list[EventRow]:
        return [
            EventRow(
                time=e.time,
                stack=e.stack,
                object=e.object,
                reason=e.reason,
                message=self._redact(e.message),
            )
            for e in self.controller.events.history(stack)
        ]

    def service_rows(self, stack: str | None) -> list[ServiceRow]:
        rows = []
        stats = self.proxies.stats()
        status = self.controller.status()
        for st in self.controller.stacks:
            if stack is not None and st.name != stack:
                continue
            for svc in st.services:
                key = f"{st.name}/{svc.name}"
                host, in_stack = self._service_listen.get(key, (None, None))
                eps = [
                    EndpointRow(pod=s.name, address=f"{s.ip}:{svc.target_port}", ready=s.ready)
                    for s in status
                    if s.stack == st.name and s.pod == svc.pod and s.ip and s.container_id
                ]
                listening = {str(a) for a in self.proxies.listening(key)}
                counters = stats.get(key)
                rows.append(
                    ServiceRow(
                        stack=st.name,
                        name=svc.name,
                        listen=host if host in listening else None,
                        endpoints=eps,
                        pod=svc.pod,
                        target=svc.target_port,
                        in_stack=in_stack if in_stack in listening else None,
                        error=self._listen_errors.get(key),
                        active=counters.active if counters else 0,
                        total=counters.total if counters else 0,
                        bytes_in=counters.bytes_in if counters else 0,
                        bytes_out=counters.bytes_out if counters else 0,
                        backend_errors=counters.backend_errors if counters else 0,
                    )
                )
        return rows

    def stack_rows(self) -> list[StackRow]:
        status = self.controller.status()
        return [
            StackRow(
                name=st.name,
                source=st.source,
                pods=len(st.pods),
                replicas=sum(p.replicas for p in st.pods),
                ready=sum(1 for s in status if s.stack == st.name and s.ready),
                services=len(st.services),
                engine=self._engine(),
            )
            for st in self.controller.stacks
        ]

    def describe_pod(self, name: str) -> Reply:
        try:
            s = find_replica(self.controller.status(), name)
        except LookupError as exc:
            return Reply(ok=False, error=str(exc))
        if s is None:
            return Reply(ok=False, error=f"no pod replica named {name!r} (see `podctl get pods`)")
        stack = next((st for st in self.controller.stacks if st.name == s.stack), None)
        pod = stack.pod(s.pod) if stack else None
        probes: dict[str, Any] = {}
        if pod is not None:
            for kind in ("startup", "liveness", "readiness"):
                spec = getattr(pod.template, kind)
                if spec is not None:
                    probes[kind] = msgspec.to_builtins(spec)
        results = self.health.results(s.container_id) if s.container_id else []
        health_events = self.health.events(s.container_id) if s.container_id else []
        data = {
            "pod": msgspec.to_builtins(s),
            "restart_policy": pod.restart if pod else None,
            "depends_on": list(pod.depends_on) if pod else [],
            "probes": probes,
            "probe_results": [msgspec.to_builtins(r) for r in results[-10:]],
            "events": [
                {"time": e.time, "reason": e.reason, "message": self._redact(e.message)}
                for e in self.controller.events.history(s.stack)
                if e.object.startswith(f"pod:{s.stack}/{s.pod}/{s.replica}")
                or e.object == f"container:{s.name}"
            ][-20:]
            + [
                {
                    "time": e.at,
                    "reason": e.kind,
                    "message": self._redact(e.message),
                    "count": e.count,
                }
                for e in health_events[-10:]
            ],
        }
        return Reply(ok=True, data=data, engine=self._engine())

    def scale(self, stack: str, pod: str, replicas: int) -> Reply:
        new = []
        found = False
        for st in self.controller.stacks:
            if st.name == stack and st.pod(pod) is not None:
                found = True
                pods = tuple(
                    msgspec.structs.replace(p, replicas=replicas) if p.name == pod else p
                    for p in st.pods
                )
                st = msgspec.structs.replace(st, pods=pods)
            new.append(st)
        if not found:
            return Reply(ok=False, error=f"no pod {stack}/{pod}")
        self.controller.set_stacks(new)
        self.controller.events.emit(stack, f"pod:{stack}/{pod}", "Scaled", f"replicas={replicas}")
        return Reply(ok=True, data={"stack": stack, "pod": pod, "replicas": replicas})

    async def down(self, stack: str, volumes: bool) -> Reply:
        if not any(st.name == stack for st in self.controller.stacks):
            return Reply(ok=False, error=f"stack {stack!r} is not run by this podctl")
        desired = next(st for st in self.controller.stacks if st.name == stack)
        self.controller.set_stacks([st for st in self.controller.stacks if st.name != stack])
        plan = await self.controller.teardown(stack, remove_volumes=volumes, desired=desired)
        await self.files.remove_stack(stack)
        return Reply(ok=True, data={"removed": len(plan.steps)})


class _ProberAdapter:
    """The controller's view of the health room."""

    def __init__(self, prober: ProberSupervisor, store: HealthStore) -> None:
        self.prober = prober
        self.store = store

    def sync(self, targets: Sequence[Any]) -> None:
        self.prober.sync(
            ProbeTarget(
                container_id=t.container_id,
                stack=t.stack,
                pod=t.pod,
                ip=t.ip,
                started_at=t.started_at or 0.0,
                startup=t.template.startup,
                liveness=t.template.liveness,
                readiness=t.template.readiness,
            )
            for t in targets
        )

    def view(self) -> Mapping[str, Any]:
        return self.store.view()


def find_replica(status: Sequence[ReplicaStatus], name: str) -> ReplicaStatus | None:
    """Resolve what a user types: the container name, `pod-N`, `stack/pod-N`, or an id prefix.

    A short name that matches replicas of several stacks is refused (LookupError)
    rather than guessed: `podctl exec web-0 -- rm ...` must not hit another stack.
    """
    stack = None
    short = name
    if "/" in name:
        stack, short = name.split("/", 1)
    candidates = [s for s in status if stack is None or s.stack == stack]
    for s in candidates:
        if s.name == short:
            return s
    matches = [s for s in candidates if f"{s.pod}-{s.replica}" == short]
    if not matches and len(short) >= 4:
        matches = [s for s in candidates if s.container_id and s.container_id.startswith(short)]
    stacks = sorted({s.stack for s in matches})
    if len(stacks) > 1:
        raise LookupError(
            f"{name!r} is ambiguous: it exists in stacks {', '.join(stacks)}; "
            f"say {stacks[0]}/{short}"
        )
    if not matches:
        return None
    # During a roll two containers share a slot: prefer the ready, then the newest.
    return max(matches, key=lambda s: (s.ready, s.container_id is not None, s.started_at or 0))


def configure_logging(verbose: bool, redactor: Redactor | None) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    if redactor is not None:
        from podctl.storage.redact import install_log_redaction

        install_log_redaction(redactor)


def secret_values(stacks: Sequence[DesiredStack], environ: Mapping[str, str]) -> dict[str, bytes]:
    """Every secret value the stacks use, for the redactor (never printed)."""
    out: dict[str, bytes] = {}
    for st in stacks:
        for sec in st.secrets:
            try:
                out[f"{st.name}/{sec.name}"] = load_secret(sec, environ)
            except Exception:  # the loader already reported a missing source
                continue
    return out
