"""What podctl remembers between passes that the engine does not: restart counts,
crash-loop backoff levels, image pull failures.

The planner reads it as input; apply records outcomes into it. Keyed by
container id, so a replaced container starts from zero (as a new pod would in
Kubernetes). It is persisted in the state directory so that a restarted podctl
keeps counting instead of forgetting a crash loop.
"""

from __future__ import annotations

import msgspec


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


class Ledger(msgspec.Struct, kw_only=True):
    restarts: dict[str, RestartRecord] = {}
    pull_failures: dict[str, PullFailure] = {}

    def record(self, container_id: str) -> RestartRecord:
        rec = self.restarts.get(container_id)
        if rec is None:
            rec = self.restarts[container_id] = RestartRecord()
        return rec

    def forget_missing(self, live_ids: set[str]) -> None:
        for cid in [c for c in self.restarts if c not in live_ids]:
            del self.restarts[cid]
