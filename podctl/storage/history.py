"""Revision history: every template a pod has run, for `rollout history` and `undo`.

Kept per pod in the state directory (`revisions/<stack>/<pod>.json`), oldest
first and capped by the stack's `history:` (Kubernetes' revisionHistoryLimit).
Recorded whenever a stack is loaded with a template not seen last (at start and
on every reload: cause `file change` or `--set`), when `rollout undo` or an
automatic rollback returns to a revision (`undo`, `rollback`: it moves to the
end, as `kubectl rollout undo` renumbers the restored ReplicaSet), and when a
rollout to a revision ends (`outcome`: complete, failed, rolled-back).
"""

from __future__ import annotations

import time

import anyio.to_thread
import msgspec

from podctl.spec.model import ContainerTemplate
from podctl.storage.statedir import StateDir, check_component

# Kubernetes keeps 10 old ReplicaSets (revisionHistoryLimit) by default.
REVISION_HISTORY_LIMIT = 10


class RevisionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One revision of a pod template, as `rollout history` shows it and `undo` restores it.

    The template holds references (config/secret names) and the revision hash, never a
    secret value: digests only.
    """

    revision: str
    template: ContainerTemplate
    created_at: float
    cause: str = ""  # file change | --set | undo | rollback (older files: start)
    # How the last rollout to it ended: complete | failed | rolled-back; "" not yet.
    outcome: str = ""


class RevisionLog(msgspec.Struct, frozen=True, kw_only=True):
    stack: str
    pod: str
    revisions: tuple[RevisionRecord, ...] = ()


class RevisionHistory:
    """Per-pod list of revisions, oldest first, capped at `limit`.

    Re-recording an existing revision (an `undo`, or a revert of the file) moves it to the
    end, as `kubectl rollout undo` gives the restored ReplicaSet a new revision number.
    """

    def __init__(self, state: StateDir, limit: int = REVISION_HISTORY_LIMIT) -> None:
        if limit < 1:
            raise ValueError("revision history limit must be at least 1")
        self.state = state
        self.limit = limit

    @staticmethod
    def name(stack: str, pod: str) -> str:
        return f"revisions/{check_component(stack, 'stack')}/{check_component(pod, 'pod')}.json"

    def list(self, stack: str, pod: str) -> tuple[RevisionRecord, ...]:
        log = self.state.read_json(self.name(stack, pod), RevisionLog)
        return () if log is None else log.revisions

    def record(
        self,
        stack: str,
        pod: str,
        revision: str,
        template: ContainerTemplate,
        *,
        cause: str = "",
        now: float | None = None,
        limit: int | None = None,
    ) -> tuple[RevisionRecord, ...]:
        """Append `revision` (moving it to the end if present), keeping the newest
        `limit` (the stack's `history`; the instance's default when None)."""
        cap = max(self.limit if limit is None else limit, 1)
        current = self.list(stack, pod)
        if current and current[-1].revision == revision and len(current) <= cap:
            return current
        if current and current[-1].revision == revision:
            kept = current[-cap:]  # `history:` was lowered: trim at once
        else:
            # Returning to a revision starts a rollout to it: its old outcome is moot.
            entry = RevisionRecord(
                revision=revision,
                template=template,
                created_at=time.time() if now is None else now,
                cause=cause,
            )
            kept = (*(r for r in current if r.revision != revision), entry)[-cap:]
        self._write(stack, pod, kept)
        return kept

    def set_outcome(self, stack: str, pod: str, revision: str, outcome: str) -> bool:
        """Note how a rollout to `revision` ended; False when it is not (or no longer) kept."""
        current = self.list(stack, pod)
        if not any(r.revision == revision and r.outcome != outcome for r in current):
            return False
        kept = tuple(
            msgspec.structs.replace(r, outcome=outcome) if r.revision == revision else r
            for r in current
        )
        self._write(stack, pod, kept)
        return True

    def _write(self, stack: str, pod: str, kept: tuple[RevisionRecord, ...]) -> None:
        self.state.write_json(
            self.name(stack, pod), RevisionLog(stack=stack, pod=pod, revisions=kept)
        )

    def forget(self, stack: str, pod: str) -> None:
        self.state.remove(self.name(stack, pod))

    async def list_async(self, stack: str, pod: str) -> tuple[RevisionRecord, ...]:
        return await anyio.to_thread.run_sync(self.list, stack, pod)

    async def record_async(
        self,
        stack: str,
        pod: str,
        revision: str,
        template: ContainerTemplate,
        *,
        cause: str = "",
        now: float | None = None,
        limit: int | None = None,
    ) -> tuple[RevisionRecord, ...]:
        def run() -> tuple[RevisionRecord, ...]:
            return self.record(stack, pod, revision, template, cause=cause, now=now, limit=limit)

        return await anyio.to_thread.run_sync(run)

    async def set_outcome_async(self, stack: str, pod: str, revision: str, outcome: str) -> bool:
        return await anyio.to_thread.run_sync(self.set_outcome, stack, pod, revision, outcome)
