"""DockerRuntime against the real engine: labels, states, exec, logs, events, errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from podctl import labels
from podctl.runtime import (
    ContainerSpec,
    EngineError,
    EngineEvent,
    EngineUnavailable,
    ImagePullError,
    NotFound,
)
from podctl.runtime.docker import DockerRuntime
from podctl.runtime.engine_json import stack_network_name
from podctl.runtime.errors import Conflict

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

BUSYBOX = "busybox:1.36"
# PID 1 exits on SIGTERM: `sh` as PID 1 ignores signals it has no trap for.
TERMINATES = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
IGNORES_TERM = ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]


def docker_inspect(object_id: str) -> dict[str, Any]:
    out = subprocess.run(
        ["docker", "inspect", object_id], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, Any] = json.loads(out)[0]
    return result


def make_spec(stack: str, name: str, command: list[str], **kw: Any) -> ContainerSpec:
    return ContainerSpec(
        name=f"{stack}-{name}",
        image=BUSYBOX,
        labels={labels.STACK: stack, labels.POD: name, labels.REPLICA: "0"},
        network=stack_network_name(stack),
        command=command,
        **kw,
    )


async def run_container(
    rt: DockerRuntime, stack: str, name: str, command: list[str], **kw: Any
) -> str:
    cid = await rt.create_container(make_spec(stack, name, command, **kw))
    await rt.start_container(cid)
    return cid


@pytest.fixture
async def stack_network(docker_runtime: DockerRuntime, stack_name: str) -> AsyncIterator[str]:
    """The stack's network; when the test ends, its containers and the network are
    removed through the runtime under test (the autouse fixture fails a leak)."""
    rt = docker_runtime
    net = await rt.create_network(
        stack_network_name(stack_name), {labels.STACK: stack_name, labels.KIND: "network"}
    )
    yield net.id
    for c in await rt.list_containers(stack_name):
        await rt.remove_container(c.id)
    for n in await rt.list_networks(stack_name):
        await rt.remove_network(n.id)


async def test_network_and_container_carry_labels_and_limits(
    docker_runtime: DockerRuntime, stack_name: str, stack_network: str
) -> None:
    rt = docker_runtime
    [net] = await rt.list_networks(stack_name)
    assert net.id == stack_network
    assert net.name == stack_network_name(stack_name)
    assert net.labels[labels.STACK] == stack_name
    assert net.subnet and net.gateway

    cid = await run_container(
        rt,
        stack_name,
        "web",
        TERMINATES,
        env=["MODE=prod"],
        network_aliases=["web"],
        nano_cpus=250_000_000,
        memory_bytes=64 * 2**20,
        pids_limit=100,
        extra_hosts=["db:10.0.0.9"],
        stop_grace_s=3,
    )
    [info] = await rt.list_containers(stack_name)
    assert info.id == cid
    assert info.name == f"{stack_name}-web"
    assert info.state == "running"
    assert info.labels[labels.POD] == "web"
    assert info.image == BUSYBOX
    assert info.exit_code is None
    assert info.started_at is not None and abs(info.started_at - time.time()) < 60
    assert info.finished_at is None
    prefix = net.subnet.rsplit(".", 2)[0]
    assert info.ip is not None and info.ip.startswith(prefix)
    assert await rt.inspect_container(cid) == info
    assert info in await rt.list_containers()

    raw = docker_inspect(cid)
    host = raw["HostConfig"]
    assert host["RestartPolicy"]["Name"] == "no"
    assert host["NanoCpus"] == 250_000_000
    assert host["Memory"] == 64 * 2**20
    assert host["PidsLimit"] == 100
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["ExtraHosts"] == ["db:10.0.0.9"]
    assert raw["Config"]["StopTimeout"] == 3
    endpoint = raw["NetworkSettings"]["Networks"][stack_network_name(stack_name)]
    assert "web" in endpoint["Aliases"]


async def test_killed_container_is_listed_exited_with_its_exit_code(
    docker_runtime: DockerRuntime, stack_name: str, stack_network: str
) -> None:
    rt = docker_runtime
    cid = await run_container(rt, stack_name, "web", TERMINATES)
    await rt.list_containers(stack_name)
    await rt.kill_container(cid)
    with anyio.fail_after(10):
        while (info := await rt.inspect_container(cid)).state != "exited":
            await anyio.sleep(0.05)
    [listed] = await rt.list_containers(stack_name)
    assert listed.state == "exited"
    assert listed.exit_code == 137
    assert listed.ip is None
    assert listed.finished_at is not None and listed.started_at is not None
    assert listed.finished_at >= listed.started_at
    assert listed == info

    # Killing a container that is not running is a conflict, not a crash.
    with pytest.raises(Conflict, match="killing container"):
        await rt.kill_container(cid)


async def test_resync_inspects_only_containers_that_changed(
    docker_runtime: DockerRuntime,
    stack_name: str,
    stack_network: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rt = docker_runtime
    a = await run_container(rt, stack_name, "a", TERMINATES)
    b = await run_container(rt, stack_name, "b", TERMINATES)
    assert len(await rt.list_containers(stack_name)) == 2

    inspected: list[str] = []
    real_inspect = rt.inspect_container

    async def counting_inspect(container_id: str) -> Any:
        inspected.append(container_id)
        return await real_inspect(container_id)

    monkeypatch.setattr(rt, "inspect_container", counting_inspect)
    assert len(await rt.list_containers(stack_name)) == 2
    assert inspected == []

    await rt.kill_container(b)
    with anyio.fail_after(10):
        while True:
            listed = {c.id: c for c in await rt.list_containers(stack_name)}
            if listed[b].state == "exited":
                break
            await anyio.sleep(0.05)
    assert a not in inspected
    assert listed[b].exit_code == 137


async def test_stop_honours_the_grace_period(
    docker_runtime: DockerRuntime, stack_name: str, stack_network: str
) -> None:
    rt = docker_runtime
    polite = await run_container(rt, stack_name, "polite", TERMINATES)
    stubborn = await run_container(rt, stack_name, "stubborn", IGNORES_TERM)

    started = time.monotonic()
    await rt.stop_container(polite, grace_s=10)
    assert time.monotonic() - started < 5
    assert (await rt.inspect_container(polite)).exit_code == 0

    started = time.monotonic()
    await rt.stop_container(stubborn, grace_s=1)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 8
    info = await rt.inspect_container(stubborn)
    assert info.state == "exited"
    assert info.exit_code == 137


async def test_stops_wait_out_their_graces_together_not_in_batches(
    stack_name: str, stack_network: str, seeded_images: list[str]
) -> None:
    # A runtime allowing only 2 engine calls in flight: were a stop to hold a slot
    # for its grace, 12 stubborn containers would be killed in 6 waves, the last
    # one 6 graces (12 s) after the stops began.
    n, grace = 12, 2.0
    async with DockerRuntime(concurrency=2) as rt:
        ids = [await run_container(rt, stack_name, f"stubborn-{i}", IGNORES_TERM) for i in range(n)]
        took: list[float] = []

        async def stop(cid: str) -> None:
            t0 = time.monotonic()
            await rt.stop_container(cid, grace_s=grace)
            took.append(time.monotonic() - t0)

        began = time.time()
        with anyio.fail_after(90):
            async with anyio.create_task_group() as tg:
                for cid in ids:
                    tg.start_soon(stop, cid)
        # Each one waited out its grace (it ignores SIGTERM), then was killed ...
        assert len(took) == n and min(took) >= grace - 0.1
        infos = [await rt.inspect_container(cid) for cid in ids]
        assert {(i.state, i.exit_code) for i in infos} == {("exited", 137)}
        # ... all of them at the end of one grace, not wave after wave. (When the
        # processes died, as the engine recorded it: how long the engine then takes
        # to release each container's network depends on its load, not on podctl.)
        died = sorted(i.finished_at - began for i in infos if i.finished_at is not None)
        assert len(died) == n
        assert died[0] >= grace - 0.2
        assert died[-1] < 3.5 * grace, f"the last of {n} died {died[-1]:.1f}s after the stops"
        # Stopping what has already stopped, or is gone, is not an error.
        await rt.stop_container(ids[0], grace_s=grace)
        await rt.remove_container(ids[0])
        await rt.stop_container(ids[0], grace_s=grace)


async def test_exec_returns_output_and_exit_code(
    docker_runtime: DockerRuntime, stack_name: str, stack_network: str
) -> None:
    rt = docker_runtime
    cid = await run_container(rt, stack_name, "web", TERMINATES)
    result = await rt.exec(cid, ["sh", "-c", "echo out; echo err >&2; exit 3"], timeout_s=10)
    assert result.exit_code == 3
    assert b"out\n" in result.output and b"err\n" in result.output
    ok = await rt.exec(cid, ["true"], timeout_s=10)
    assert ok.exit_code == 0 and ok.output == b""


async def test_hung_exec_times_out_instead_of_hanging(
    docker_runtime: DockerRuntime, stack_name: str, stack_network: str
) -> None:
    rt = docker_runtime
    cid = await run_container(rt, stack_name, "web", TERMINATES)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="sleep 30"):
        await rt.exec(cid, ["sleep", "30"], timeout_s=0.5)
    assert time.monotonic() - started < 5
    # The runtime is still usable afterwards.
    assert (await rt.exec(cid, ["true"], timeout_s=10)).exit_code == 0


async def test_exec_in_a_stopped_container_is_an_engine_error(
    docker_runtime: DockerRuntime, stack_name: str, stack_network: str
) -> None:
    rt = docker_runtime
    cid = await rt.create_container(make_spec(stack_name, "web", TERMINATES))
    with pytest.raises(EngineError, match=r"running `true` in container"):
        await rt.exec(cid, ["true"], timeout_s=5)


async def test_logs_demultiplex_stdout_and_stderr_and_follow(
    docker_runtime: DockerRuntime, stack_name: str, stack_network: str
) -> None:
    rt = docker_runtime
    cid = await run_container(
        rt,
        stack_name,
        "web",
        # stdout and stderr are separate pipes: only lines apart in time keep their order.
        ["sh", "-c", "echo one; sleep 0.2; echo two >&2; sleep 0.8; echo three; sleep 100"],
    )
    with anyio.fail_after(10):
        while True:
            async with aclosing(rt.logs(cid)) as stream:
                text = b"".join([chunk async for chunk in stream])
            if b"two" in text:
                break
            await anyio.sleep(0.05)
    assert text.startswith(b"one\ntwo\n")

    async with aclosing(rt.logs(cid, tail=1)) as stream:
        last = b"".join([chunk async for chunk in stream])
    assert last in (b"two\n", b"three\n")

    seen = b""
    with anyio.fail_after(10):
        async with aclosing(rt.logs(cid, follow=True)) as stream:
            async for chunk in stream:
                seen += chunk
                if b"three" in seen:
                    break
    assert seen == b"one\ntwo\nthree\n"


async def test_followed_logs_end_when_the_container_exits(
    docker_runtime: DockerRuntime, stack_name: str, stack_network: str
) -> None:
    rt = docker_runtime
    cid = await run_container(rt, stack_name, "job", ["sh", "-c", "sleep 0.5; echo done"])
    with anyio.fail_after(10):
        async with aclosing(rt.logs(cid, follow=True)) as stream:
            text = b"".join([chunk async for chunk in stream])
    assert text == b"done\n"


async def test_events_report_start_and_die_of_labelled_containers(
    docker_runtime: DockerRuntime, stack_name: str, stack_network: str
) -> None:
    rt = docker_runtime
    events: list[EngineEvent] = []
    subscribed = anyio.Event()

    async def watch() -> None:
        async with aclosing(rt.events()) as stream:
            subscribed.set()
            async for event in stream:
                if event.labels.get(labels.STACK) == stack_name:
                    events.append(event)
                    if event.action == "die":
                        return

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await subscribed.wait()
            # The subscription opens on the first read: give it a moment to reach the engine.
            await anyio.sleep(0.5)
            cid = await run_container(rt, stack_name, "web", TERMINATES)
            await rt.kill_container(cid)

    actions = [e.action for e in events if e.id == cid]
    assert "start" in actions and "die" in actions
    assert actions.index("start") < actions.index("die")
    die = next(e for e in events if e.action == "die")
    assert die.kind == "container"
    assert abs(die.time - time.time()) < 60


async def test_a_tiny_timeout_raises_engine_unavailable(seeded_images: list[str]) -> None:
    async with DockerRuntime(call_timeout_s=1e-6) as rt:
        with pytest.raises(EngineUnavailable, match="did not answer within"):
            await rt.list_containers()


async def test_a_missing_socket_raises_engine_unavailable(tmp_path: Path) -> None:
    async with DockerRuntime(str(tmp_path / "nothing.sock")) as rt:
        with pytest.raises(EngineUnavailable, match="listing podctl containers") as err:
            await rt.list_containers()
    assert "dockerd" in err.value.hint


async def test_a_stop_on_a_silent_engine_ends_within_grace_plus_a_call(tmp_path: Path) -> None:
    """An engine that accepts the stop and never answers: the stop still ends, with
    EngineUnavailable, once the grace and an ordinary call's deadline are over."""
    sock = tmp_path / "silent.sock"

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            pass  # read the request, never answer
        writer.close()

    server = await asyncio.start_unix_server(swallow, str(sock))
    async with server, DockerRuntime(str(sock), call_timeout_s=0.5) as rt:
        started = time.monotonic()
        with pytest.raises(EngineUnavailable, match="stopping container abc"):
            await rt.stop_container("abc", grace_s=1)
        took = time.monotonic() - started
    assert 1.4 <= took < 5


