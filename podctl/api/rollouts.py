"""`rollout history` rows: the revision history joined with the pod's rollout record.

Pure, and shared by the running podctl (handlers) and the CLI reading the state
directory when none runs. A revision's status:

- `current`: the one the pod runs or rolls to now (the file's, or an override's);
- `rolled-back`: its rollout failed and podctl (or `undo`) returned to another;
- `failed`: its rollout failed (not rolled back), or it never became fully
  available before the file moved on (superseded mid-rollout): `undo` skips both;
- `complete`: it was fully available.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from podctl.api.schema import HistoryRow, HistoryStatus

if TYPE_CHECKING:
    from collections.abc import Sequence

    from podctl.reconcile.ledger import RolloutRecord
    from podctl.storage.history import RevisionRecord

OUTCOMES: dict[str, HistoryStatus] = {
    "complete": "complete",
    "failed": "failed",
    "rolled-back": "rolled-back",
}


def history_rows(
    records: Sequence[RevisionRecord],
    rec: RolloutRecord | None,
    current: str | None,
) -> list[HistoryRow]:
    """Oldest first; `current` is the revision the pod runs or rolls to now."""
    available = {a.revision for a in rec.available} if rec is not None else set()
    failed = set(rec.failed) if rec is not None else set()
    rolled_from = (
        rec.override.from_revision
        if rec is not None and rec.override is not None and rec.override.kind == "rollback"
        else None
    )
    rows = []
    for r in records:
        status: HistoryStatus
        message = ""
        if r.revision == current:
            status = "current"
            if rec is not None and rec.revision == current:
                message = rec.message
        elif r.revision == rolled_from or r.outcome == "rolled-back":
            status = "rolled-back"
        elif r.revision in failed or r.outcome == "failed":
            status = "failed"
        elif r.outcome == "complete" or r.revision in available:
            status = "complete"
        else:
            status, message = "failed", "never fully available (superseded before it was)"
        rows.append(
            HistoryRow(
                revision=r.revision,
                created=r.created_at,
                cause="file change" if r.cause in ("", "start") else r.cause,
                status=status,
                image=r.template.image,
                message=message,
            )
        )
    return rows
