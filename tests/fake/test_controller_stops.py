"""A stop that takes its whole grace must not hold up other decisions.

apply() runs a plan's steps and the controller loop waits for all of them, so a
stop that takes its whole grace (a liveness kill of a process that ignores
SIGTERM, a scale-down) holds up every other decision: a crashed replica
elsewhere is not restarted until that stop returns. The integration story is
tests/integration/test_health.py::test_liveness_kill_waits_stop_grace_without_holding_up_other_pods.
"""

from __future__ import annotations

import time

import anyio
import msgspec
import pytest

from podctl.reconcile.controller import Controller
from podctl.runtime.fake import FakeRuntime
from tests.unit.planbuild import pod, stack

pytestmark = pytest.mark.anyio


async def test_a_slow_stop_does_not_hold_up_restarting_another_pod() -> None:
    rt = FakeRuntime()
    shop = stack(pod("a", replicas=1), pod("b", replicas=1))
    controller = Controller(rt, [shop], resync_s=3600)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(controller.run)
            await rt.wait_subscribers(1)
            await controller.wait_converged()
            # a's container takes 5 s to stop (it ignores SIGTERM; its grace is long).
            rt.slow("stop_container", 5.0)
            pods = (msgspec.structs.replace(shop.pods[0], replicas=0), shop.pods[1])
            controller.set_stacks([msgspec.structs.replace(shop, pods=pods)])
            await anyio.sleep(0.3)  # the scale-down's stop is under way
            (b,) = [c for c in rt.running("shop") if c.labels["io.podctl.pod"] == "b"]
            crashed = time.monotonic()
            rt.crash(b.id)
            # b's first restart waits its 1 s back-off, then should happen at once.
            while not [c for c in rt.running("shop") if c.labels["io.podctl.pod"] == "b"]:
                await anyio.sleep(0.05)
            took = time.monotonic() - crashed
            tg.cancel_scope.cancel()
    assert took < 3.0, f"b restarted {took:.1f}s after its crash, behind a's 5 s stop"
