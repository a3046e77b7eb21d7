"""A stop that takes its whole grace must not hold up other decisions.

apply() runs a plan's steps and the controller loop waits for all of them, so a
stop that takes its whole grace (a liveness kill of a process that ignores
SIGTERM, a scale-down) would hold up every other decision: a crashed replica
elsewhere would not be restarted until that stop returns. The integration story is
tests/integration/test_health.py::test_liveness_kill_waits_stop_grace_without_holding_up_other_pods.
"""

from __future__ import annotations

import anyio
import msgspec
import pytest
from anyio import wait_all_tasks_blocked

from podctl.reconcile.controller import Controller
from podctl.runtime.fake import FakeRuntime
from tests.unit.planbuild import pod, stack

pytestmark = pytest.mark.anyio


async def test_a_stop_that_never_ends_does_not_hold_up_restarting_another_pod() -> None:
    now = [1000.0]
    rt = FakeRuntime(clock=lambda: now[0], call_timeout_s=None)
    shop = stack(pod("a", replicas=1), pod("b", replicas=1))
    controller = Controller(rt, [shop], resync_s=3600, clock=lambda: now[0])
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(controller.run)
            await rt.wait_subscribers(1)
            await controller.wait_converged()
            # a's container does not stop until released (it ignores SIGTERM; its
            # grace is long).
            rt.hang("stop_container")
            pods = (msgspec.structs.replace(shop.pods[0], replicas=0), shop.pods[1])
            controller.set_stacks([msgspec.structs.replace(shop, pods=pods)])
            await wait_all_tasks_blocked()
            assert len(rt.calls_to("stop_container")) == 1  # the scale-down's stop hangs
            (b,) = [c for c in rt.running("shop") if c.labels["io.podctl.pod"] == "b"]
            rt.crash(b.id)
            await wait_all_tasks_blocked()
            # b's first restart waits its 1 s back-off (on the controller's clock).
            assert not [c for c in rt.running("shop") if c.labels["io.podctl.pod"] == "b"]
            now[0] += 1.5
            controller.wake()
            await wait_all_tasks_blocked()
            restarted = [c for c in rt.running("shop") if c.labels["io.podctl.pod"] == "b"]
            still_stopping = len(rt.calls_to("stop_container")) == 1 and rt.running("shop")
            rt.release()
            tg.cancel_scope.cancel()
    assert restarted, "b was not restarted while a's stop was under way"
    assert still_stopping
