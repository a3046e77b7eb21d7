"""What podctl remembers between passes that the engine does not: restart counts,
crash-loop backoff levels, image pull failures, and each pod's rollout.

The planner reads it as input; apply records outcomes into it. Keyed by
container id, so a replaced container starts from zero (as a new pod would in
Kubernetes). It is persisted in the state directory so that a restarted podctl
keeps counting instead of forgetting a crash loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec

from podctl.spec.model import ContainerTemplate

if TYPE_CHECKING:
    from collections.abc import Set


class RestartRecord(msgspec.Struct, kw_only=True):
    restarts: int = 0  # shown as `restarts`
    backoff_level: int = 0  # consecutive quick crashes; delay = initial * 2**level
    last_restart_at: float = 0.0
    last_exit_code: int | None = None
    killed_for: str | None = None  # "LivenessFailed" / "StartupFailed" when podctl killed it


class PullFailure(msgspec.Struct, kw_only=True):
    attempts: int
    last_at: float
    message: str


# What a rollout record says about its own rollout. `rollout status` shows two more
# states derived from the record: `rolled-back` (an automatic rollback's override
# holds) and `paused` (see `RolloutStatus`).
RecordState = Literal["progressing", "complete", "failed"]


class AvailableRevision(msgspec.Struct, frozen=True, kw_only=True):
    """A revision that was fully available: where a rollback or an undo can return.

    The template holds references and digests only (config and secret names,
    never their values), so it is safe in the state directory.
    """

    revision: str
    template: ContainerTemplate | None  # None: adopted, template not known
    at: float  # when it became fully available


class Override(msgspec.Struct, frozen=True, kw_only=True):
    """Run `template` instead of what the file says, until the pod's entry in the file
    changes (its revision there differs from `file_revision`)."""

    kind: Literal["rollback", "undo"]
    revision: str
    template: ContainerTemplate
    file_revision: str
    at: float
    reason: str = ""  # why: shown by `rollout status`, `get pods`, `describe`
    from_revision: str | None = None


class Pause(msgspec.Struct, frozen=True, kw_only=True):
    """`rollout pause`: no replacement steps until `resume` or a change of the file."""

    file_revision: str
    at: float


class RolloutRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One pod's rollout: to `revision` (the file's, or an override's), since `started_at`."""

    revision: str
    file_revision: str  # the pod's revision in the file when this record was written
    started_at: float
    status: RecordState = "progressing"
    from_revision: str | None = None
    finished_at: float | None = None
    message: str = ""
    # Fully available revisions, oldest first, at most the stack's `history`.
    available: tuple[AvailableRevision, ...] = ()
    failed: tuple[str, ...] = ()  # revisions whose rollout failed, oldest first
    override: Override | None = None
    paused: Pause | None = None
    # Since when every new replica has been failing (the crash-loop rule; see rollout.py).
    failing_since: float | None = None


def rollout_key(stack: str, pod: str) -> str:
    return f"{stack}/{pod}"


class Ledger(msgspec.Struct, kw_only=True):
    restarts: dict[str, RestartRecord] = {}
    pull_failures: dict[str, PullFailure] = {}
    rollouts: dict[str, RolloutRecord] = {}  # by rollout_key(stack, pod)

    def record(self, container_id: str) -> RestartRecord:
        rec = self.restarts.get(container_id)
        if rec is None:
            rec = self.restarts[container_id] = RestartRecord()
        return rec

    def forget_missing(self, live_ids: set[str]) -> None:
        for cid in [c for c in self.restarts if c not in live_ids]:
            del self.restarts[cid]

    def forget_rollouts(self, live: Set[str], stacks: Set[str] | None = None) -> bool:
        """Drop the rollout records of pods no longer in any stack (keys: rollout_key);
        with `stacks`, only records of those stacks (another podctl sharing the state
        directory keeps its own). Returns whether any was dropped."""
        gone = [
            k
            for k in self.rollouts
            if k not in live and (stacks is None or k.split("/", 1)[0] in stacks)
        ]
        for key in gone:
            del self.rollouts[key]
        return bool(gone)
