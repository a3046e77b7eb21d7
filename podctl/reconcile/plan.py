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
  removing an old container only once its replacement is available (ready for
  min_ready); `recreate` removes every old one first. Progress, failure,
  automatic rollback and pause follow `podctl.reconcile.rollout`'s rules.
- depends_on gates only the creation of new containers, as Compose's
  `service_healthy` condition does; running ones are never stopped for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import msgspec

from podctl import labels
from podctl.health.model import is_ready
from podctl.reconcile import backoff
from podctl.reconcile.backoff import format_duration
from podctl.reconcile.ledger import Ledger, rollout_key
from podctl.reconcile.phase import engine_phase, exit_reason, has_ended, replica_index
from podctl.reconcile.rollout import (
    Progress,
    available_from,
    cannot_run,
    decide,
    rollout_budget,
    short,
    target_of,
)
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
    RecordRollout,
    RemoveContainer,
    RemoveNetwork,
    RemoveVolume,
    ReplicaStatus,
    RolloutStatus,
    RunContainer,
    StartContainer,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence, Set

    from podctl.health.model import ContainerHealth, HealthView
    from podctl.reconcile.ledger import RestartRecord, RolloutRecord
    from podctl.reconcile.observed import ObservedState
    from podctl.reconcile.steps import RolloutState
    from podctl.runtime.protocol import ContainerInfo
    from podctl.spec.model import ContainerTemplate, DesiredPod, DesiredStack

__all__ = ["plan", "plan_teardown", "rollout_budget"]


# What a long-running step is doing, keyed by container id or `busy_image(ref)`.
BusyKind = Literal["removing", "killing", "pulling"]
Busy = Mapping[str, BusyKind]


def busy_image(ref: str) -> str:
    return f"image:{ref}"


def container_name(stack: str, pod: str, replica: int, revision: str) -> str:
    """Docker name of a replica; the revision keeps old and new apart during a roll."""
    return f"{stack}-{pod}-{replica}-{revision[:6]}"


def _ran_for(c: ContainerInfo) -> float | None:
    if c.started_at is None or c.finished_at is None:
        return None
    return c.finished_at - c.started_at


