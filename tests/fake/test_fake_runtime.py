"""FakeRuntime behaves like the engine where podctl can tell, and its fault hooks work."""

from __future__ import annotations

import time
from contextlib import aclosing

import anyio
import pytest

from podctl import labels
from podctl.runtime import (
    Conflict,
    ContainerInfo,
    ContainerSpec,
    EngineEvent,
    EngineUnavailable,
    ExecResult,
    ImagePullError,
    MountBinding,
    NotFound,
    Runtime,
)
from podctl.runtime.fake import FakeRuntime

pytestmark = pytest.mark.anyio

STACK = "shop"
NETWORK = "podctl_shop"


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def spec(name: str, stack: str = STACK, **kw: object) -> ContainerSpec:
    return ContainerSpec(
        name=name,
        image="busybox:1.36",
        labels={labels.STACK: stack, labels.POD: "web"},
        network=NETWORK,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(clock: Clock) -> FakeRuntime:
    rt = FakeRuntime(clock=clock, call_timeout_s=0.2)
    await rt.create_network(NETWORK, {labels.STACK: STACK})
    rt.clear_calls()
    return rt


async def run(fake: FakeRuntime, name: str) -> str:
    cid = await fake.create_container(spec(name))
    await fake.start_container(cid)
    return cid


def test_fake_runtime_is_a_runtime() -> None:
    rt: Runtime = FakeRuntime()
    assert rt is not None


async def test_container_lifecycle_uses_the_injected_clock(fake: FakeRuntime, clock: Clock) -> None:
    cid = await fake.create_container(spec("shop-web-0"))
    [created] = await fake.list_containers(STACK)
    assert created.state == "created" and created.ip is None and created.started_at is None

    clock.now = 1010.0
    await fake.start_container(cid)
    running = await fake.inspect_container(cid)
    assert running.state == "running"
    assert running.started_at == 1010.0
    assert running.ip is not None and running.ip.startswith("10.")
    assert running.exit_code is None

    clock.now = 1020.0
    fake.crash(cid, exit_code=3)
    crashed = await fake.inspect_container(cid)
    assert crashed.state == "exited"
    assert crashed.exit_code == 3
    assert crashed.finished_at == 1020.0
    assert crashed.ip is None

    await fake.remove_container(cid)
    await fake.remove_container(cid)  # gone already: not an error
    assert await fake.list_containers() == []
    with pytest.raises(NotFound):
        await fake.inspect_container(cid)


async def test_replicas_get_distinct_addresses_in_their_network_subnet(
    fake: FakeRuntime,
) -> None:
    [net] = await fake.list_networks(STACK)
    ids = [await run(fake, f"shop-web-{i}") for i in range(3)]
    ips = {(await fake.inspect_container(cid)).ip for cid in ids}
    assert len(ips) == 3
    assert net.gateway is not None and net.gateway not in ips
    prefix = net.gateway.rsplit(".", 1)[0]
    assert all(ip is not None and ip.rsplit(".", 1)[0] == prefix for ip in ips)


async def test_engine_rules_names_images_networks(fake: FakeRuntime) -> None:
    await fake.create_container(spec("shop-web-0"))
    with pytest.raises(Conflict, match="already in use"):
        await fake.create_container(spec("shop-web-0"))
    with pytest.raises(NotFound, match="No such image"):
        await fake.create_container(
            ContainerSpec(name="x", image="nope:1", labels={labels.STACK: STACK}, network=NETWORK)
        )
    with pytest.raises(NotFound, match="network"):
        await fake.create_container(
            ContainerSpec(
                name="y", image="busybox:1.36", labels={labels.STACK: STACK}, network="nonet"
            )
        )
    with pytest.raises(Conflict, match="already exists"):
        await fake.create_network(NETWORK, {labels.STACK: STACK})


async def test_network_with_running_containers_cannot_be_removed(fake: FakeRuntime) -> None:
    [net] = await fake.list_networks(STACK)
    cid = await run(fake, "shop-web-0")
    with pytest.raises(Conflict, match="active endpoints"):
        await fake.remove_network(net.id)
    await fake.remove_container(cid)
    await fake.remove_network(net.id)
    await fake.remove_network(net.id)
    assert await fake.list_networks() == []


async def test_volume_in_use_cannot_be_removed(fake: FakeRuntime) -> None:
    volume = await fake.create_volume("shop_data", {labels.STACK: STACK}, None, {})
    assert await fake.create_volume("shop_data", {labels.STACK: STACK}, None, {}) == volume
    cid = await fake.create_container(
        spec("shop-db-0", mounts=[MountBinding(type="volume", source="shop_data", target="/d")])
    )
    with pytest.raises(Conflict, match="in use"):
        await fake.remove_volume("shop_data")
    await fake.remove_container(cid)
    await fake.remove_volume("shop_data")
    assert await fake.list_volumes(STACK) == []


async def test_stop_kill_and_external_kill_set_exit_codes(fake: FakeRuntime) -> None:
    a, b, c = [await run(fake, f"shop-web-{i}") for i in range(3)]
    await fake.stop_container(a, grace_s=5)
    await fake.kill_container(b)
    fake.kill(c)
    codes = {i.id: i.exit_code for i in await fake.list_containers(STACK)}
    assert codes == {a: 143, b: 137, c: 137}
    await fake.stop_container(a, grace_s=5)  # already stopped: fine
    with pytest.raises(Conflict, match="not running"):
        await fake.kill_container(a)


async def test_stops_of_sigterm_ignoring_containers_wait_their_grace_side_by_side(
    fake: FakeRuntime,
) -> None:
    ids = [await run(fake, f"shop-web-{i}") for i in range(20)]
    for cid in ids:
        fake.containers[cid].ignores_sigterm = True
    fake.clear_calls()
    started = time.monotonic()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for cid in ids:
                tg.start_soon(fake.stop_container, cid, 0.5)
    took = time.monotonic() - started
    assert 0.45 <= took < 2.0  # one grace for all 20, not one after another
    assert {i.exit_code for i in await fake.list_containers(STACK)} == {137}
    assert fake.peak_in_flight == 0  # a stop is a wait, not a bounded engine call
    await fake.remove_container(ids[0])
    await fake.stop_container(ids[0], grace_s=0.5)  # gone: fine, like the engine's 404


async def test_only_labelled_containers_are_listed_and_touching_others_is_recorded(
    fake: FakeRuntime,
) -> None:
    foreign = fake.add_foreign_container("someone-elses", labels={"app": "x"})
    await run(fake, "shop-web-0")
    await run_other_stack(fake)
    assert [c.name for c in await fake.list_containers(STACK)] == ["shop-web-0"]
    assert {c.name for c in await fake.list_containers()} == {"shop-web-0", "blog-web-0"}
    assert fake.violations == []
    await fake.remove_container(foreign)
    assert fake.violations == ["remove_container on unlabelled container someone-elses"]


async def run_other_stack(fake: FakeRuntime) -> None:
    await fake.create_network("podctl_blog", {labels.STACK: "blog"})
    cid = await fake.create_container(
        ContainerSpec(
            name="blog-web-0",
            image="busybox:1.36",
            labels={labels.STACK: "blog"},
            network="podctl_blog",
        )
    )
    await fake.start_container(cid)


async def test_fail_hook_raises_the_given_error_the_given_number_of_times(
    fake: FakeRuntime,
) -> None:
    err = EngineUnavailable("creating container", "engine is gone")
    fake.fail("create_container", err, times=2)
    for _ in range(2):
        with pytest.raises(EngineUnavailable) as raised:
            await fake.create_container(spec("shop-web-0"))
        assert raised.value is err
    assert await fake.create_container(spec("shop-web-0"))
    assert len(fake.calls_to("create_container")) == 3


async def test_fail_hook_can_match_arguments_so_other_calls_are_unaffected(
    fake: FakeRuntime,
) -> None:
    fake.fail(
        "create_container",
        NotFound("creating container", "boom"),
        times=None,
        when=lambda args: args[0].name.startswith("shop-db"),
    )
    await fake.create_container(spec("shop-web-0"))
    for _ in range(3):
        with pytest.raises(NotFound):
            await fake.create_container(spec("shop-db-0"))


async def test_hang_raises_engine_unavailable_after_the_call_timeout(
    fake: FakeRuntime,
) -> None:
    fake.hang("list_containers")
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match="did not answer"):
        await fake.list_containers()
    assert 0.15 < time.monotonic() - started < 2
    # Other methods still answer.
    await fake.host_info()


