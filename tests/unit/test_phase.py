"""One reading of a container's replica slot and phase, for the planner and the offline CLI."""

from __future__ import annotations

import msgspec
import pytest

from podctl import labels
from podctl.cli.offline import _row
from podctl.reconcile.ledger import Ledger
from podctl.reconcile.phase import engine_phase, exit_reason, replica_index
from podctl.reconcile.plan import plan
from tests.unit.planbuild import container, observed, pod, stack


def test_replica_index_from_the_label() -> None:
    assert replica_index({labels.REPLICA: "3"}) == 3
    assert replica_index({labels.REPLICA: "x"}) is None
    assert replica_index({}) is None


@pytest.mark.parametrize(
    ("state", "code", "phase"),
    [
        ("running", None, "Running"),
        ("paused", None, "Running"),
        ("restarting", None, "Running"),
        ("created", None, "Pending"),
        ("exited", 0, "Succeeded"),
        ("exited", 2, "Failed"),
        ("dead", None, "Failed"),
        ("removing", None, "Terminating"),
    ],
)
def test_engine_phase(state: str, code: int | None, phase: str) -> None:
    assert engine_phase(state, code) == phase  # type: ignore[arg-type]


def test_exit_reason() -> None:
    assert exit_reason(0) == "Completed (exit code 0)"
    assert exit_reason(137) == "Error (exit code 137)"


@pytest.mark.parametrize(
    ("state", "code"),
    [("running", None), ("paused", None), ("exited", 0), ("exited", 1), ("removing", None)],
)
def test_offline_and_planner_agree_when_nothing_is_restarted(state: str, code: int | None) -> None:
    # restart: never, no probes: the planner decides nothing beyond what the engine says,
    # so `podctl get pods` reads the same with or without a running podctl.
    c = container("job", 0, state=state, exit_code=code, finished_at=1500.0)
    (planned,) = plan(
        [stack(pod("job", replicas=1, restart="never"))], observed(c), {}, Ledger(), 2000.0
    ).status
    offline = _row(c)
    assert (offline.phase, offline.replica, offline.exit_code) == (
        planned.phase,
        planned.replica,
        planned.exit_code,
    )
    assert type(offline) is type(planned)


def test_offline_row_shape() -> None:
    c = container("web", 2, state="exited", exit_code=3, finished_at=1500.0)
    assert msgspec.to_builtins(_row(c)) == {
        "stack": "shop",
        "pod": "web",
        "replica": 2,
        "name": "shop-web-2-rev1aa",
        "container_id": c.id,
        "phase": "Failed",
        "ready": False,
        "restarts": 0,
        "revision": "rev1aaaaaaaa",
        "image": "busybox:1.36",
        "reason": "exit code 3; podctl is not running to restart it",
        "exit_code": 3,
        "ip": "10.0.0.4",
        "started_at": 1000.0,
    }
    unlabelled = msgspec.structs.replace(c, labels={labels.STACK: "shop"})
    assert _row(unlabelled).replica == 0