def unique_name(base: str, *taken: Set[str]) -> str:
    """`base`, or `base-2`, `base-3`, ... when a container still in the snapshot has it.

    Docker names are host-wide: a replica recreated while its predecessor of the same
    name is still being stopped and removed (scaled down and straight back up) would
    otherwise fail with `Conflict: name already in use` until the old one is gone.
    Chosen from the observed names alone, so the same snapshot gives the same name.
    """
    name, n = base, 1
    while any(name in names for names in taken):
        n += 1
        name = f"{base}-{n}"
    return name


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
class _StackPass:
    """What one pass knows about one stack, each computed at most once."""

    stack: DesiredStack
    pods: dict[str, DesiredPod]
    # The stack's containers by pod label, all of them (also those being removed).
    observed_by_pod: Mapping[str, Sequence[ContainerInfo]]
    net_step: int | None = None
    volume_steps: dict[str, int] = field(default_factory=dict)
    needs_files: bool | None = None
    files_step: int | None = None
    dependency_ready: dict[str, bool] = field(default_factory=dict)


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
    # Names of new containers planned in this pass (on top of the observed ones).
    new_names: set[str] = field(default_factory=set)
    # The proxy's latest connect failure (or reset) per container id: resets min_ready.
    backend_failures: Mapping[str, float] = field(default_factory=dict)
    # Templates of revisions the Ledger has none for (revision history), by revision.
    templates: Mapping[str, ContainerTemplate] = field(default_factory=dict)
    rollouts: list[RolloutStatus] = field(default_factory=list)
    # (from, to): the engine was away (restarting); exits in it were the engine's doing.
    engine_outage: tuple[float, float] | None = None

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
        t = pod.template if pod else None
        gated = t is not None and (t.readiness is not None or t.startup is not None)
        # The same rule the services router applies to probe results between passes.
        return is_ready(self.health.get(c.id), started_at=c.started_at, gated=gated)

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
        observed = self.observed.stack(stack.name)
        sp = _StackPass(
            stack=stack,
            pods={p.name: p for p in stack.pods},
            observed_by_pod=observed.by_pod,
        )
        if self.observed.network(stack.network) is None:
            sp.net_step = self.add(
                CreateNetwork,
                target=f"network:{stack.network}",
                cause="not found",
                stack=stack.name,
                name=stack.network,
            )
        for vol in stack.volumes:
            if self.observed.volume(vol.docker_name) is None:
                sp.volume_steps[vol.name] = self.add(
                    CreateVolume,
                    target=f"volume:{vol.docker_name}",
                    cause="not found",
                    stack=stack.name,
                    volume=vol.name,
                    docker_name=vol.docker_name,
                )

        by_pod: Mapping[str, Sequence[ContainerInfo]] = observed.by_pod
        removing = {cid for cid, kind in self.busy.items() if kind == "removing"}
        if removing and any(c.id in removing for c in observed.containers):
            live: dict[str, list[ContainerInfo]] = {}
            for c in observed.containers:
                if c.id in removing:
                    self.terminating(c, "being removed")
                    continue  # going away: as good as gone for every decision
                live.setdefault(c.labels.get(labels.POD, ""), []).append(c)
            by_pod = live

        for pod_name in sorted(by_pod):
            if pod_name not in sp.pods:
                for c in by_pod[pod_name]:
                    self.remove(c, None, 10.0, "pod no longer in the stack file")

        for pod in stack.pods:
            self.plan_pod(sp, pod, by_pod.get(pod.name, ()))

    def prepare_files(self, sp: _StackPass) -> int | None:
        """The stack's PrepareFiles step (planned once, when a new container needs it)."""
        if sp.needs_files is None:
            sp.needs_files = any(
                p.template.env_from
                or any(m.kind in ("config", "secret") for m in p.template.mounts)
                for p in sp.stack.pods
            )
        if not sp.needs_files:
            return None
        if sp.files_step is None:
            sp.files_step = self.add(
                PrepareFiles,
                target=f"stack:{sp.stack.name}",
                cause="configs and secrets for new containers",
                stack=sp.stack.name,
            )
        return sp.files_step

    def dependency_wait(self, sp: _StackPass, pod: DesiredPod) -> str | None:
        for dep in pod.depends_on:
            ready = sp.dependency_ready.get(dep)
            if ready is None:
                dep_pod = sp.pods.get(dep)
                ready = sp.dependency_ready[dep] = any(
                    self.is_ready(c, dep_pod) for c in sp.observed_by_pod.get(dep, ())
                )
            if not ready:
                return f"WaitingFor {dep}"
        return None

    # -- rollouts --------------------------------------------------------

    def readiness_cache(self, pod: DesiredPod) -> Callable[[ContainerInfo], bool]:
        ready: dict[str, bool] = {}

        def is_ready(c: ContainerInfo) -> bool:
            r = ready.get(c.id)
            if r is None:
                r = ready[c.id] = self.is_ready(c, pod)
            return r

        return is_ready

    def unprobed(self, c: ContainerInfo, pod: DesiredPod) -> bool:
        """A running container whose readiness is not known yet: it must prove itself
        (a readiness or startup probe) and no probe has answered for this run."""
        if c.state != "running" or (self.busy and self.busy.get(c.id) == "killing"):
            return False
        h = self.health_of(c)
        if h is None:
            t = pod.template
            return t.readiness is not None or t.startup is not None
        return not h.ready and not h.last and h.restart_reason is None

    def available_at(self, c: ContainerInfo, pod: DesiredPod) -> float:
        """When a ready container counts as available (rollout.available_from)."""
        h = self.health_of(c)
        since = h.ready_since if h is not None else None
        start = available_from(since, c.started_at, self.backend_failures.get(c.id))
        return (start if start > float("-inf") else self.now) + pod.rollout.min_ready_s

    def failing(self, c: ContainerInfo, pod: DesiredPod) -> str | None:
        """Why a not-ready replica counts as failing for the rollout, or None."""
        if has_ended(c.state):
            code = c.exit_code if c.exit_code is not None else -1
            if pod.restart == "always" or (pod.restart == "on-failure" and code != 0):
                return f"crash loop (exit code {code})"
            return exit_reason(code) if code != 0 else None
        if c.state != "running":
            return None
        if self.busy and self.busy.get(c.id) == "killing":
            return "being killed"
        h = self.health_of(c)
        if h is not None and h.restart_reason is not None:
            return h.restart_reason
        if h is not None and any(not r.ok for r in h.last):
            return f"Unhealthy: {h.message}" if h.message else "Unhealthy"
        rec = self.ledger.restarts.get(c.id)
        if rec is not None and rec.restarts > 0:
            return f"restarted {rec.restarts} times"
        return None

    def measure(
        self,
        sp: _StackPass,
        pod: DesiredPod,
        is_ready: Callable[[ContainerInfo], bool],
    ) -> Progress:
        """The pod against its target revision `pod.revision`: one pass over its containers."""
        n, revision = pod.replicas, pod.revision
        progress = Progress(desired=n)
        ready_slots: set[int] = set()
        available_slots: set[int] = set()
        gated = pod.rollout.min_ready_s > 0
        removing = self.busy
        # All of the pod's containers, those being removed too (old ones still count).
        for c in sp.observed_by_pod.get(pod.name, ()):
            rev = c.labels.get(labels.REVISION, "")
            if rev != revision:
                progress.old_remaining += 1
                counts = progress.old_revisions.setdefault(rev, [0, 0])
                counts[0] += 1
                if is_ready(c):
                    counts[1] += 1
                continue
            idx = replica_index(c.labels)
            if idx is None or idx >= n or (removing and removing.get(c.id) == "removing"):
                continue
            progress.new_total += 1
            if is_ready(c):
                ready_slots.add(idx)
                if not gated:
                    available_slots.add(idx)
                    continue
                at = self.available_at(c, pod)
                if self.now >= at:
                    available_slots.add(idx)
                elif progress.next_available_at is None or at < progress.next_available_at:
                    progress.next_available_at = at
                continue
            why = self.failing(c, pod)
            if why is not None:
                progress.new_failing += 1
                progress.failing_reason = progress.failing_reason or why
        progress.new_ready = len(ready_slots)
        progress.new_available = len(available_slots)
        return progress

    def plan_pod(
        self, sp: _StackPass, pod: DesiredPod, containers: Sequence[ContainerInfo]
    ) -> None:
        """Work out the pod's rollout (its record, its target), then plan its replicas."""
        stack = sp.stack
        rec = self.ledger.rollouts.get(rollout_key(stack.name, pod.name))
        if (
            rec is None
            or (
                rec.status == "complete"
                and rec.override is None
                and rec.paused is None
                and rec.revision == pod.revision
            )
        ) and self.plan_converged(sp, pod, containers, rec):
            return
        target = target_of(rec, pod)
        tpod = _retarget(pod, target.revision, target.template)
        is_ready = self.readiness_cache(tpod)
        progress = self.measure(sp, tpod, is_ready)
        d = decide(
            rec,
            pod,
            target,
            progress,
            self.now,
            history=stack.history,
            templates=self.templates,
            stack=stack,
        )
        prev: int | None = None
        for record, reason, message in d.records:
            prev = self.add(
                RecordRollout,
                target=f"rollout:{stack.name}/{pod.name}",
                cause=f"{reason}: {message}" if reason else message,
                deps=[prev],
                stack=stack.name,
                pod=pod.name,
                record=record,
                reason=reason,
                message=message,
            )
        if d.rollback is not None:
            tpod = _retarget(pod, d.rollback.revision, d.rollback.template)
            is_ready = self.readiness_cache(tpod)
            progress = self.measure(sp, tpod, is_ready)
        self.wake_at.extend(d.wake_at)
        override = d.record.override if d.record is not None else None
        hold = None
        if d.hold:
            hold = "rollout paused" if d.state == "paused" else "rollout failed"
        blocked = None
        if tpod is not pod:
            problem = cannot_run(tpod.template, stack)
            if problem is not None:
                # Not a decision apply could carry out: hold, create nothing, say why.
                blocked = hold = f"rollout override cannot run: {problem}"
        self.rollouts.append(
            RolloutStatus(
                stack=stack.name,
                pod=pod.name,
                revision=tpod.revision,
                file_revision=pod.revision,
                desired=tpod.replicas,
                new_ready=progress.new_ready,
                new_available=progress.new_available,
                old_remaining=progress.old_remaining,
                started_at=d.record.started_at if d.record is not None else None,
                state=d.state,
                message=blocked or d.message,
                strategy=pod.rollout.strategy,
                override=override.kind if override is not None else None,
                deadline_at=d.deadline_at,
            )
        )
        self.plan_replicas(sp, tpod, containers, is_ready, hold, tpod is not pod, blocked)

    def plan_converged(
        self,
        sp: _StackPass,
        pod: DesiredPod,
        containers: Sequence[ContainerInfo],
        rec: RolloutRecord | None,
    ) -> bool:
        """The fast path of a converged pod, or False (having done nothing) when it is not.

        Converged: exactly one container per replica slot, each of the file's
        revision, none being removed, and a record that is complete at that
        revision with no override or pause (or no record). `decide()` then records
        nothing (no rollout starts: no container of another revision is left) and
        `plan_replicas()` only keeps each container up, so both are skipped; the
        rollout status is what they would report. Equivalence is property-tested.
        """
        n = pod.replicas
        if len(containers) != n or len(sp.observed_by_pod.get(pod.name, ())) != n:
            return False  # missing, surplus, or being removed: the full path
        revision = pod.revision
        slots: list[ContainerInfo | None] = [None] * n
        for c in containers:
            lab = c.labels
            if lab.get(labels.REVISION) != revision:
                return False
            idx = replica_index(lab)
            if idx is None or idx >= n or idx < 0 or slots[idx] is not None:
                return False
            slots[idx] = c
        ready = available = 0
        min_ready = pod.rollout.min_ready_s
        for slot, held in enumerate(slots):
            assert held is not None  # n containers in n distinct slots
            c = held
            r = self.upkeep(c, pod, slot)
            if not r and self.busy and self.busy.get(c.id) == "killing":
                r = self.is_ready(c, pod)  # its status says not ready; the rollout asks the probes
            if r:
                ready += 1
                if min_ready <= 0 or self.now >= self.available_at(c, pod):
                    available += 1
        if rec is None:
            state: RolloutState = "complete" if available >= n else "progressing"
            message, started_at = "", None
        else:
            state, message, started_at = "complete", rec.message, rec.started_at
        self.rollouts.append(
            RolloutStatus(
                stack=sp.stack.name,
                pod=pod.name,
                revision=revision,
                file_revision=revision,
                desired=n,
                new_ready=ready,
                new_available=available,
                old_remaining=0,
                started_at=started_at,
                state=state,
                message=message,
                strategy=pod.rollout.strategy,
            )
        )
        return True

    def plan_replicas(
        self,
        sp: _StackPass,
        pod: DesiredPod,
        containers: Sequence[ContainerInfo],
        is_ready: Callable[[ContainerInfo], bool],
        hold: str | None,
        override: bool,
        blocked: str | None = None,
    ) -> None:
        """Keep `pod.replicas` slots at `pod.revision`: create, keep up, roll.

        `hold` (paused, failed) stops replacement: no surge, no removal of an old
        replica; `override`: the target is an override's, not the file's template;
        `blocked`: why no replica of it can be created now (pending with that reason).
        """
        stack = sp.stack
        n = pod.replicas
        revision = pod.revision
        grace = pod.template.stop_grace_s
        slots: dict[int, list[ContainerInfo]] = {}
        for c in containers:
            idx = replica_index(c.labels)
            if idx is None or idx >= n:
                why = f"scaled down to {n}" if idx is not None else "no replica label"
                self.remove(c, pod, grace, why)
                continue
            cs = slots.get(idx)
            if cs is None:
                slots[idx] = [c]
            else:
                cs.append(c)

        min_ready = pod.rollout.min_ready_s

        def available(c: ContainerInfo) -> bool:
            if not is_ready(c):
                return False
            return min_ready <= 0 or self.now >= self.available_at(c, pod)

        def known_unready(c: ContainerInfo) -> bool:
            # An old replica no probe has answered for yet (podctl restarted, say
            # after a SIGKILL mid-rollout, and probes everything afresh) is not
            # known to be broken: replacing it at once, as a failing one is, would
            # take every old replica down together. It waits for its first result
            # (which wakes the planner) and counts as unavailable until then.
            return not is_ready(c) and not self.unprobed(c, pod)

        # Rollout bookkeeping, worked out only once a slot needs rolling: replicas
        # that exist and slots that are available, as changed by this pass so far.
        total_change = available_change = 0
        roll: tuple[int, int, int, int] | None = None  # surge, unavailable, total, available

        recreate_wait = False
        if pod.rollout.strategy == "recreate" and hold is None:
            # Every container of another revision goes first, those still stopping too.
            recreate_wait = any(
                c.labels.get(labels.REVISION) != revision
                for c in sp.observed_by_pod.get(pod.name, ())
            )

        def create(slot: int, cause: str, after: int | None = None) -> None:
            base = container_name(stack.name, pod.name, slot, revision)
            # A container's spec carries the stack network's gateway (in-stack service
            # discovery), so containers are created once the network exists: a pass later.
            reason = blocked
            if reason is None:
                reason = (
                    "NetworkCreating" if sp.net_step is not None else self.dependency_wait(sp, pod)
                )
            if reason is None and recreate_wait:
                reason = "Recreating: waiting for the old replicas to stop"
            image_step: int | None = None
            if reason is None:
                image_step, reason = self.ensure_image(pod)
            if reason is None and self.capacity is not None:
                reason = self.capacity.admit(pod)
            if reason is not None:
                self.pending(pod, slot, base, reason)
                return
            name = unique_name(base, self.observed.container_names, self.new_names)
            self.new_names.add(name)
            vols = [
                sp.volume_steps.get(m.source) for m in pod.template.mounts if m.kind == "volume"
            ]
            self.add(
                RunContainer,
                target=f"pod:{stack.name}/{pod.name}/{slot}",
                cause=cause,
                deps=[sp.net_step, image_step, after, self.prepare_files(sp), *vols],
                stack=stack.name,
                pod=pod.name,
                replica=slot,
                name=name,
                revision=revision if override else None,
                template=pod.template if override else None,
            )
            self.pending(pod, slot, name, "ContainerCreating")

        what = "rollout override" if override else "template changed"
        cause = f"{what} (revision {revision[:6]})"
        for slot in range(n):
            cs = slots.get(slot)
            if cs is None:
                create(slot, "missing")
                continue
            if len(cs) == 1 and cs[0].labels.get(labels.REVISION) == revision:
                self.upkeep(cs[0], pod, slot)  # the converged case
                continue
            cs.sort(key=_by_start)
            new = [c for c in cs if c.labels.get(labels.REVISION) == revision]
            old = [c for c in cs if c.labels.get(labels.REVISION) != revision]
            # Duplicates (e.g. two podctl instances raced): keep the best one.
            for extra in _extras(new, is_ready):
                self.remove(extra, pod, grace, "duplicate replica")
                new.remove(extra)
                total_change -= 1
            old_extras = _extras(old, is_ready)
            kept_rev = (
                next((c for c in old if c not in old_extras), old[0]).labels.get(labels.REVISION)
                if old
                else None
            )
            for extra in old_extras:
                # Two old revisions in one slot: an edit came during a rollout.
                rev = extra.labels.get(labels.REVISION, "")
                why = "duplicate replica"
                if rev != kept_rev:
                    why = f"superseded mid-rollout (revision {short(rev)})"
                self.remove(extra, pod, grace, why)
                old.remove(extra)
                total_change -= 1

            if recreate_wait:
                for o in old:
                    self.remove(o, pod, grace, cause + "; recreate")
                for nw in new:
                    self.upkeep(nw, pod, slot)
                continue
            if new and old:
                o, nw = old[0], new[0]
                if hold is None and (available(nw) or known_unready(o)):
                    why = f"replaced by {nw.name} (revision {short(revision)})"
                    self.remove(o, pod, grace, why)
                    self.upkeep(nw, pod, slot)
                    continue
                if roll is None:
                    roll = self.roll_counts(pod, slots, available)
                if hold is None and roll[2] + total_change > n + roll[0]:
                    # Scaled down mid-rollout: the surge is over its new budget. The
                    # new container that is not available yet goes; the old one serves.
                    self.remove(nw, pod, grace, f"surge over budget: scaled to {n} mid-rollout")
                    total_change -= 1
                else:
                    self.upkeep(nw, pod, slot)
                self.upkeep(o, pod, slot, note=hold)
                continue
            if new:
                self.upkeep(new[0], pod, slot)
                continue
            o = old[0]
            if hold is not None:
                self.upkeep(o, pod, slot, note=hold)
                continue
            # Only an outdated container in this slot: roll it.
            if roll is None:
                roll = self.roll_counts(pod, slots, available)
            surge, unavailable, total, avail = roll
            if known_unready(o):
                rid = self.remove(o, pod, grace, cause + "; old not ready")
                create(slot, cause, after=rid)
            elif total + total_change < n + surge:
                total_change += 1
                self.upkeep(o, pod, slot)
                create(slot, cause + "; surge")
            elif avail + available_change - 1 >= n - unavailable:
                available_change -= 1
                rid = self.remove(o, pod, grace, cause)
                create(slot, cause, after=rid)
            else:
                self.upkeep(o, pod, slot, note="rollout waiting for availability")

    @staticmethod
    def roll_counts(
        pod: DesiredPod,
        slots: Mapping[int, Sequence[ContainerInfo]],
        available: Callable[[ContainerInfo], bool],
    ) -> tuple[int, int, int, int]:
        """(max_surge, max_unavailable, containers, available slots) of a pod mid-roll."""
        n = pod.replicas
        return (
            *rollout_budget(pod.rollout, n),
            # Missing slots are created this pass too: they count as existing.
            sum(len(v) for v in slots.values()) + n - len(slots),
            sum(1 for v in slots.values() if any(available(c) for c in v)),
        )

    # -- one container -----------------------------------------------------

    def upkeep(self, c: ContainerInfo, pod: DesiredPod, slot: int, note: str | None = None) -> bool:
        """Keep a container that should exist healthy: restart, kill, or just report it.
        Returns whether it is ready (as its status says)."""
        rec = self.ledger.restarts.get(c.id)
        state = c.state
        phase: Phase = engine_phase(state, c.exit_code)
        reason: str | None = note
        ready = False

        if self.busy and self.busy.get(c.id) == "killing":
            # Its liveness kill is under way (SIGTERM, grace, SIGKILL); the restart follows.
            phase, reason = "Running", (rec.killed_for if rec and rec.killed_for else "Killing")
        elif state == "running":
            h = self.health_of(c)
            if h is None:
                t = pod.template
                ready = t.readiness is None and t.startup is None  # as is_ready()
            else:
                ready = h.ready and h.started and h.restart_reason is None
            if h is not None and h.restart_reason is not None:
                ready = False
                reason = h.restart_reason
                probe = "liveness" if h.restart_reason == "LivenessFailed" else "startup"
                self.add(
                    KillContainer,
                    target=f"pod:{pod.stack}/{pod.name}/{slot}",
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
        elif state == "created":
            self.add(
                StartContainer,
                target=f"pod:{pod.stack}/{pod.name}/{slot}",
                cause="created but not started",
                container_id=c.id,
                backoff_level=rec.backoff_level if rec else 0,
            )
            reason = "ContainerCreating"
        elif has_ended(state):
            code = c.exit_code if c.exit_code is not None else -1
            wants_restart = pod.restart == "always" or (pod.restart == "on-failure" and code != 0)
            if not wants_restart:
                reason = exit_reason(code)
            else:
                phase, reason = self.crash_loop(c, pod, slot, rec, code)

        self.status.append(
            ReplicaStatus(
                stack=pod.stack,
                pod=pod.name,
                replica=slot,
                name=c.name,
                container_id=c.id,
                phase=phase,
                ready=ready,
                restarts=rec.restarts if rec else 0,
                revision=c.labels.get(labels.REVISION, ""),
                image=c.image,
                reason=reason,
                exit_code=c.exit_code if has_ended(state) else None,
                ip=c.ip,
                started_at=c.started_at,
            )
        )
        return ready

    def crash_loop(
        self, c: ContainerInfo, pod: DesiredPod, slot: int, rec: RestartRecord | None, code: int
    ) -> tuple[Phase, str]:
        """An ended container its restart policy wants back: restart it once its back-off is up.

        The back-off runs from the end of the run being restarted. A snapshot can
        show an exit from before podctl's last restart of the container (the engine
        lags, or a restarted container crashed again with the same exit code before
        the next look, so an older inspect is reused): that exit is not the latest,
        which came after the restart. Dating the back-off from the stale exit made
        a 16 s step fire some 6 s after the crash it was for; so it runs from the
        later of the two, and the reset rule trusts the run's length only when the
        exit is the latest.
        """
        finished = c.finished_at if c.finished_at is not None else self.now
        outage = self.engine_outage
        if (
            outage is not None
            and c.finished_at is not None
            and outage[0] <= c.finished_at <= outage[1]
            and (rec is None or rec.last_restart_at < c.finished_at)
        ):
            # The engine stopped it as it went down (dockerd restarting stops every
            # container without live-restore): start it again now, not counted as a
            # crash and with no back-off. dockerd stops containers while its API still
            # answers, so podctl may already have restarted it once in the window (and
            # counted it): that restart is taken back too.
            level = rec.backoff_level if rec else 0
            again = rec is not None and outage[0] <= rec.last_restart_at <= outage[1]
            self.add(
                StartContainer,
                target=f"pod:{pod.stack}/{pod.name}/{slot}",
                cause=f"stopped by the engine's restart (exit code {code}); starting it again",
                container_id=c.id,
                backoff_level=max(0, level - 1) if again else level,
                counts=False,
                uncount=1 if again else 0,
            )
            return "Pending", "Restarting (stopped by the engine's restart)"
        ran_for = _ran_for(c)
        if rec is not None and rec.last_restart_at > finished:
            finished, ran_for = rec.last_restart_at, None
        level = backoff.effective_level(rec.backoff_level if rec else 0, ran_for)
        delay = backoff.crash_delay(level)
        due = finished + delay
        killed = rec.killed_for if rec else None
        why = killed or (f"OOMKilled (exit code {code})" if c.oom_killed else f"exit code {code}")
        if self.now >= due:
            self.add(
                StartContainer,
                target=f"pod:{pod.stack}/{pod.name}/{slot}",
                cause=f"{why}; restart after back-off {format_duration(delay)}",
                container_id=c.id,
                backoff_level=level + 1,
            )
            return "Pending", f"Restarting ({why})"
        self.wake_at.append(due)
        return (
            "CrashLoopBackOff",
            f"back-off {format_duration(delay)} restarting failed container ({why})",
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
                replica=replica_index(c.labels) or 0,
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


def _retarget(pod: DesiredPod, revision: str, template: ContainerTemplate) -> DesiredPod:
    """The pod as planned this pass: the file's, or an override's template (never
    built: an override runs an image built before)."""
    if revision == pod.revision:
        return pod
    return msgspec.structs.replace(pod, revision=revision, template=template, build=None)


def _by_start(c: ContainerInfo) -> tuple[float, str]:
    return (c.started_at or 0.0, c.id)


def _extras(cs: list[ContainerInfo], ready: Callable[[ContainerInfo], bool]) -> list[ContainerInfo]:
    """All but the one container worth keeping: the ready one, else the running, else newest."""
    if len(cs) <= 1:
        return []
    keep = max(cs, key=lambda c: (bool(ready(c)), c.state == "running", c.started_at or 0.0))
    return [c for c in cs if c is not keep]


def _capacity(observed: ObservedState, stacks: Sequence[DesiredStack]) -> _Capacity | None:
    """What is left of the host after the containers that already exist."""
    host = observed.host
    if host is None:
        return None
    cap = _Capacity(nano_cpus=host.ncpu * 1_000_000_000, memory_bytes=host.mem_bytes)
    for stack in stacks:
        by_pod = observed.stack(stack.name).by_pod
        for pod in stack.pods:
            cpu, mem = pod.template.nano_cpus, pod.template.memory_bytes
            if not cpu and not mem:
                continue
            live = sum(1 for c in by_pod.get(pod.name, ()) if not has_ended(c.state))
            cap.nano_cpus -= cpu * live
            cap.memory_bytes -= mem * live
    return cap


def plan(
    desired: Sequence[DesiredStack],
    observed: ObservedState,
    health: HealthView,
    ledger: Ledger,
    now: float,
    busy: Busy | None = None,
    *,
    backend_failures: Mapping[str, float] | None = None,
    templates: Mapping[str, ContainerTemplate] | None = None,
    engine_outage: tuple[float, float] | None = None,
) -> Plan:
    """Decide what to do about `desired` given one observed snapshot. Pure.

    `busy` names the long steps of earlier passes still under way (stops that
    wait out a grace period, pulls, builds), so they are neither planned twice
    nor allowed to hold up decisions about everything else.
    `backend_failures`: container id -> the time of the proxy's latest connect
    failure or reset to it (a new replica's `min_ready` starts over).
    `templates`: revision -> template, from the revision history, for a rollout
    that starts with no record in the Ledger (the revision it leaves is then a
    rollback target only when its template is known).
    `engine_outage`: (from, to), the last time the engine went away and came back;
    a container that exited within it was stopped by the engine, not crashed.
    """
    p = _Planner(
        observed=observed,
        health=health,
        ledger=ledger,
        now=now,
        busy=dict(busy or {}),
        backend_failures=backend_failures or {},
        templates=templates or {},
        engine_outage=engine_outage,
    )
    p.capacity = _capacity(observed, desired)
    for stack in desired:
        p.plan_stack(stack)
    requeue = max(min(p.wake_at) - now, 0.0) if p.wake_at else None
    return Plan(
        steps=tuple(p.steps),
        status=tuple(p.status),
        requeue_after=requeue,
        rollouts=tuple(p.rollouts),
    )


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