async def test_hang_until_released(clock: Clock) -> None:
    fake = FakeRuntime(clock=clock, call_timeout_s=None)
    fake.hang("list_containers")
    results: list[list[ContainerInfo]] = []

    async def lister() -> None:
        results.append(await fake.list_containers())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lister)
            await anyio.sleep(0.05)
            assert results == []
            fake.release("list_containers")
    assert results == [[]]
    assert await fake.list_containers() == []  # the hang is gone


async def test_engine_down_fails_every_call_and_drops_event_streams(
    fake: FakeRuntime,
) -> None:
    ended = anyio.Event()

    async def watch() -> None:
        async with aclosing(fake.events()) as stream:
            async for _ in stream:
                pass
        ended.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await fake.wait_subscribers(1)
            fake.engine_down()
            await ended.wait()
    with pytest.raises(EngineUnavailable):
        await fake.ping()
    with pytest.raises(EngineUnavailable):
        await fake.list_containers()
    fake.engine_up()
    await fake.ping()


async def test_events_reach_every_subscriber_in_order(fake: FakeRuntime, clock: Clock) -> None:
    seen: dict[int, list[EngineEvent]] = {1: [], 2: []}

    async def watch(n: int) -> None:
        async with aclosing(fake.events()) as stream:
            async for event in stream:
                seen[n].append(event)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch, 1)
            tg.start_soon(watch, 2)
            await fake.wait_subscribers(2)
            clock.now = 2000.0
            cid = await run(fake, "shop-web-0")
            fake.crash(cid, 1)
            fake.add_foreign_container("unlabelled")  # no events for it
            await anyio.sleep(0.01)
            fake.drop_event_streams()
    for events in seen.values():
        assert [(e.kind, e.action) for e in events] == [
            ("container", "create"),
            ("container", "start"),
            ("container", "die"),
        ]
        assert all(e.id == cid and e.labels[labels.STACK] == STACK for e in events)
        assert all(e.time == 2000.0 for e in events)


