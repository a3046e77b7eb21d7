"""ProberSupervisor: probe tasks per container, with a stub exec runtime and local servers.

Periods are 50 ms so the suite stays fast; every wait is bounded and wakes on
the thing it waits for (a store change, an event, an exec call), never a fixed
sleep that merely hopes the prober got there.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute

from podctl.health.model import ProbeTarget, is_ready
from podctl.health.prober import ProberSupervisor
from podctl.health.store import HealthStore
from podctl.runtime.protocol import ExecResult
from podctl.spec.model import ExecProbe, HttpProbe, ProbeSpec

pytestmark = pytest.mark.anyio

PERIOD = 0.05


class Poke:
    """Wakes a waiting test whenever something it may be waiting for happened."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def __call__(self, *_: object) -> None:
        self._event.set()

    async def until(self, pred: Callable[[], bool], timeout: float = 3.0) -> None:
        with anyio.fail_after(timeout):
            while not pred():
                await self._event.wait()
                self._event = anyio.Event()


class StubRuntime:
    """Exec answers per container: a callable giving the exit code, or None to hang."""

    def __init__(self, poke: Poke) -> None:
        self.poke = poke
        self.exit_codes: dict[str, Callable[[], int] | None] = {}
        self.calls: list[tuple[str, str, float]] = []  # (container, first arg, wall time)

    def calls_of(self, container_id: str, arg: str | None = None) -> list[float]:
        return [t for c, a, t in self.calls if c == container_id and (arg is None or a == arg)]

    async def exec(self, container_id: str, command: list[str], timeout_s: float) -> ExecResult:
        self.calls.append((container_id, command[0], time.time()))
        self.poke()
        answer = self.exit_codes[container_id]
        if answer is None:
            await anyio.sleep_forever()
        assert answer is not None
        code = answer()
        return ExecResult(exit_code=code, output=b"" if code == 0 else b"unhealthy\n")


def probe(
    cmd: str = "check",
    *,
    failure: int = 3,
    success: int = 1,
    delay: float = 0.0,
    timeout: float = 0.5,
) -> ProbeSpec:
    return ProbeSpec(
        check=ExecProbe(command=(cmd,)),
        initial_delay_s=delay,
        period_s=PERIOD,
        timeout_s=timeout,
        success_threshold=success,
        failure_threshold=failure,
    )


def target(cid: str, started_at: float | None = None, **probes: ProbeSpec) -> ProbeTarget:
    return ProbeTarget(
        container_id=cid,
        stack="shop",
        pod="web",
        ip="127.0.0.1",
        started_at=time.time() if started_at is None else started_at,
        **probes,  # type: ignore[arg-type]
    )


class Harness:
    def __init__(self) -> None:
        self.poke = Poke()
        self.changes: list[str] = []
        self.runtime = StubRuntime(self.poke)
        self.store = HealthStore(self._changed, on_event=self.poke)
        self.prober = ProberSupervisor(self.runtime, self.store)

    def _changed(self, stack: str) -> None:
        self.changes.append(stack)
        self.poke()

    def health(self, cid: str) -> tuple[bool, bool, str | None]:
        h = self.store.get(cid)
        assert h is not None
        return (h.started, h.ready, h.restart_reason)


@asynccontextmanager
async def running() -> AsyncIterator[Harness]:
    h = Harness()
    async with anyio.create_task_group() as tg:
        await tg.start(h.prober.run)
        yield h
        tg.cancel_scope.cancel()


def counter_script(*codes: int) -> Callable[[], int]:
    """Exit codes in order; the last one repeats."""
    it = iter(codes)
    last = codes[-1]

    def next_code() -> int:
        return next(it, last)

    return next_code


async def test_sync_before_run_is_an_error() -> None:
    h = Harness()
    with pytest.raises(RuntimeError):
        h.prober.sync([])


