"""What podctl tells systemd: the STATUS line and when READY is due."""

from __future__ import annotations

import anyio
import msgspec
import pytest

from podctl.lifecycle import ServiceManager, Summary, summarize
from podctl.reconcile.steps import ReplicaStatus
from podctl.spec import load_stacks


def stacks(tmp_path: object) -> list[object]:
    from pathlib import Path

    path = Path(str(tmp_path)) / "s.yaml"
    path.write_text(
        "name: shop\npods:\n"
        "  web: {image: busybox:1.36, command: [sleep, '1'], replicas: 2}\n"
        "  job: {image: busybox:1.36, command: ['true'], restart: never}\n"
    )
    return list(load_stacks([path], environ={}))


def row(pod: str, replica: int, ready: bool, phase: str = "Running", reason: str | None = None):
    return ReplicaStatus(
        stack="shop", pod=pod, replica=replica, name=f"{pod}-{replica}", container_id="c",
        phase=phase, ready=ready, restarts=0, revision="r", image="i", reason=reason,
    )  # fmt: skip


def test_ready_needs_every_replica_and_the_engine(tmp_path: object) -> None:
    st = stacks(tmp_path)
    rows = [row("web", 0, True), row("web", 1, False, reason="Unhealthy: refused")]
    rows.append(row("job", 0, False, phase="Succeeded"))
    s = summarize(st, rows, engine_seen=True, engine_ok=True)  # type: ignore[arg-type]
    assert not s.ready
    assert s.text == "1 stack, 2/3 replicas ready; not ready: shop/web 1/2 (Unhealthy: refused)"
    rows[1] = msgspec.structs.replace(rows[1], ready=True, reason=None)
    s = summarize(st, rows, engine_seen=True, engine_ok=True)  # type: ignore[arg-type]
    assert s.ready and s.text == "1 stack, 3/3 replicas ready"
    s = summarize(st, rows, engine_seen=False, engine_ok=True)  # type: ignore[arg-type]
    assert not s.ready and s.text.startswith("waiting for the engine; ")
    down = summarize(
        st, rows, engine_seen=True, engine_ok=False, engine_error="no socket", pulling=True
    )  # type: ignore[arg-type]
    assert not down.ready
    assert (
        down.text
        == "engine unavailable: no socket; 1 stack, 3/3 replicas ready; pulling/building images"
    )


def test_no_stacks_is_ready_once_the_engine_answered() -> None:
    assert (
        summarize([], [], engine_seen=True, engine_ok=True).text == "0 stacks, 0/0 replicas ready"
    )
    assert summarize([], [], engine_seen=True, engine_ok=True).ready


class FakeNotifier:
    enabled = True
    watchdog_interval: float | None = None

    def __init__(self) -> None:
        self.sent: list[str] = []

    def ready(self, status: str | None = None) -> bool:
        self.sent.append(f"READY {status}")
        return True

    def status(self, text: str) -> bool:
        self.sent.append(f"STATUS {text}")
        return True

    def watchdog(self) -> bool:
        self.sent.append("WATCHDOG")
        return True

    def extend_timeout(self, usec: int) -> bool:
        self.sent.append(f"EXTEND {usec}")
        return True

    def reloading(self, status: str | None = None) -> bool:
        self.sent.append("RELOADING")
        return True

    def stopping(self, status: str | None = None) -> bool:
        self.sent.append("STOPPING")
        return True


@pytest.mark.anyio
async def test_ready_after_the_timeout_says_what_is_not_ready() -> None:
    notifier = FakeNotifier()
    not_ready = Summary(ready=False, text="1 stack, 0/1 replicas ready", not_ready=("s/p 0/1",))
    manager = ServiceManager(
        notifier,  # type: ignore[arg-type]
        lambda: not_ready,
        ready_timeout_s=0.3,
        pulling=lambda: True,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(manager.run)
        with anyio.fail_after(10):
            while not manager.ready_sent:
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert notifier.sent[0] == "STATUS 1 stack, 0/1 replicas ready"
    assert notifier.sent[1] == "EXTEND 30000000"  # pulling before READY
    assert notifier.sent[-1] == "READY not ready after 0.3 s: 1 stack, 0/1 replicas ready"


@pytest.mark.anyio
async def test_ready_once_everything_is_and_status_only_on_change() -> None:
    notifier = FakeNotifier()
    current = [Summary(ready=False, text="0/1")]
    manager = ServiceManager(notifier, lambda: current[0])  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        await tg.start(manager.run)
        manager.changed()
        await anyio.wait_all_tasks_blocked()
        current[0] = Summary(ready=True, text="1/1")
        manager.changed()
        with anyio.fail_after(10):
            while not manager.ready_sent:
                await anyio.sleep(0.01)
        manager.changed()
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert notifier.sent == ["STATUS 0/1", "STATUS 1/1", "READY 1/1"]