async def test_images_present_absent_and_pull_failures(fake: FakeRuntime) -> None:
    assert await fake.image_exists("busybox:1.36")
    fake.remove_image("busybox:1.36")
    assert not await fake.image_exists("busybox:1.36")
    await fake.pull_image("busybox:1.36")
    assert await fake.image_exists("busybox:1.36")

    fake.fail_pull("private/app:2")
    with pytest.raises(ImagePullError, match="pulling image private/app:2"):
        await fake.pull_image("private/app:2")
    fake.allow_pull("private/app:2")
    await fake.pull_image("private/app:2")

    await fake.build_image("/ctx", "shop-web:abc123", {labels.STACK: STACK})
    assert await fake.image_exists("shop-web:abc123")


async def test_exec_uses_the_handler_and_times_out(fake: FakeRuntime) -> None:
    cid = await run(fake, "shop-web-0")
    assert (await fake.exec(cid, ["true"], 1)).exit_code == 0

    def handler(container: ContainerInfo, command: list[str]) -> ExecResult:
        return ExecResult(exit_code=len(command), output=container.name.encode())

    fake.on_exec(handler)
    assert await fake.exec(cid, ["a", "b"], 1) == ExecResult(exit_code=2, output=b"shop-web-0")

    async def hung(container: ContainerInfo, command: list[str]) -> ExecResult:
        await anyio.sleep_forever()
        raise AssertionError

    fake.on_exec(hung)
    with pytest.raises(TimeoutError, match="did not finish"):
        await fake.exec(cid, ["sleep"], 0.05)

    fake.crash(cid)
    with pytest.raises(Conflict, match="not running"):
        await fake.exec(cid, ["true"], 1)


async def test_logs_tail_and_follow(fake: FakeRuntime) -> None:
    cid = await run(fake, "shop-web-0")
    fake.write_log(cid, b"one\ntwo\n")
    async with aclosing(fake.logs(cid, tail=1)) as stream:
        assert [c async for c in stream] == [b"two\n"]

    received: list[bytes] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def follow() -> None:
                async with aclosing(fake.logs(cid, follow=True)) as stream:
                    async for chunk in stream:
                        received.append(chunk)

            tg.start_soon(follow)
            await anyio.sleep(0.01)
            fake.write_log(cid, b"three\n")
            await anyio.sleep(0.01)
            fake.crash(cid, 0)  # a followed stream ends with the container
    assert received == [b"one\ntwo\n", b"three\n"]


async def test_call_log_and_peak_concurrency(fake: FakeRuntime) -> None:
    fake.slow("create_container", 0.05)

    async def create(i: int) -> None:
        await fake.create_container(spec(f"shop-web-{i}"))

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(create, i)
    assert fake.peak_in_flight == 4
    assert sorted(c.args[0].name for c in fake.calls_to("create_container")) == [
        f"shop-web-{i}" for i in range(4)
    ]


async def test_host_info_is_configurable() -> None:
    fake = FakeRuntime(ncpu=2, mem_bytes=2**30)
    assert (await fake.host_info()).ncpu == 2
    fake.set_host(mem_bytes=2**31)
    info = await fake.host_info()
    assert (info.ncpu, info.mem_bytes) == (2, 2**31)
