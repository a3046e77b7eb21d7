"""The planner: desired state + one observed snapshot + health + ledger + clock -> Plan.

This is podctl's one decision point. Every create, restart, kill, roll and
back-off is decided here, from plain data, with no I/O; `apply()` only carries
the steps out. Golden tests feed literals in and compare `Plan.render()`.

Semantics followed:
- Restarts follow the pod's policy (Kubernetes' restartPolicy: always,
  on-failure, never), restarted in place with crash-loop back-off.
- A failed liveness/startup probe kills the container (SIGTERM, grace,
  SIGKILL); the restart that follows counts and backs off like a crash.
- A changed template rolls slot by slot within max_surge/max_unavailable,
  removing an old container only once its replacement is ready.
- depends_on gates only the creation of new containers, as Compose's
  `service_healthy` condition does; running ones are never stopped for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from podctl import labels
from podctl.reconcile import backoff
from podctl.reconcile.ledger import Ledger
from podctl.reconcile.steps import (
    AnyStep,
    BuildImage,
    CreateNetwork,
    CreateVolume,
    KillContainer,
    Phase,
    Plan,
    PrepareFiles,
    PullImage,
    RemoveContainer,
    RemoveNetwork,
    RemoveVolume,
    ReplicaStatus,
    RunContainer,
    StartContainer,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from podctl.health.model import ContainerHealth, HealthView
    from podctl.reconcile.observed import ObservedState
    from podctl.runtime.protocol import ContainerInfo
    from podctl.spec.model import DesiredPod, DesiredStack, RolloutSpec


# What a long-running step is doing, keyed by container id or `busy_image(ref)`.
BusyKind = Literal["removing", "killing", "pulling"]
Busy = Mapping[str, BusyKind]


def busy_image(ref: str) -> str:
    return f"image:{ref}"


def container_name(stack: str, pod: str, replica: int, revision: str) -> str:
    """Docker name of a replica; the revision keeps old and new apart during a roll."""
    return f"{stack}-{pod}-{replica}-{revision[:6]}"


def rollout_budget(spec: RolloutSpec, replicas: int) -> tuple[int, int]:
    """(max_surge, max_unavailable) as counts. Percentages round as in Kubernetes:
    surge up, unavailable down; both zero would deadlock, so surge becomes 1."""

    def resolve(value: int | str, round_up: bool) -> int:
        if isinstance(value, int):
            return max(value, 0)
        pct = float(value.rstrip("%")) / 100.0 * replicas
        return max(math.ceil(pct) if round_up else math.floor(pct), 0)

    surge = resolve(spec.max_surge, True)
    unavailable = resolve(spec.max_unavailable, False)
    if surge == 0 and unavailable == 0:
        surge = 1
    return surge, unavailable


def _replica_index(c: ContainerInfo) -> int | None:
    try:
        return int(c.labels.get(labels.REPLICA, ""))
    except ValueError:
        return None


def _ran_for(c: ContainerInfo) -> float | None:
    if c.started_at is None or c.finished_at is None:
        return None
    return c.finished_at - c.started_at


@dataclass
class _Capacity:
    """Host CPU and memory left for new replicas (admission by resource requests)."""

    nano_cpus: int
    memory_bytes: int

    def admit(self, pod: DesiredPod) -> str | None:
        cpu, mem = pod.template.nano_cpus, pod.template.memory_bytes
        if cpu > self.nano_cpus:
            return "Insufficient cpu"
        if mem > self.memory_bytes:
            return "Insufficient memory"
        self.nano_cpus -= cpu
        self.memory_bytes -= mem
        return None


@dataclass
class _Planner:
    observed: ObservedState
    health: HealthView
    ledger: Ledger
    now: float
    steps: list[AnyStep] = field(default_factory=list)
    status: list[ReplicaStatus] = field(default_factory=list)
    wake_at: list[float] = field(default_factory=list)
    image_steps: dict[str, int | None] = field(default_factory=dict)
    image_blocked: dict[str, str] = field(default_factory=dict)
    capacity: _Capacity | None = None
    # Long steps still under way from an earlier pass (see Busy): not planned again.
    busy: Busy = field(default_factory=dict)

    def add(self, cls: type[AnyStep], *, deps: Iterable[int | None] = (), **kw: object) -> int:
        step_id = len(self.steps) + 1
        real_deps = tuple(sorted({d for d in deps if d is not None}))
        self.steps.append(cls(id=step_id, deps=real_deps, **kw))  # type: ignore[arg-type]
        return step_id

    # -- readiness -------------------------------------------------------

    def health_of(self, c: ContainerInfo) -> ContainerHealth | None:
        h = self.health.get(c.id)
        if h is not None and h.started_at is not None and h.started_at != c.started_at:
            return None  # results of an earlier run of a restarted container
        return h

    def is_ready(self, c: ContainerInfo, pod: DesiredPod | None) -> bool:
        if c.state != "running":
            return False
        h = self.health_of(c)
        if h is None:
            # Not probed yet: ready only when nothing has to be proven first.
            t = pod.template if pod else None
            return t is None or (t.readiness is None and t.startup is None)
        return h.ready and h.started and h.restart_reason is None

    # -- images ----------------------------------------------------------

    def ensure_image(self, pod: DesiredPod) -> tuple[int | None, str | None]:
        """Step id to wait for (None when present) and a reason when it cannot be had now."""
        ref = pod.template.image
        if ref in self.observed.images:
            return None, None
        if busy_image(ref) in self.busy:
            return None, "Pulling image" if pod.build is None else "Building image"
        if ref in self.image_blocked:
            return None, self.image_blocked[ref]
        if ref in self.image_steps:
            return self.image_steps[ref], None
        failure = self.ledger.pull_failures.get(ref)
        if failure is not None:
            due = failure.last_at + backoff.pull_delay(failure.attempts)
            if self.now < due:
                self.wake_at.append(due)
                reason = f"ImagePullError: {failure.message}"
                self.image_blocked[ref] = reason
                return None, reason
        if pod.build is not None:
            sid = self.add(
                BuildImage,
                target=f"image:{ref}",
                cause="image not built yet",
                ref=ref,
                context=pod.build.context,
            )
        else:
            cause = "image not present"
            if failure is not None:
                cause += f" (retry {failure.attempts + 1})"
            sid = self.add(PullImage, target=f"image:{ref}", cause=cause, ref=ref)
        self.image_steps[ref] = sid
        return sid, None

    # -- one stack ---------------------------------------------------------

    def plan_stack(self, stack: DesiredStack) -> None:
        net = self.observed.network(stack.network)
        net_step: int | None = None
        if net is None:
            net_step = self.add(
                CreateNetwork,
                target=f"network:{stack.network}",
                cause="not found",
                stack=stack.name,
                name=stack.network,
            )
        volume_steps: dict[str, int] = {}
        for vol in stack.volumes:
            if self.observed.volume(vol.docker_name) is None:
                volume_steps[vol.name] = self.add(
                    CreateVolume,
                    target=f"volume:{vol.docker_name}",
                    cause="not found",
                    stack=stack.name,
                    volume=vol.name,
                    docker_name=vol.docker_name,
                )
        files_step: list[int] = []

        def prepare_files() -> int | None:
            needs = any(
                m.kind in ("config", "secret") for p in stack.pods for m in p.template.mounts
            ) or any(p.template.env_from for p in stack.pods)
            if not needs:
                return None
            if not files_step:
                files_step.append(
                    self.add(
                        PrepareFiles,
                        target=f"stack:{stack.name}",
                        cause="configs and secrets for new containers",
                        stack=stack.name,
                    )
                )
            return files_step[0]

        containers = self.observed.stack_containers(stack.name)
        by_pod: dict[str, list[ContainerInfo]] = {}
        for c in containers:
            if self.busy.get(c.id) == "removing":
                self.terminating(c, "being removed")
                continue  # going away: as good as gone for every decision
            by_pod.setdefault(c.labels.get(labels.POD, ""), []).append(c)

        for pod_name, cs in sorted(by_pod.items()):
            if stack.pod(pod_name) is None:
                for c in cs:
                    self.remove(c, None, 10.0, "pod no longer in the stack file")

        for pod in stack.pods:
            self.plan_pod(
                stack, pod, by_pod.get(pod.name, []), net_step, volume_steps, prepare_files
            )

    def dependency_wait(self, stack: DesiredStack, pod: DesiredPod) -> str | None:
        for dep in pod.depends_on:
            dep_pod = stack.pod(dep)
            ready = any(
                self.is_ready(c, dep_pod)
                for c in self.observed.stack_containers(stack.name)
                if c.labels.get(labels.POD) == dep
            )
            if not ready:
                return f"WaitingFor {dep}"
        return None

    def plan_pod(
        self,
        stack: DesiredStack,
        pod: DesiredPod,
        containers: list[ContainerInfo],
        net_step: int | None,
        volume_steps: dict[str, int],
        prepare_files: Callable[[], int | None],
    ) -> None:
        n = pod.replicas
        slots: dict[int, list[ContainerInfo]] = {}
        for c in containers:
            idx = _replica_index(c)
            if idx is None or idx >= n:
                why = f"scaled down to {n}" if idx is not None else "no replica label"
                self.remove(c, pod, pod.template.stop_grace_s, why)
                continue
            slots.setdefault(idx, []).append(c)

        surge, unavailable = rollout_budget(pod.rollout, n)
        total = sum(len(v) for v in slots.values())
        available = sum(1 for v in slots.values() if any(self.is_ready(c, pod) for c in v))
        # A container's spec carries the stack network's gateway (in-stack service
        # discovery), so containers are created once the network exists: a pass later.
        blocked = "NetworkCreating" if net_step is not None else self.dependency_wait(stack, pod)

        def create(slot: int, cause: str, after: int | None = None) -> None:
            name = container_name(stack.name, pod.name, slot, pod.revision)
            reason = blocked
            image_step: int | None = None
            if reason is None:
                image_step, reason = self.ensure_image(pod)
            if reason is None and self.capacity is not None:
                reason = self.capacity.admit(pod)
            if reason is not None:
                self.pending(pod, slot, name, reason)
                return
            vols = [volume_steps.get(m.source) for m in pod.template.mounts if m.kind == "volume"]
            self.add(
                RunContainer,
                target=f"pod:{stack.name}/{pod.name}/{slot}",
                cause=cause,
                deps=[net_step, image_step, after, prepare_files(), *vols],
                stack=stack.name,
                pod=pod.name,
                replica=slot,
                name=name,
            )
            self.pending(pod, slot, name, "ContainerCreating")

        for slot in range(n):
            cs = sorted(slots.get(slot, []), key=lambda c: (c.started_at or 0.0, c.id))
            new = [c for c in cs if c.labels.get(labels.REVISION) == pod.revision]
            old = [c for c in cs if c.labels.get(labels.REVISION) != pod.revision]
            # Duplicates (e.g. two podctl instances raced): keep the best one.
            for extra in _extras(new, lambda c: self.is_ready(c, pod)):
                self.remove(extra, pod, pod.template.stop_grace_s, "duplicate replica")
                new.remove(extra)
                total -= 1
            for extra in _extras(old, lambda c: self.is_ready(c, pod)):
                self.remove(extra, pod, pod.template.stop_grace_s, "duplicate replica")
                old.remove(extra)
                total -= 1

            if not new and not old:
                create(slot, "missing")
                continue
            if new and old:
                o, nw = old[0], new[0]
                if self.is_ready(nw, pod) or not self.is_ready(o, pod):
                    self.remove(
                        o,
                        pod,
                        pod.template.stop_grace_s,
                        f"replaced by {nw.name} (revision {pod.revision[:6]})",
                    )
                else:
                    self.upkeep(o, pod)
                self.upkeep(nw, pod)
                continue
            if new:
                self.upkeep(new[0], pod)
                continue
            # Only an outdated container in this slot: roll it.
            o = old[0]
            o_ready = self.is_ready(o, pod)
            cause = f"template changed (revision {pod.revision[:6]})"
            if not o_ready:
                rid = self.remove(o, pod, pod.template.stop_grace_s, cause + "; old not ready")
                create(slot, cause, after=rid)
            elif total < n + surge:
                total += 1
                self.upkeep(o, pod)
                create(slot, cause + "; surge")
            elif available - 1 >= n - unavailable:
                available -= 1
                rid = self.remove(o, pod, pod.template.stop_grace_s, cause)
                create(slot, cause, after=rid)
            else:
                self.upkeep(o, pod, note="rollout waiting for availability")

    # -- one container -----------------------------------------------------

    def upkeep(self, c: ContainerInfo, pod: DesiredPod, note: str | None = None) -> None:
        """Keep a container that should exist healthy: restart, kill, or just report it."""
        rec = self.ledger.restarts.get(c.id)
        restarts = rec.restarts if rec else 0
        h = self.health_of(c)
        phase: Phase = "Pending"
        reason: str | None = note
        ready = False
        target = f"pod:{pod.stack}/{pod.name}/{_replica_index(c)}"

        if self.busy.get(c.id) == "killing":
            # Its liveness kill is under way (SIGTERM, grace, SIGKILL); the restart follows.
            phase, reason = "Running", (rec.killed_for if rec and rec.killed_for else "Killing")
        elif c.state == "running":
            phase = "Running"
            ready = self.is_ready(c, pod)
            if h is not None and h.restart_reason is not None:
                ready = False
                reason = h.restart_reason
                probe = "liveness" if h.restart_reason == "LivenessFailed" else "startup"
                self.add(
                    KillContainer,
                    target=target,
                    cause=f"{probe} probe failed: {h.message}".rstrip(": "),
                    container_id=c.id,
                    grace_s=pod.template.stop_grace_s,
                    reason=h.restart_reason,
                )
            elif not ready and reason is None:
                if h is not None and not h.started:
                    reason = "StartupProbePending"
                elif h is not None and h.message:
                    reason = f"Unhealthy: {h.message}"
                else:
                    reason = "NotReady"
        elif c.state == "created":
            self.add(
                StartContainer,
                target=target,
                cause="created but not started",
                container_id=c.id,
                backoff_level=rec.backoff_level if rec else 0,
            )
            reason = "ContainerCreating"
        elif c.state in ("exited", "dead"):
            code = c.exit_code if c.exit_code is not None else -1
            wants_restart = pod.restart == "always" or (pod.restart == "on-failure" and code != 0)
            if not wants_restart:
                phase = "Succeeded" if code == 0 else "Failed"
                reason = (
                    f"Completed (exit code {code})" if code == 0 else f"Error (exit code {code})"
                )
            else:
                level = backoff.effective_level(rec.backoff_level if rec else 0, _ran_for(c))
                delay = backoff.crash_delay(level)
                finished = c.finished_at if c.finished_at is not None else self.now
                due = finished + delay
                killed = rec.killed_for if rec else None
                why = killed or (
                    f"OOMKilled (exit code {code})" if c.oom_killed else f"exit code {code}"
                )
                if self.now >= due:
                    self.add(
                        StartContainer,
                        target=target,
                        cause=f"{why}; restart after back-off {_fmt(delay)}",
                        container_id=c.id,
                        backoff_level=level + 1,
                    )
                    phase = "Pending"
                    reason = f"Restarting ({why})"
                else:
                    phase = "CrashLoopBackOff"
                    reason = f"back-off {_fmt(delay)} restarting failed container ({why})"
                    self.wake_at.append(due)
        else:
            phase = "Running" if c.state in ("paused", "restarting") else "Terminating"
            reason = c.state

        self.status.append(
            ReplicaStatus(
                stack=pod.stack,
                pod=pod.name,
                replica=_replica_index(c) or 0,
                name=c.name,
                container_id=c.id,
                phase=phase,
                ready=ready,
                restarts=restarts,
                revision=c.labels.get(labels.REVISION, ""),
                image=c.image,
                reason=reason,
                exit_code=c.exit_code if c.state in ("exited", "dead") else None,
                ip=c.ip,
                started_at=c.started_at,
            )
        )

    def remove(self, c: ContainerInfo, pod: DesiredPod | None, grace_s: float, cause: str) -> int:
        self.terminating(c, cause)
        return self.add(
            RemoveContainer,
            target=f"container:{c.name}",
            cause=cause,
            container_id=c.id,
            grace_s=grace_s if c.state == "running" else 0.0,
        )

    def terminating(self, c: ContainerInfo, reason: str) -> None:
        rec = self.ledger.restarts.get(c.id)
        self.status.append(
            ReplicaStatus(
                stack=c.labels.get(labels.STACK, ""),
                pod=c.labels.get(labels.POD, ""),
                replica=_replica_index(c) or 0,
                name=c.name,
                container_id=c.id,
                phase="Terminating",
                ready=False,
                restarts=rec.restarts if rec else 0,
                revision=c.labels.get(labels.REVISION, ""),
                image=c.image,
                reason=reason,
                ip=c.ip,
                started_at=c.started_at,
            )
        )

    def pending(self, pod: DesiredPod, slot: int, name: str, reason: str) -> None:
        self.status.append(
            ReplicaStatus(
                stack=pod.stack,
                pod=pod.name,
                replica=slot,
                name=name,
                container_id=None,
                phase="Pending",
                ready=False,
                restarts=0,
                revision=pod.revision,
                image=pod.template.image,
                reason=reason,
            )
        )


def _extras(cs: list[ContainerInfo], ready: Callable[[ContainerInfo], bool]) -> list[ContainerInfo]:
    """All but the one container worth keeping: the ready one, else the running, else newest."""
    if len(cs) <= 1:
        return []
    keep = max(cs, key=lambda c: (bool(ready(c)), c.state == "running", c.started_at or 0.0))
    return [c for c in cs if c is not keep]


def _fmt(seconds: float) -> str:
    return f"{seconds:g}s" if seconds < 60 else f"{seconds / 60:g}m"


def _capacity(observed: ObservedState, stacks: Sequence[DesiredStack]) -> _Capacity | None:
    """What is left of the host after the containers that already exist."""
    host = observed.host
    if host is None:
        return None
    cap = _Capacity(nano_cpus=host.ncpu * 1_000_000_000, memory_bytes=host.mem_bytes)
    for stack in stacks:
        for c in observed.stack_containers(stack.name):
            pod = stack.pod(c.labels.get(labels.POD, ""))
            if pod is not None and c.state not in ("exited", "dead"):
                cap.nano_cpus -= pod.template.nano_cpus
                cap.memory_bytes -= pod.template.memory_bytes
    return cap


def plan(
    desired: Sequence[DesiredStack],
    observed: ObservedState,
    health: HealthView,
    ledger: Ledger,
    now: float,
    busy: Busy | None = None,
) -> Plan:
    """Decide what to do about `desired` given one observed snapshot. Pure.

    `busy` names the long steps of earlier passes still under way (stops that
    wait out a grace period, pulls, builds), so they are neither planned twice
    nor allowed to hold up decisions about everything else.
    """
    p = _Planner(observed=observed, health=health, ledger=ledger, now=now, busy=dict(busy or {}))
    p.capacity = _capacity(observed, desired)
    for stack in desired:
        p.plan_stack(stack)
    requeue = max(min(p.wake_at) - now, 0.0) if p.wake_at else None
    return Plan(steps=tuple(p.steps), status=tuple(p.status), requeue_after=requeue)


def plan_teardown(
    stack: str,
    observed: ObservedState,
    *,
    grace_s: float = 10.0,
    grace_by_pod: Mapping[str, float] | None = None,
    remove_volumes: bool = False,
) -> Plan:
    """Remove everything podctl made for `stack`: containers first, then its network
    (only after its containers are gone), then volumes when asked. Each container
    gets its pod's stop_grace (`grace_by_pod`), else `grace_s`."""
    p = _Planner(observed=observed, health={}, ledger=Ledger(), now=0.0)
    graces = grace_by_pod or {}
    removals = [
        p.remove(c, None, graces.get(c.labels.get(labels.POD, ""), grace_s), "stack is going down")
        for c in observed.stack_containers(stack)
    ]
    for net in observed.networks:
        if net.labels.get(labels.STACK) == stack:
            p.add(
                RemoveNetwork,
                target=f"network:{net.name}",
                cause="stack is going down",
                deps=removals,
                stack=stack,
                network_id=net.id,
            )
    if remove_volumes:
        for vol in observed.volumes:
            if vol.labels.get(labels.STACK) == stack:
                p.add(
                    RemoveVolume,
                    target=f"volume:{vol.name}",
                    cause="--volumes",
                    deps=removals,
                    docker_name=vol.name,
                )
    return Plan(steps=tuple(p.steps), status=tuple(p.status))