async def test_failing_liveness_sets_restart_reason_and_records_events() -> None:
    async with running() as h:
        h.runtime.exit_codes["c1"] = counter_script(0, 0, 1)
        h.prober.sync([target("c1", liveness=probe(failure=3))])
        assert h.health("c1") == (True, True, None)  # liveness only: ready at once
        await h.poke.until(lambda: h.health("c1")[2] == "LivenessFailed")
        assert h.changes == ["shop"]  # one change: ready -> restart wanted
        assert len(h.runtime.calls_of("c1")) == 5  # 2 ok + 3 failures, then on hold
        (event,) = h.store.events("c1")
        assert (event.kind, event.count) == ("Unhealthy", 3)
        assert event.message == "Liveness probe failed: exit code 1: unhealthy"
        assert [r.ok for r in h.store.results("c1")] == [True, True, False, False, False]
        health = h.store.get("c1")
        assert health is not None
        assert health.message == "Liveness probe failed 3 times: exit code 1: unhealthy"


async def test_startup_holds_off_liveness_and_readiness() -> None:
    async with running() as h:
        h.runtime.exit_codes["c1"] = lambda: 0 if len(h.runtime.calls_of("c1", "boot")) > 3 else 1
        h.prober.sync(
            [
                target(
                    "c1",
                    startup=probe("boot", failure=10),
                    liveness=probe("live", failure=1),
                    readiness=probe("ready"),
                )
            ]
        )
        assert h.health("c1") == (False, False, None)
        await h.poke.until(lambda: h.health("c1") == (True, True, None))
        boots = h.runtime.calls_of("c1", "boot")
        assert len(boots) == 4  # the 4th succeeded and the startup probe stopped
        first_other = min(h.runtime.calls_of("c1", "live") + h.runtime.calls_of("c1", "ready"))
        assert first_other >= boots[-1]
        # started, then ready: two separate changes; besides them only a probe's
        # first result while not ready (the shown reason changes), at most one per probe.
        assert 2 <= len(h.changes) <= 2 + 3, h.changes


async def test_startup_failing_threshold_times_asks_for_restart() -> None:
    async with running() as h:
        h.runtime.exit_codes["c1"] = lambda: 1
        h.prober.sync([target("c1", startup=probe(failure=2), liveness=probe())])
        await h.poke.until(lambda: h.health("c1")[2] == "StartupFailed")
        assert h.runtime.calls_of("c1", "check") == h.runtime.calls_of("c1")
        assert len(h.runtime.calls_of("c1")) == 2


async def test_no_probe_before_initial_delay() -> None:
    async with running() as h:
        h.runtime.exit_codes["c1"] = lambda: 0
        started = time.time()
        h.prober.sync([target("c1", started_at=started, readiness=probe(delay=0.2))])
        await h.poke.until(lambda: h.health("c1")[1])
        assert h.runtime.calls_of("c1")[0] >= started + 0.2


async def test_a_hanging_probe_does_not_stall_other_containers() -> None:
    async with running() as h:
        h.runtime.exit_codes["stuck"] = None  # exec never returns
        h.runtime.exit_codes["fine"] = lambda: 0
        h.prober.sync(
            [
                target("stuck", liveness=probe(failure=1, timeout=0.5)),
                target("fine", readiness=probe()),
            ]
        )
        start = anyio.current_time()
        await h.poke.until(lambda: len(h.runtime.calls_of("fine")) >= 6)
        # Six 50 ms periods of the healthy container went by while the stuck
        # one waited out its 500 ms timeout (probes taken in turn would need 3 s).
        assert anyio.current_time() - start < 1.0
        assert h.health("fine") == (True, True, None)
        assert h.health("stuck")[2] is None
        await h.poke.until(lambda: h.health("stuck")[2] == "LivenessFailed")
        assert [r.message for r in h.store.results("stuck")] == ["timeout after 500ms"]