async def test_pull_of_a_missing_image_names_it(docker_runtime: DockerRuntime) -> None:
    ref = "podctl-test/does-not-exist:nope"
    assert not await docker_runtime.image_exists(ref)
    with pytest.raises(ImagePullError, match="pulling image podctl-test/does-not-exist:nope"):
        await docker_runtime.pull_image(ref)


async def test_build_from_a_dockerfile_context(
    docker_runtime: DockerRuntime, stack_name: str, tmp_path: Path
) -> None:
    rt = docker_runtime
    (tmp_path / "Dockerfile").write_text(
        f"FROM {BUSYBOX}\nCOPY index.html /www/index.html\nRUN echo built > /built\n"
    )
    (tmp_path / "index.html").write_text("hello\n")
    (tmp_path / ".dockerignore").write_text("secret.txt\n")
    (tmp_path / "secret.txt").write_text("do not send\n")
    tag = f"podctl-test-{stack_name}:ctx"
    try:
        await rt.build_image(str(tmp_path), tag, {labels.STACK: stack_name})
        assert await rt.image_exists(tag)
        assert docker_inspect(tag)["Config"]["Labels"][labels.STACK] == stack_name

        (tmp_path / "Dockerfile").write_text(f"FROM {BUSYBOX}\nRUN exit 7\n")
        with pytest.raises(EngineError, match=f"building image {tag}"):
            await rt.build_image(str(tmp_path), tag + "-bad", {})
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


