"""Which engine events wake the controller.

Every exec probe makes the engine emit `exec_create`, `exec_start` and `exec_die`
for the probed container, labelled with its stack. Nothing about the stack's
desired or observed state changes, so none of them may wake a pass: with 50
exec-probed replicas probed every second that would be a loop that never sleeps.
"""

from __future__ import annotations

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from podctl.reconcile.controller import Controller
from podctl.runtime.fake import FakeRuntime
from tests.unit.planbuild import pod, stack

pytestmark = pytest.mark.anyio


async def test_exec_events_do_not_wake_the_controller() -> None:
    rt = FakeRuntime()
    controller = Controller(rt, [stack(pod("web", replicas=1))], resync_s=3600)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(controller.run)
            await rt.wait_subscribers(1)
            await controller.wait_converged()
            await wait_all_tasks_blocked()  # the last pass's own events have settled
            before = controller.passes
            (web,) = rt.running("shop")
            # What an exec probe makes the engine say (FakeRuntime.exec emits nothing).
            for _ in range(10):
                for action in ("exec_create", "exec_start", "exec_die"):
                    rt._emit_container(web, action)
            await wait_all_tasks_blocked()  # every event was read, any pass has run
            passes = controller.passes - before
            # A state change does wake it: the check above could not pass by sleeping.
            rt._emit_container(web, "die")
            await wait_all_tasks_blocked()
            woken = controller.passes - before - passes
            tg.cancel_scope.cancel()
    assert passes == 0, f"{passes} reconcile passes for 30 exec events"
    assert woken >= 1
