"""Property: the planner's fast path for a converged pod (`_Planner.plan_converged`)
decides exactly what the full rollout path decides: the same steps, replica
statuses, rollout statuses and requeue time, whatever the replicas' states,
readiness, `min_ready`, restart counts and the pod's rollout record."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podctl.health.model import ContainerHealth
from podctl.reconcile import plan as plan_module
from podctl.reconcile.ledger import Ledger, Override, Pause, RestartRecord, RolloutRecord
from podctl.reconcile.plan import plan
from podctl.spec.model import RolloutSpec
from tests.unit.planbuild import container, observed, pod, stack, template

REV, OLD = "rev1aaaaaaaa", "rev0zzzzzzzz"
NOW = 2000.0

replica = st.fixed_dictionaries(
    {
        "state": st.sampled_from(["running", "running", "exited", "created"]),
        "revision": st.sampled_from([REV, REV, REV, OLD]),
        "slot_shift": st.sampled_from([0, 0, 0, 1, -1, 7]),
        "health": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {
                    "ready": st.booleans(),
                    "started": st.booleans(),
                    "ready_since": st.one_of(st.none(), st.floats(1000.0, NOW)),
                    "restart": st.sampled_from([None, None, "LivenessFailed"]),
                }
            ),
        ),
        "restarts": st.integers(0, 3),
    }
)
records = st.sampled_from(["none", "complete", "complete-old", "progressing", "override", "pause"])


def _record(kind: str) -> RolloutRecord | None:
    if kind == "none":
        return None
    base = RolloutRecord(
        revision=OLD if kind == "complete-old" else REV,
        file_revision=REV,
        started_at=1500.0,
        status="progressing" if kind == "progressing" else "complete",
        message="revision rev1aa fully available (2/2) after 10s",
    )
    if kind == "override":
        ov = Override(kind="undo", revision=OLD, template=template(), file_revision=REV, at=1500.0)
        return RolloutRecord(**{**_fields(base), "override": ov})
    if kind == "pause":
        return RolloutRecord(**{**_fields(base), "paused": Pause(file_revision=REV, at=1500.0)})
    return base


def _fields(rec: RolloutRecord) -> dict[str, Any]:
    return {f: getattr(rec, f) for f in rec.__struct_fields__}


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(0, 4),
    replicas=st.lists(replica, max_size=5),
    min_ready=st.sampled_from([0.0, 0.0, 30.0, 5000.0]),
    readiness=st.booleans(),
    record=records,
    killing=st.booleans(),
)
def test_fast_path_plans_as_the_full_path(
    n: int,
    replicas: list[dict[str, Any]],
    min_ready: float,
    readiness: bool,
    record: str,
    killing: bool,
) -> None:
    desired = stack(
        pod(
            replicas=n,
            revision=REV,
            readiness=readiness,
            rollout=RolloutSpec(min_ready_s=min_ready),
        )
    )
    containers, health, restarts = [], {}, {}
    for i, r in enumerate(replicas):
        ended = r["state"] == "exited"
        c = container(
            "web",
            (i + r["slot_shift"]) % 8 if r["slot_shift"] else i,
            revision=r["revision"],
            state=r["state"],
            exit_code=1 if ended else None,
            finished_at=1990.0 if ended else None,
            started_at=1000.0 + i,
            cid=f"c{i}",
        )
        containers.append(c)
        h = r["health"]
        if h is not None:
            health[c.id] = ContainerHealth(
                started=h["started"],
                ready=h["ready"],
                restart_reason=h["restart"],
                started_at=c.started_at,
                ready_since=h["ready_since"],
            )
        if r["restarts"]:
            restarts[c.id] = RestartRecord(restarts=r["restarts"], backoff_level=r["restarts"])
    rec = _record(record)
    busy = {"c0": "killing"} if killing and containers else {}

    def ledger() -> Ledger:
        return Ledger(
            restarts={k: RestartRecord(**_fields(v)) for k, v in restarts.items()},
            rollouts={"shop/web": rec} if rec is not None else {},
        )

    snapshot = observed(*containers)
    fast = plan([desired], snapshot, health, ledger(), NOW, busy)  # type: ignore[arg-type]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plan_module._Planner, "plan_converged", lambda *a, **k: False)
        full = plan([desired], snapshot, health, ledger(), NOW, busy)  # type: ignore[arg-type]
    assert fast.render() == full.render()
    assert fast.steps == full.steps
    assert fast.status == full.status
    assert fast.rollouts == full.rollouts
    assert fast.requeue_after == full.requeue_after


def test_fast_path_is_taken_for_a_converged_pod() -> None:
    """The property above would pass with a fast path never taken: check it is."""
    desired = stack(pod(replicas=2, revision=REV))
    snapshot = observed(container("web", 0, revision=REV), container("web", 1, revision=REV))
    calls: list[bool] = []
    original = plan_module._Planner.plan_converged

    def spy(self: Any, *a: Any) -> bool:
        calls.append(original(self, *a))
        return calls[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plan_module._Planner, "plan_converged", spy)
        p = plan([desired], snapshot, {}, Ledger(), NOW)
    assert calls == [True]
    assert p.steps == ()
    (status,) = p.rollouts
    assert (status.state, status.new_ready, status.new_available) == ("complete", 2, 2)


def test_fast_path_counts_a_replica_being_killed_as_the_full_path_does() -> None:
    desired = stack(pod(replicas=1, revision=REV, readiness=True))
    c = container("web", 0, revision=REV, cid="c0")
    health = {"c0": ContainerHealth(started=True, ready=True, started_at=c.started_at)}
    fast = plan([desired], observed(c), health, Ledger(), NOW, {"c0": "killing"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plan_module._Planner, "plan_converged", lambda *a, **k: False)
        full = plan([desired], observed(c), health, Ledger(), NOW, {"c0": "killing"})
    assert fast.rollouts == full.rollouts
    assert fast.status == full.status