async def test_unlabelled_containers_are_never_listed(
    docker_runtime: DockerRuntime, stack_name: str
) -> None:
    name = f"{stack_name}-unlabelled"
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--label", "other=1", BUSYBOX, "sleep", "60"],
        capture_output=True,
        check=True,
    )
    try:
        names = [c.name for c in await docker_runtime.list_containers()]
        assert name not in names
        assert await docker_runtime.list_containers(stack_name) == []
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


async def test_missing_and_conflicting_objects(
    docker_runtime: DockerRuntime, stack_name: str, stack_network: str
) -> None:
    rt = docker_runtime
    with pytest.raises(NotFound, match="inspecting container"):
        await rt.inspect_container("0" * 64)
    await rt.remove_container("0" * 64)  # already gone: not an error

    spec = make_spec(stack_name, "web", TERMINATES)
    cid = await rt.create_container(spec)
    with pytest.raises(Conflict, match=f"creating container {spec.name}"):
        await rt.create_container(spec)
    with pytest.raises(NotFound, match="No such image"):
        await rt.create_container(
            msgspec.structs.replace(make_spec(stack_name, "other", TERMINATES), image="nope/nope:1")
        )
    await rt.remove_container(cid)
    assert await rt.list_containers(stack_name) == []


async def test_volumes_are_created_listed_and_removed(
    docker_runtime: DockerRuntime, stack_name: str
) -> None:
    rt = docker_runtime
    name = f"{stack_name}_data"
    created = await rt.create_volume(name, {labels.STACK: stack_name}, None, {})
    assert created.name == name and created.mountpoint
    assert [v.name for v in await rt.list_volumes(stack_name)] == [name]
    await rt.remove_volume(name)
    await rt.remove_volume(name)
    assert await rt.list_volumes(stack_name) == []


async def test_network_is_removed_and_removal_is_idempotent(
    docker_runtime: DockerRuntime, stack_name: str, stack_network: str
) -> None:
    rt = docker_runtime
    await rt.remove_network(stack_network)
    await rt.remove_network(stack_network)
    assert await rt.list_networks(stack_name) == []


async def test_host_info_and_ping(docker_runtime: DockerRuntime) -> None:
    await docker_runtime.ping()
    info = await docker_runtime.host_info()
    assert info.ncpu >= 1
    assert info.mem_bytes > 0
    assert info.server_version
