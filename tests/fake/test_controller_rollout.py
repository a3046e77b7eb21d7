"""Rollouts through the controller against FakeRuntime: the automatic rollback runs
the revision it returns to (templates from the revision history, containers built
from the override's template), and rollout records follow the stacks run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import msgspec
import pytest

from podctl import labels
from podctl.health.model import ContainerHealth
from podctl.reconcile.controller import Controller
from podctl.reconcile.ledger import Ledger, RolloutRecord, rollout_key
from podctl.runtime.fake import FakeRuntime
from podctl.spec.model import HttpProbe, ProbeSpec, RolloutSpec
from tests.unit.planbuild import pod, stack, template

if TYPE_CHECKING:
    from collections.abc import Iterable

    from podctl.health.model import HealthView, ProbeTarget
    from podctl.spec.model import ContainerTemplate

pytestmark = pytest.mark.anyio

R1, R2 = "rev1aaaaaaaa", "rev2bbbbbbbb"
START = 10_000.0


async def settle(c: Controller, passes: int = 20) -> None:
    """Passes until one plans nothing (bounded: a held rollout keeps its steps)."""
    with anyio.fail_after(10):
        for _ in range(passes):
            await c.reconcile_once()
            if not c.last_plan.steps:
                return


def revisions(rt: FakeRuntime) -> list[str]:
    return sorted(c.labels[labels.REVISION] for c in rt.running("shop"))


def _failing_edit() -> tuple[Controller, FakeRuntime, list[float]]:
    """rev1 runs; the file moves to rev2 (another image), whose surge replica exits at
    once and is not restarted (`restart: never`): it never becomes available."""
    now = [START]
    rt = FakeRuntime(clock=lambda: now[0], call_timeout_s=0.5)
    spec = RolloutSpec(progress_deadline_s=60.0)
    v1 = pod(replicas=2, revision=R1, restart="never", rollout=spec)
    v2 = pod(replicas=2, revision=R2, restart="never", rollout=spec, image="busybox:1.37")
    rt.add_image("busybox:1.37")
    c = Controller(rt, [stack(v1)], clock=lambda: now[0], templates=lambda: {R1: template()})
    c._test_next = stack(v2)  # type: ignore[attr-defined]
    return c, rt, now


async def start_failing_rollout(c: Controller, rt: FakeRuntime) -> None:
    await settle(c)
    assert revisions(rt) == [R1, R1]
    c.set_stacks([c._test_next])  # type: ignore[attr-defined]
    await c.reconcile_once()  # RolloutStarted and the surge replica
    (new,) = [x for x in rt.running("shop") if x.labels[labels.REVISION] == R2]
    rt.crash(new.id, exit_code=1)
    await settle(c)
    assert revisions(rt) == [R1, R1]  # the old ones stay while the new one is down
    assert c.last_plan.rollouts[0].state == "progressing"


def all_revisions(rt: FakeRuntime) -> list[str]:
    return sorted(x.labels[labels.REVISION] for x in rt.containers.values() if x.labelled)


async def test_a_failed_rollout_rolls_back_to_the_revision_from_the_history() -> None:
    c, rt, now = _failing_edit()
    await start_failing_rollout(c, rt)
    now[0] += 61.0
    await settle(c)
    reasons = [e.reason for e in c.events.history()]
    assert "RolloutFailed" in reasons and "RolledBack" in reasons
    assert all_revisions(rt) == [R1, R1]  # the failed replica went; the old ones stayed
    status = c.last_plan.rollouts[0]
    assert (status.state, status.override, status.revision) == ("rolled-back", "rollback", R1)

    # A replica lost now is recreated from the override's template (rev1's image and
    # revision label), not from the file's (rev2).
    victim = rt.running("shop")[0]
    rt.delete(victim.id)
    await settle(c)
    assert revisions(rt) == [R1, R1]
    (replacement,) = [
        x for x in rt.running("shop") if x.spec is not None and x.started_at == now[0]
    ]
    assert replacement.image == template().image
    assert replacement.labels[labels.REVISION] == R1


async def test_without_the_history_template_the_failed_rollout_is_held() -> None:
    c, rt, now = _failing_edit()
    c.templates = dict  # no revision history: rev1's template is not known
    await start_failing_rollout(c, rt)
    now[0] += 61.0
    await settle(c)
    status = c.last_plan.rollouts[0]
    assert status.state == "failed"
    assert "not rolled back: no fully available revision" in status.message
    assert all_revisions(rt) == [R1, R1, R2]  # held: nothing removed


async def test_rollout_records_of_pods_that_left_the_stacks_are_forgotten() -> None:
    rt = FakeRuntime(call_timeout_s=0.5)
    rec = RolloutRecord(revision=R1, file_revision=R1, started_at=1.0, status="complete")
    ledger = Ledger(
        rollouts={
            rollout_key("shop", "web"): rec,
            rollout_key("shop", "gone"): rec,
            rollout_key("other", "api"): rec,  # another podctl's stack: not ours to drop
        }
    )
    saved: list[set[str]] = []

    async def save(led: Ledger) -> None:
        saved.append(set(led.rollouts))

    c = Controller(rt, [stack(pod(replicas=1, revision=R1))], ledger=ledger, on_ledger_change=save)
    await c.reconcile_once()
    assert set(ledger.rollouts) == {"shop/web", "other/api"}
    assert saved and saved[0] == {"shop/web", "other/api"}
    # A pod removed from the file later goes too.
    c.set_stacks([stack(pod("api", replicas=1, revision=R1))])
    await c.reconcile_once()
    assert set(ledger.rollouts) == {"other/api"}


class RecordingProber:
    """Keeps the targets of the latest sync; every container listed is ready."""

    def __init__(self) -> None:
        self.targets: dict[str, ProbeTarget] = {}

    def sync(self, targets: Iterable[ProbeTarget]) -> None:
        self.targets = {t.container_id: t for t in targets}

    def view(self) -> HealthView:
        return {
            cid: ContainerHealth(started=True, ready=True, started_at=t.started_at)
            for cid, t in self.targets.items()
        }


def _probe_path(t: ProbeTarget) -> str | None:
    if t.readiness is None:
        return None
    check = t.readiness.check
    return check.path if isinstance(check, HttpProbe) else None


async def test_old_replicas_are_probed_with_their_own_revision_probes() -> None:
    # rev1 is ready on /v1, rev2 on /v2: mid-rollout, probing rev1's replicas on /v2
    # would take them out of every table and break the ready floor.
    def probed(path: str) -> ContainerTemplate:
        check = HttpProbe(port=80, path=path)
        return msgspec.structs.replace(template(), readiness=ProbeSpec(check=check))

    t1, t2 = probed("/v1"), probed("/v2")
    now = [START]
    rt = FakeRuntime(clock=lambda: now[0], call_timeout_s=0.5)
    v1 = msgspec.structs.replace(pod(replicas=2, revision=R1), template=t1)
    v2 = msgspec.structs.replace(pod(replicas=2, revision=R2), template=t2)
    prober = RecordingProber()
    c = Controller(rt, [stack(v1)], clock=lambda: now[0], prober=prober, templates=lambda: {R1: t1})
    await settle(c)
    assert sorted(map(_probe_path, prober.targets.values())) == ["/v1", "/v1"]

    c.set_stacks([stack(v2)])
    await c.reconcile_once()  # RolloutStarted: the record keeps rev1's template
    assert c.ledger.rollouts[rollout_key("shop", "web")].available[0].template == t1
    await c.reconcile_once()
    seen = {
        (x.labels[labels.REVISION], _probe_path(prober.targets[x.id]))
        for x in rt.running("shop")
        if x.id in prober.targets
    }
    assert seen == {(R1, "/v1"), (R2, "/v2")}  # mid-rollout: both, each with its own


async def test_an_unknown_old_revision_is_probed_from_the_history_or_the_file() -> None:
    now = [START]
    rt = FakeRuntime(clock=lambda: now[0], call_timeout_s=0.5)
    check = ProbeSpec(check=HttpProbe(port=80, path="/old"))
    old = msgspec.structs.replace(template(), readiness=check)
    v1 = msgspec.structs.replace(pod(replicas=1, revision=R1), template=old)
    prober = RecordingProber()
    c = Controller(rt, [stack(v1)], clock=lambda: now[0], prober=prober)
    await settle(c)
    # podctl restarts with the file at rev2 and no record: rev1's template comes
    # from the revision history when it has it, else the file's is the best guess.
    v2 = pod(replicas=1, revision=R2, readiness=True)
    c2 = Controller(
        rt, [stack(v2)], clock=lambda: now[0], prober=prober, templates=lambda: {R1: old}
    )
    c2.prober.sync(c2._probe_targets(await c2.observe()))
    assert list(map(_probe_path, prober.targets.values())) == ["/old"]
    c3 = Controller(rt, [stack(v2)], clock=lambda: now[0], prober=prober)
    c3.prober.sync(c3._probe_targets(await c3.observe()))
    (t,) = prober.targets.values()
    assert t.readiness is not None and not isinstance(t.readiness.check, HttpProbe)


async def test_the_proxys_failures_reach_the_planner_and_restart_min_ready() -> None:
    now = [START]
    rt = FakeRuntime(clock=lambda: now[0], call_timeout_s=0.5)
    spec = RolloutSpec(min_ready_s=5.0)
    failures: dict[str, float] = {}
    prober = RecordingProber()
    v1 = pod(replicas=1, revision=R1, rollout=spec)
    c = Controller(
        rt,
        [stack(v1)],
        clock=lambda: now[0],
        prober=prober,
        templates=lambda: {R1: template()},
        backend_failures=lambda: failures,
    )
    await settle(c)
    c.set_stacks([stack(pod(replicas=1, revision=R2, rollout=spec, image="busybox:1.37"))])
    rt.add_image("busybox:1.37")
    await settle(c)
    (new,) = [x for x in rt.running("shop") if x.labels[labels.REVISION] == R2]
    now[0] += 3.0
    failures[new.id] = now[0]  # the proxy could not connect to it: min_ready starts over
    now[0] += 3.0  # 6 s after its start, 3 s after the failure
    await settle(c)
    assert revisions(rt) == [R1, R2]
    assert c.last_plan.requeue_after == pytest.approx(2.0)  # woken when it can count
    now[0] += 2.0
    await settle(c)
    assert revisions(rt) == [R2]
    assert c.last_plan.rollouts[0].state == "complete"
