"""Plan steps: each is one small engine operation with the cause that made the planner ask for it.

Steps are plain data. `apply()` executes them without making decisions; tests
compare the rendered text of a plan (see `Plan.render`).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from podctl.reconcile.ledger import RolloutRecord
from podctl.runtime.protocol import ContainerSpec
from podctl.spec.model import ContainerTemplate

Phase = Literal["Pending", "Running", "Succeeded", "Failed", "CrashLoopBackOff", "Terminating"]


class Step(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    id: int
    target: str  # what it acts on: "network:shop", "pod:shop/web/0", "image:busybox:1.36"
    cause: str  # why the planner asked for it
    deps: tuple[int, ...] = ()


class CreateNetwork(Step, frozen=True):
    stack: str
    name: str


class RemoveNetwork(Step, frozen=True):
    stack: str
    network_id: str


class CreateVolume(Step, frozen=True):
    stack: str
    volume: str  # name in the stack
    docker_name: str


class RemoveVolume(Step, frozen=True):
    docker_name: str


class PrepareFiles(Step, frozen=True):
    """Materialise the stack's configs and secrets on tmpfs before its containers start."""

    stack: str


class PullImage(Step, frozen=True):
    ref: str


class BuildImage(Step, frozen=True):
    ref: str
    context: str


class RunContainer(Step, frozen=True):
    """Create and start one replica of a pod at the desired revision.

    The planner names the replica; `spec` (everything the engine needs) is
    resolved just before apply (`podctl.reconcile.resolve`), since it holds
    values the stack delivers as env and must not outlive the call.
    """

    stack: str
    pod: str
    replica: int
    name: str
    spec: ContainerSpec | None = None
    # Set while an override (rollback, undo) holds: the revision and template to run
    # instead of the file's. None: the file's.
    revision: str | None = None
    template: ContainerTemplate | None = None


class StartContainer(Step, frozen=True):
    """Restart an exited container in place (a restart: counts and backs off)."""

    container_id: str
    backoff_level: int  # the crash-loop level recorded once the restart happened
    # False when the engine stopped it (its own restart): started again, not a crash.
    counts: bool = True
    # Restarts to take back: podctl's own restart of it while the engine was already
    # shutting down (dockerd stops containers before its API goes away).
    uncount: int = 0


class KillContainer(Step, frozen=True):
    """Stop a running container that failed liveness/startup; it is then restarted."""

    container_id: str
    grace_s: float
    reason: str


class RemoveContainer(Step, frozen=True):
    """Take the container out of service, let connections drain, stop it with grace, remove it."""

    container_id: str
    grace_s: float


class RecordRollout(Step, frozen=True):
    """Write a pod's rollout record into the Ledger and, when `reason` is set, emit it
    as an event (RolloutStarted, RolloutComplete, RolloutFailed, RolledBack).

    The planner is pure: this is how what a rollout decided survives the pass
    (and a podctl restart, with the Ledger). `cause` reads `reason: message`.
    """

    stack: str
    pod: str
    record: RolloutRecord
    reason: str = ""  # empty: bookkeeping only, no event
    message: str = ""


AnyStep = (
    CreateNetwork
    | RemoveNetwork
    | CreateVolume
    | RemoveVolume
    | PrepareFiles
    | PullImage
    | BuildImage
    | RunContainer
    | StartContainer
    | KillContainer
    | RemoveContainer
    | RecordRollout
)


class ReplicaStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What `podctl get pods` shows for one replica: the planner's conclusion, not a guess."""

    stack: str
    pod: str
    replica: int
    name: str
    container_id: str | None
    phase: Phase
    ready: bool
    restarts: int
    revision: str
    image: str
    reason: str | None = None
    exit_code: int | None = None
    ip: str | None = None
    started_at: float | None = None


RolloutState = Literal["progressing", "complete", "failed", "rolled-back", "paused"]


class RolloutStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What `podctl rollout status STACK/POD` shows for one pod, as of this pass."""

    stack: str
    pod: str
    revision: str  # the revision being rolled out (the file's, or an override's)
    file_revision: str  # the pod's revision in the stack file
    desired: int  # replicas
    new_ready: int  # replicas of `revision` that are ready
    new_available: int  # ... and have been for min_ready, with no restart or proxy failure
    old_remaining: int  # containers of other revisions still there
    started_at: float | None  # None: no rollout recorded yet (a pod's first start)
    state: RolloutState
    message: str = ""
    strategy: str = "rolling"
    override: str | None = None  # "rollback" | "undo" while one holds
    deadline_at: float | None = None  # when a progressing rollout fails


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    steps: tuple[AnyStep, ...] = ()
    status: tuple[ReplicaStatus, ...] = ()
    requeue_after: float | None = None  # seconds until the planner wants another look
    rollouts: tuple[RolloutStatus, ...] = ()  # one per desired pod

    def render(self) -> str:
        """Golden text: `[deps] -> #id target, Kind, cause`."""
        lines = []
        for s in self.steps:
            deps = ",".join(str(d) for d in s.deps)
            lines.append(f"[{deps}] -> #{s.id} {s.target}, {type(s).__name__}, {s.cause}")
        return "\n".join(lines)
