"""The planner's work grows with the stack, not with its square.

Counted, not timed: every Python line and call and every C function call that
`plan()` makes (through `sys.settrace` and `sys.setprofile`), so the check is
exact and the same on a busy machine as on a quiet one. A path that scans every
container for every pod (as the planner once did) makes ten times the stack cost
a hundred times the work; linear paths cost about ten times. bench/plan times
the same shapes.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

import msgspec
import pytest

from podctl.health.model import ContainerHealth
from podctl.reconcile.ledger import Ledger
from podctl.reconcile.observed import ObservedState
from podctl.reconcile.plan import plan
from podctl.spec.model import DesiredStack, MountSpec
from tests.unit.planbuild import container, observed, pod, stack

NOW = 2000.0
# Ten times the stack: linear work grows ~10x, a pods x containers path ~100x.
MAX_GROWTH = 13.0


def calls(fn: Any) -> int:
    """Work done while running `fn()`: Python lines and calls (so loops inside a
    function count too) and calls of C functions."""
    count = 0

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count
        count += 1  # "call", "line", "return", "exception"
        return trace

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal count
        if event == "c_call":
            count += 1

    sys.settrace(trace)
    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
        sys.settrace(None)
    return count


def converged(
    pods: int, replicas: int, *, revision: str = "rev1aaaaaaaa"
) -> tuple[DesiredStack, ObservedState, dict[str, ContainerHealth]]:
    """Every replica running and ready; every pod but the first depends on the first."""
    names = [f"p{i:04d}" for i in range(pods)]
    desired = stack(
        *(
            pod(
                n,
                replicas=replicas,
                readiness=True,
                depends_on=(names[0],) if i else (),
                revision=revision,
            )
            for i, n in enumerate(names)
        )
    )
    cs = [
        container(n, r, cid=f"{n}-{r}", started_at=1000.0 + r)
        for n in names
        for r in range(replicas)
    ]
    health = {c.id: ContainerHealth(started=True, ready=True, started_at=c.started_at) for c in cs}
    return desired, observed(*cs, ncpu=1024), health


def converged_pass(pods: int, replicas: int) -> int:
    desired, obs, health = converged(pods, replicas)
    result = plan([desired], obs, health, Ledger(), NOW)
    assert result.steps == () and len(result.status) == pods * replicas
    return calls(lambda: plan([desired], obs, health, Ledger(), NOW))


def fresh_pass(pods: int) -> int:
    """Nothing runs yet: the image and every replica to create; only the last pod
    mounts a config (so the stack's config files are prepared once, for it)."""
    config = MountSpec(kind="config", source="site", target="/www/index.html")
    plain = [pod(f"p{i:04d}", replicas=1, cpus=0.001) for i in range(pods)]
    last = msgspec.structs.replace(
        plain[-1], template=msgspec.structs.replace(plain[-1].template, mounts=(config,))
    )
    desired = stack(*plain[:-1], last)
    obs = observed(images=(), ncpu=1024)
    result = plan([desired], obs, {}, Ledger(), NOW)
    assert result.render().count("RunContainer") == pods
    assert result.render().count("PrepareFiles") == 1
    return calls(lambda: plan([desired], obs, {}, Ledger(), NOW))


def rolling_pass(pods: int) -> int:
    """Every pod's template changed: each slot starts a surge replica."""
    _, obs, health = converged(pods, 1)
    desired, _, _ = converged(pods, 1, revision="rev2bbbbbbbb")
    result = plan([desired], obs, health, Ledger(), NOW)
    assert result.render().count("surge") == pods
    return calls(lambda: plan([desired], obs, health, Ledger(), NOW))


def new_snapshot_pass(pods: int, replicas: int) -> int:
    # A fresh snapshot per pass, as the controller takes: its index is built within.
    desired, obs, health = converged(pods, replicas)
    return calls(
        lambda: plan([desired], ObservedState(**msgspec.structs.asdict(obs)), health, Ledger(), NOW)
    )


@pytest.mark.parametrize(
    ("name", "small", "large"),
    [
        (
            "converged, pods x 1 replica",
            lambda: converged_pass(100, 1),
            lambda: converged_pass(1000, 1),
        ),
        (
            "converged, pods x 50 replicas",
            lambda: converged_pass(10, 50),
            lambda: converged_pass(100, 50),
        ),
        (
            "converged, 1 pod x replicas",
            lambda: converged_pass(1, 100),
            lambda: converged_pass(1, 1000),
        ),
        (
            "converged, a new snapshot each pass (indexed in the pass)",
            lambda: new_snapshot_pass(100, 1),
            lambda: new_snapshot_pass(1000, 1),
        ),
        ("fresh stack", lambda: fresh_pass(100), lambda: fresh_pass(1000)),
        ("rolling", lambda: rolling_pass(100), lambda: rolling_pass(1000)),
    ],
)
def test_plan_work_grows_linearly(name: str, small: Any, large: Any) -> None:
    a, b = small(), large()
    assert b <= MAX_GROWTH * a, (
        f"{name}: {a} units of work, then {b} for 10x the stack ({b / a:.1f}x)"
    )
