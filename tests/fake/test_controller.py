"""The controller loop against FakeRuntime: convergence, self-healing, engine outages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from podctl import labels
from podctl.reconcile.controller import Controller, teardown
from podctl.runtime.errors import EngineUnavailable
from podctl.runtime.fake import FakeRuntime
from tests.unit.planbuild import pod, stack

pytestmark = pytest.mark.anyio


@pytest.fixture
async def fake() -> AsyncIterator[FakeRuntime]:
    rt = FakeRuntime(call_timeout_s=0.2)
    yield rt


async def converge(c: Controller, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while True:
            await c.reconcile_once()
            if not c.last_plan.steps and c.engine_ok:
                return


async def test_creates_network_then_replicas(fake: FakeRuntime) -> None:
    c = Controller(fake, [stack(pod(replicas=3))])
    await converge(c)
    assert len(fake.running("shop")) == 3
    creates = [x.method for x in fake.calls if x.method in ("create_network", "create_container")]
    assert creates[0] == "create_network"
    assert fake.violations == []


async def test_crashed_replica_is_restarted_after_backoff(fake: FakeRuntime) -> None:
    now = [1000.0]
    fake_clock = FakeRuntime(clock=lambda: now[0], call_timeout_s=0.2)
    c = Controller(fake_clock, [stack(pod(replicas=1))], clock=lambda: now[0])
    await converge(c)
    (victim,) = fake_clock.running("shop")
    fake_clock.crash(victim.id, exit_code=2)
    delay = await c.reconcile_once()
    assert c.last_plan.status[0].phase == "CrashLoopBackOff"
    assert delay == pytest.approx(1.0)
    now[0] += 1.0
    await converge(c)
    assert c.status()[0].restarts == 1
    assert len(fake_clock.running("shop")) == 1


async def test_engine_outage_is_reported_and_recovered(fake: FakeRuntime) -> None:
    c = Controller(fake, [stack(pod(replicas=2))])
    await converge(c)
    fake.engine_down()
    delay = await c.reconcile_once()
    assert not c.engine_ok and "engine" in c.engine_error.lower()
    assert delay > 0
    assert [e.reason for e in c.events.history()][-1] == "EngineUnavailable"
    # The last known status is still there for the CLI.
    assert len(c.status()) == 2
    fake.engine_up()
    await converge(c)
    assert c.engine_ok
    assert len(fake.running("shop")) == 2


async def test_hung_engine_call_times_out_instead_of_hanging(fake: FakeRuntime) -> None:
    c = Controller(fake, [stack(pod(replicas=1))])
    fake.hang("list_containers", times=1)
    with anyio.fail_after(3):
        await c.reconcile_once()
    assert not c.engine_ok
    await converge(c)
    assert c.engine_ok


async def test_adoption_creates_nothing(fake: FakeRuntime) -> None:
    desired = [stack(pod(replicas=3))]
    await converge(Controller(fake, desired))
    fake.clear_calls()
    again = Controller(fake, desired)  # a restarted podctl
    await converge(again)
    assert fake.calls_to("create_container") == []
    assert fake.calls_to("stop_container") == []


async def test_unlabelled_container_is_never_touched(fake: FakeRuntime) -> None:
    fake.add_foreign_container("bystander")
    c = Controller(fake, [stack(pod(replicas=1))])
    await converge(c)
    await teardown(fake, "shop")
    assert fake.violations == []
    assert fake.by_name("bystander").state == "running"


async def test_teardown_removes_network_last(fake: FakeRuntime) -> None:
    c = Controller(fake, [stack(pod(replicas=5))])
    await converge(c)
    fake.clear_calls()
    await teardown(fake, "shop", grace_s=0.1)
    methods = [x.method for x in fake.calls if x.method in ("remove_container", "remove_network")]
    assert methods[-1] == "remove_network"
    assert methods.count("remove_container") == 5
    assert fake.peak_in_flight <= 8
    assert not [x for x in fake.containers.values() if x.labels.get(labels.STACK) == "shop"]


async def test_events_wake_the_loop() -> None:
    now = [1000.0]
    fake = FakeRuntime(clock=lambda: now[0], call_timeout_s=None)
    c = Controller(fake, [stack(pod(replicas=1))], resync_s=3600, clock=lambda: now[0])
    async with anyio.create_task_group() as tg:
        await tg.start(c.run)
        with anyio.fail_after(5):
            await c.wait_converged()
            await anyio.wait_all_tasks_blocked()
            (victim,) = fake.running("shop")
            fake.kill(victim.id)
            await anyio.wait_all_tasks_blocked()
            # The die event woke a pass at once (the resync is an hour away): it saw
            # the crash and holds the restart for its 1 s back-off.
            assert [s.phase for s in c.status()] == ["CrashLoopBackOff"]
            now[0] += 1.5
            c.wake()  # the requeue timer, which runs on real time
            await anyio.wait_all_tasks_blocked()
            assert [s.restarts for s in c.status()] == [1]
            assert fake.running("shop")
        tg.cancel_scope.cancel()


async def test_failed_create_is_retried(fake: FakeRuntime) -> None:
    fake.fail("create_container", EngineUnavailable("creating", "boom"), times=1)
    c = Controller(fake, [stack(pod(replicas=1))])
    await converge(c)
    assert len(fake.running("shop")) == 1
    assert any(e.reason == "Failed" for e in c.events.history())


async def test_hung_engine_is_reported_while_the_loop_waits(fake: FakeRuntime) -> None:
    c = Controller(fake, [stack(pod(replicas=1))], engine_watch_s=0.05)
    async with anyio.create_task_group() as tg:
        await tg.start(c.run)
        with anyio.fail_after(5):
            await c.wait_converged()
            fake.hang("ping")
            fake.hang("list_containers")
            await c.wait_engine(ok=False)
            assert c.status()  # the last known state is still served
            fake.release()
            fake.clear_faults()
            await c.wait_engine(ok=True)
        tg.cancel_scope.cancel()


async def test_containers_the_engine_stopped_as_it_restarted_are_not_crashes() -> None:
    # dockerd restarting (no live-restore) stops every container: podctl starts them
    # again at once when the engine is back, without back-off or a restart counted.
    now = [1000.0]
    fake = FakeRuntime(clock=lambda: now[0], call_timeout_s=0.2)
    c = Controller(fake, [stack(pod(replicas=2))], clock=lambda: now[0])
    await converge(c)
    fake.engine_down()
    await c.reconcile_once()
    assert not c.engine_ok
    now[0] += 3.0
    fake.engine_up()
    for victim in fake.running("shop"):
        fake.crash(victim.id, exit_code=143)  # the engine's own shutdown, seen when back
    now[0] += 5.0
    delay = await c.reconcile_once()
    assert c.engine_ok and c.engine_outage is not None
    assert {s.reason for s in c.last_plan.status} == {
        "Restarting (stopped by the engine's restart)"
    }
    assert delay == 0.0  # at once, no back-off
    await converge(c)
    assert len(fake.running("shop")) == 2
    assert [s.restarts for s in c.status()] == [0, 0]
    # A crash after the outage counts and backs off as usual.
    now[0] += 60.0
    fake.crash(fake.running("shop")[0].id, exit_code=1)
    await c.reconcile_once()
    assert "CrashLoopBackOff" in {s.phase for s in c.last_plan.status}


async def test_restarts_made_while_the_engine_was_shutting_down_are_taken_back() -> None:
    # dockerd stops containers before its API goes away: podctl sees exits and restarts
    # them (counted), then the engine kills them again and vanishes. Once it is back the
    # containers start again and the restarts made in between no longer count.
    now = [1000.0]
    fake = FakeRuntime(clock=lambda: now[0], call_timeout_s=0.2)
    c = Controller(fake, [stack(pod(replicas=2))], clock=lambda: now[0])
    await converge(c)
    for victim in fake.running("shop"):
        fake.crash(victim.id, exit_code=143)  # the engine shutting down, API still up
    now[0] += 1.0
    await converge(c)
    assert [s.restarts for s in c.status()] == [1, 1]
    now[0] += 1.0
    for victim in fake.running("shop"):
        fake.crash(victim.id, exit_code=137)
    fake.engine_down()
    await c.reconcile_once()
    now[0] += 5.0
    fake.engine_up()
    await converge(c)
    assert len(fake.running("shop")) == 2
    now[0] += 1.0
    await c.reconcile_once()
    assert [s.restarts for s in c.status()] == [0, 0]