async def test_containers_no_longer_listed_are_cancelled_and_forgotten() -> None:
    async with running() as h:
        h.runtime.exit_codes["c1"] = lambda: 0
        h.runtime.exit_codes["c2"] = lambda: 0
        h.prober.sync([target("c1", liveness=probe()), target("c2", liveness=probe())])
        await h.poke.until(lambda: len(h.runtime.calls_of("c1")) >= 2)
        h.prober.sync([target("c2", liveness=probe())])
        assert set(h.prober.probing()) == {"c2"}
        assert "c1" not in h.store
        stopped_at = len(h.runtime.calls_of("c1"))
        before = len(h.runtime.calls_of("c2"))
        await h.poke.until(lambda: len(h.runtime.calls_of("c2")) >= before + 3)
        assert len(h.runtime.calls_of("c1")) == stopped_at


async def test_sync_of_one_stack_leaves_other_stacks_alone() -> None:
    async with running() as h:
        h.runtime.exit_codes["c1"] = lambda: 0
        h.prober.sync([target("c1", liveness=probe())])
        h.prober.sync([], stack="other")
        assert set(h.prober.probing()) == {"c1"}
        h.prober.sync([], stack="shop")
        assert h.prober.probing() == {}


async def test_targets_without_probes_are_not_probed_but_recorded_ready() -> None:
    # Recorded, so the health view alone decides readiness whatever template (an old
    # revision's, mid-rollout) the planner or the router has for the pod.
    async with running() as h:
        t = target("c1")
        h.prober.sync([t])
        assert h.prober.probing() == {}
        health = h.store.view()["c1"]
        assert health.ready and health.started and health.started_at == t.started_at
        assert is_ready(health, started_at=t.started_at, gated=True)
        h.prober.sync([])
        assert h.store.view() == {}


async def test_a_restart_resets_probe_state() -> None:
    async with running() as h:
        h.runtime.exit_codes["c1"] = lambda: 1
        first = target("c1", liveness=probe(failure=2))
        h.prober.sync([first])
        await h.poke.until(lambda: h.health("c1")[2] == "LivenessFailed")
        h.prober.sync([first])  # same container, same start: stays on hold
        assert h.health("c1")[2] == "LivenessFailed"

        # the controller restarted it: a new start time means fresh thresholds
        h.runtime.exit_codes["c1"] = lambda: 0
        h.changes.clear()
        h.prober.sync([target("c1", started_at=time.time(), liveness=probe(failure=2))])
        assert h.health("c1") == (True, True, None)
        assert h.changes == ["shop"]  # restart_reason cleared is a change
        n = len(h.runtime.calls_of("c1"))
        await h.poke.until(lambda: len(h.runtime.calls_of("c1")) >= n + 3)
        assert h.health("c1") == (True, True, None)


async def test_http_readiness_flaps_with_the_server_and_notifies_only_on_change() -> None:
    answer = {"code": 503}
    hits = Poke()

    async def handle(stream: ByteStream) -> None:
        async with stream:
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += await stream.receive()
                await stream.send(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % answer["code"])
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
            hits()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    spec = ProbeSpec(
        check=HttpProbe(port=port, path="/ready"),
        period_s=PERIOD,
        timeout_s=0.5,
        failure_threshold=2,
    )
    async with anyio.create_task_group() as tg, running() as h:
        tg.start_soon(listener.serve, handle)
        h.prober.sync([target("c1", readiness=spec)])
        await h.poke.until(lambda: len(h.store.results("c1")) >= 3)
        assert h.health("c1") == (True, False, None)
        # Not ready from the start: only the first (failing) result is news, for the
        # reason shown; later failures change nothing.
        assert h.changes == ["shop"]

        answer["code"] = 200
        await h.poke.until(lambda: h.health("c1")[1])
        answer["code"] = 503
        await h.poke.until(lambda: not h.health("c1")[1])
        assert h.changes == ["shop", "shop", "shop"]
        health = h.store.get("c1")
        assert health is not None
        assert health.message == "Readiness probe failed: HTTP 503"
        assert health.restart_reason is None  # readiness never restarts
        tg.cancel_scope.cancel()
