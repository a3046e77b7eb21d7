"""`podctl rollout status`'s verdict and lines, and `rollout history`'s statuses:
pure functions over what the running podctl (or the state directory) says."""

from __future__ import annotations

import pytest

from podctl.api.rollouts import history_rows
from podctl.api.schema import RolloutRow
from podctl.cli.rollout import progress_line, verdict
from podctl.reconcile.ledger import AvailableRevision, Override, RolloutRecord
from podctl.storage.history import RevisionRecord
from tests.unit.planbuild import template

R1, R2, R3, R4 = "rev1aaaaaaaa", "rev2bbbbbbbb", "rev3cccccccc", "rev4dddddddd"


def row(state: str, **kw: object) -> RolloutRow:
    fields: dict[str, object] = {
        "stack": "shop",
        "pod": "web",
        "revision": R2,
        "file_revision": R2,
        "desired": 3,
        "new_ready": 1,
        "new_available": 1,
        "old_remaining": 2,
        "started_at": 100.0,
        "state": state,
    }
    fields.update(kw)
    return RolloutRow(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (row("progressing"), None),
        (row("complete", new_ready=3, new_available=3, old_remaining=0), 0),
        (row("failed"), 1),
        (row("rolled-back"), 1),
        (row("paused"), None),  # paused mid-rollout: waits for resume
        (row("paused", new_ready=3, new_available=3, old_remaining=0), 0),  # nothing to roll
        (row("progressing", started_at=None), 0),  # a first start: not a rollout
    ],
)
def test_rollout_status_exit_codes(status: RolloutRow, code: int | None) -> None:
    assert verdict(status) == code


def test_progress_lines() -> None:
    assert (
        progress_line(row("progressing"), 104.25) == "shop/web: revision rev2bb: rolling out:"
        " 1/3 new ready (1 available), 2 old remaining, 4.2s"
    )
    back = row("rolled-back", revision=R1, override="rollback", message="rolled back to rev1aa: x")
    assert (
        progress_line(back, 200.0)
        == "shop/web: revision rev1aa (rollback): rolled back to rev1aa: x"
    )
    done = row("complete", new_ready=3, new_available=3, old_remaining=0, message="after 9s")
    assert progress_line(done, 500.0, followed=False).endswith("0 old remaining (after 9s)")


def rev(revision: str, cause: str = "file change", outcome: str = "") -> RevisionRecord:
    return RevisionRecord(
        revision=revision, template=template(), created_at=1.0, cause=cause, outcome=outcome
    )


def test_history_statuses() -> None:
    """r1 complete; r2 failed (no rollback); r3 superseded mid-rollout; r4 failed and
    rolled back to r1, which runs now under the override."""
    rec = RolloutRecord(
        revision=R1,
        file_revision=R4,
        started_at=10.0,
        available=(AvailableRevision(revision=R1, template=template(), at=5.0),),
        failed=(R2, R4),
        override=Override(
            kind="rollback",
            revision=R1,
            template=template(),
            file_revision=R4,
            at=10.0,
            from_revision=R4,
        ),
    )
    rows = history_rows([rev(R2), rev(R3), rev(R4), rev(R1, "rollback")], rec, R1)
    assert [(r.revision, r.status, r.cause) for r in rows] == [
        (R2, "failed", "file change"),
        (R3, "failed", "file change"),
        (R4, "rolled-back", "file change"),
        (R1, "current", "rollback"),
    ]
    assert "superseded" in rows[1].message
    # Outcomes kept in the history win over a record that no longer knows them.
    later = history_rows([rev(R2, outcome="rolled-back"), rev(R3, outcome="complete")], None, None)
    assert [r.status for r in later] == ["rolled-back", "complete"]
    # Older history files said "start": shown as a file change.
    assert history_rows([rev(R1, "start")], None, R1)[0].cause == "file change"
