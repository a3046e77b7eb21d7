"""The dev session against FakeRuntime: what reaches the replicas, in which order,
and which events say so. Changes are handed to the session directly (as its notify
thread would), so nothing here waits on the file system's events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from podctl.dev.session import DevSession
from podctl.reconcile.events import EventLog
from podctl.reconcile.steps import ReplicaStatus
from podctl.runtime.fake import FakeRuntime
from podctl.runtime.protocol import ContainerInfo, ContainerSpec, ExecResult
from podctl.spec import load_stack
from podctl.spec.model import DesiredStack

pytestmark = pytest.mark.anyio


class Plan:
    def __init__(self, status: list[ReplicaStatus]) -> None:
        self.status = status


class Controller:
    """What the session uses of the controller: stacks, status, observers, wake."""

    def __init__(self, stacks: list[DesiredStack]) -> None:
        self.stacks = stacks
        self.rows: list[ReplicaStatus] = []
        self.observers: list[Any] = []
        self.woken = 0

    def status(self) -> list[ReplicaStatus]:
        return list(self.rows)

    def publish(self) -> None:
        for observer in self.observers:
            observer(self.stacks, None, Plan(list(self.rows)))

    def wake(self) -> None:
        self.woken += 1


class Stacks:
    def __init__(self, stacks: list[DesiredStack]) -> None:
        self.stacks = stacks
        self.handed: list[list[DesiredStack]] = []

    def load(self) -> list[DesiredStack]:
        return self.stacks

    async def loaded(self, stacks: list[DesiredStack]) -> None:
        self.handed.append(stacks)

    def invalid(self, exc: Exception) -> None:
        raise AssertionError(exc)


class Host:
    def __init__(self, runtime: FakeRuntime, stacks: list[DesiredStack]) -> None:
        self.runtime = runtime
        self.controller = Controller(stacks)
        self.events = EventLog(lambda: 0.0)
        self.stacks = Stacks(stacks)


def make_stack(tmp_path: Path, watch: str, replicas: int = 2) -> DesiredStack:
    site = tmp_path / "app" / "site"
    site.mkdir(parents=True, exist_ok=True)
    (tmp_path / "app" / "Dockerfile").write_text("FROM busybox:1.36\nCOPY site /www\n")
    (site / "index.html").write_text("v1\n")
    (tmp_path / "stack.yaml").write_text(
        "name: shop\npods:\n  web:\n    build: ./app\n"
        f"    replicas: {replicas}\n    develop:\n      watch:\n{watch}"
    )
    return load_stack(tmp_path / "stack.yaml", environ={})


async def add_replica(host: Host, n: int) -> str:
    rt = host.runtime
    if not rt.networks:
        await rt.create_network("podctl_shop", {"io.podctl.stack": "shop"})
    cid = await rt.create_container(
        ContainerSpec(
            name=f"shop-web-{n}",
            image="busybox:1.36",
            labels={"io.podctl.stack": "shop"},
            network="podctl_shop",
        )
    )
    await rt.start_container(cid)
    host.controller.rows.append(
        ReplicaStatus(
            stack="shop",
            pod="web",
            replica=n,
            name=f"shop-web-{n}",
            container_id=cid,
            phase="Running",
            ready=True,
            restarts=0,
            revision="r",
            image="busybox:1.36",
            started_at=0.0,
        )
    )
    return cid


@pytest.fixture
async def session() -> AsyncIterator[DevSession]:
    yield DevSession()


async def run(host: Host, s: DevSession, tg: anyio.abc.TaskGroup) -> None:
    await tg.start(s.run, host)


def change(s: DevSession, *paths: Path) -> None:
    s.debouncer.add(str(p.resolve()) for p in paths)
    s._wake.set()


async def next_event(events: Any, reason: str) -> Any:
    with anyio.fail_after(10):
        async for ev in events:
            if ev.reason == reason:
                return ev
    raise AssertionError("event stream ended")


def reasons(host: Host) -> list[str]:
    return [e.reason for e in host.events.history()]


SYNC = "        - {path: app/site, action: sync, target: /www}\n"


async def test_a_save_reaches_every_replica_once(tmp_path: Path, session: DevSession) -> None:
    host = Host(FakeRuntime(), [make_stack(tmp_path, SYNC)])
    a, b = await add_replica(host, 0), await add_replica(host, 1)
    events = host.events.subscribe()
    async with anyio.create_task_group() as tg:
        await run(host, session, tg)
        index = tmp_path / "app" / "site" / "index.html"
        index.write_text("v2\n")
        change(session, index)
        synced = await next_event(events, "Synced")
        assert synced.message.startswith("synced 1 files to web (2 replicas) in ")
        for cid in (a, b):
            assert host.runtime.containers[cid].files["/www/index.html"] == b"v2\n"
        # Identical content again, then another file: only the other file is sent.
        index.write_text("v2\n")
        change(session, index)
        (tmp_path / "app" / "site" / "b.html").write_text("b")
        change(session, tmp_path / "app" / "site" / "b.html")
        second = await next_event(events, "Synced")
        assert second.message.startswith("synced 1 files ")
        puts = host.runtime.calls_to("put_archive")
        assert len(puts) == 4  # two batches, two replicas each
        tg.cancel_scope.cancel()
    assert reasons(host).count("Synced") == 2


async def test_without_rm_the_changes_land_and_the_deletions_are_reported(
    tmp_path: Path, session: DevSession
) -> None:
    host = Host(FakeRuntime(), [make_stack(tmp_path, SYNC, replicas=1)])
    cid = await add_replica(host, 0)

    def no_rm(c: ContainerInfo, command: Sequence[str]) -> ExecResult:
        assert command[:3] == ["rm", "-rf", "--"]
        return ExecResult(exit_code=127, output=b'exec: "rm": executable file not found')

    host.runtime.on_exec(no_rm)
    events = host.events.subscribe()
    async with anyio.create_task_group() as tg:
        await run(host, session, tg)
        site = tmp_path / "app" / "site"
        (site / "index.html").unlink()
        (site / "new.html").write_text("new")
        change(session, site / "index.html", site / "new.html")
        incomplete = await next_event(events, "SyncIncomplete")
        assert "1 deletions not applied to web: the image has no `rm`" in incomplete.message
        assert "/www/index.html" in incomplete.message
        synced = await next_event(events, "Synced")
        assert synced.message.startswith("synced 1 files to web (1 replicas)")
        assert host.runtime.containers[cid].files["/www/new.html"] == b"new"
        tg.cancel_scope.cancel()


async def test_sync_restart_restarts_one_replica_at_a_time(
    tmp_path: Path, session: DevSession
) -> None:
    watch = "        - {path: app/site, action: sync+restart, target: /www}\n"
    host = Host(FakeRuntime(), [make_stack(tmp_path, watch)])
    a, b = await add_replica(host, 0), await add_replica(host, 1)
    events = host.events.subscribe()
    async with anyio.create_task_group() as tg:
        await run(host, session, tg)
        index = tmp_path / "app" / "site" / "index.html"
        index.write_text("v2\n")
        change(session, index)
        first = await next_event(events, "Restarted")
        assert first.message.startswith(a[:12])
        # The second waits until the first is ready again in a new run.
        await anyio.wait_all_tasks_blocked()
        assert [c.args[0] for c in host.runtime.calls_to("restart_container")] == [a]
        host.controller.rows = [
            r if r.container_id != a else _restarted(r) for r in host.controller.rows
        ]
        host.controller.publish()
        second = await next_event(events, "Restarted")
        assert second.message.startswith(b[:12])
        tg.cancel_scope.cancel()


def _restarted(r: ReplicaStatus) -> ReplicaStatus:
    import time

    import msgspec

    return msgspec.structs.replace(r, started_at=time.time(), ready=True)


async def test_sync_exec_runs_after_the_files_land(tmp_path: Path, session: DevSession) -> None:
    watch = (
        "        - {path: app/site, action: sync+exec, target: /www,"
        " exec: {command: [reload, now], user: www, workdir: /www}}\n"
    )
    host = Host(FakeRuntime(), [make_stack(tmp_path, watch, replicas=1)])
    cid = await add_replica(host, 0)
    seen: list[bytes] = []
    ran = anyio.Event()

    def handler(c: ContainerInfo, command: Sequence[str]) -> ExecResult:
        seen.append(host.runtime.containers[cid].files.get("/www/index.html", b""))
        ran.set()
        return ExecResult(exit_code=0)

    host.runtime.on_exec(handler)
    events = host.events.subscribe()
    async with anyio.create_task_group() as tg:
        await run(host, session, tg)
        index = tmp_path / "app" / "site" / "index.html"
        index.write_text("v2\n")
        change(session, index)
        await next_event(events, "Synced")
        with anyio.fail_after(5):
            await ran.wait()
        (call,) = host.runtime.calls_to("exec_as")
        assert call.args == (cid, ["reload", "now"], "www", "/www")
        assert seen == [b"v2\n"]  # the command saw the new file
        tg.cancel_scope.cancel()


async def test_a_replica_that_starts_later_gets_what_was_synced(
    tmp_path: Path, session: DevSession
) -> None:
    host = Host(FakeRuntime(), [make_stack(tmp_path, SYNC)])
    await add_replica(host, 0)
    events = host.events.subscribe()
    async with anyio.create_task_group() as tg:
        await run(host, session, tg)
        index = tmp_path / "app" / "site" / "index.html"
        index.write_text("v2\n")
        change(session, index)
        await next_event(events, "Synced")
        late = await add_replica(host, 1)
        host.controller.publish()
        ev = await next_event(events, "Synced")
        assert ev.message == "synced 1 files to web (1 new replicas)"
        assert host.runtime.containers[late].files["/www/index.html"] == b"v2\n"
        tg.cancel_scope.cancel()


async def test_bind_mounted_watch_path_is_skipped_and_said_once(
    tmp_path: Path, session: DevSession
) -> None:
    stack = make_stack(tmp_path, SYNC)
    text = (
        (tmp_path / "stack.yaml")
        .read_text()
        .replace("    develop:", "    mounts: [{bind: ./app/site, path: /www}]\n    develop:")
    )
    (tmp_path / "stack.yaml").write_text(text)
    stack = load_stack(tmp_path / "stack.yaml", environ={})
    host = Host(FakeRuntime(), [stack])
    await add_replica(host, 0)
    events = host.events.subscribe()
    async with anyio.create_task_group() as tg:
        await run(host, session, tg)
        index = tmp_path / "app" / "site" / "index.html"
        for content in ("v2\n", "v3\n"):
            index.write_text(content)
            change(session, index)
        skipped = await next_event(events, "SyncSkipped")
        assert "bind-mounted at /www" in skipped.message
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert reasons(host).count("SyncSkipped") == 1
    assert "Synced" not in reasons(host)
    assert host.runtime.calls_to("put_archive") == []


async def test_initial_sync_sends_only_what_differs_from_the_image(
    tmp_path: Path, session: DevSession
) -> None:
    watch = "        - {path: app/site, action: sync, target: /www, initial_sync: true}\n"
    host = Host(FakeRuntime(), [make_stack(tmp_path, watch, replicas=1)])
    (tmp_path / "app" / "site" / "extra.html").write_text("extra")
    cid = await add_replica(host, 0)
    # What the image put there: index.html as it is on disk, and a file only it has.
    host.runtime.containers[cid].files.update(
        {"/www/index.html": b"v1\n", "/www/image-only.html": b"i"}
    )
    events = host.events.subscribe()
    async with anyio.create_task_group() as tg:
        await run(host, session, tg)
        synced = await next_event(events, "Synced")
        assert synced.message.startswith("synced 1 files to web (1 replicas)")
        tg.cancel_scope.cancel()
    assert len(host.runtime.calls_to("put_archive")) == 1
    assert host.runtime.containers[cid].files["/www/extra.html"] == b"extra"
    assert host.runtime.containers[cid].files["/www/image-only.html"] == b"i"  # not deleted


def test_hot_reload_leaves_dev_pods_build_contexts_to_their_rules(tmp_path: Path) -> None:
    from podctl.reload import referenced_paths

    stack = make_stack(tmp_path, SYNC)
    context = Path(stack.pods[0].build.context)  # type: ignore[union-attr]
    assert context in referenced_paths([stack])
    assert context not in DevSession().referenced([stack])
    # `podctl run --view`: no rules, hot reload as under `podctl run`.
    assert DevSession(rules=False).referenced([stack]) == referenced_paths([stack])


async def test_rules_changed_by_a_reload_are_watched(tmp_path: Path, session: DevSession) -> None:
    host = Host(FakeRuntime(), [make_stack(tmp_path, SYNC, replicas=1)])
    cid = await add_replica(host, 0)
    other = tmp_path / "app" / "other"
    other.mkdir()
    events = host.events.subscribe()
    async with anyio.create_task_group() as tg:
        await run(host, session, tg)
        watch = "        - {path: app/other, action: sync, target: /srv}\n"
        host.controller.stacks = [make_stack(tmp_path, watch, replicas=1)]
        host.controller.publish()  # a pass with the reloaded stacks
        with anyio.fail_after(10):
            while str(other.resolve()) not in session._roots_watched:
                await anyio.sleep(0.01)
        # Written by the test, seen by the new watch (the real notify thread).
        (other / "x.txt").write_text("x")
        await next_event(events, "Synced")
        assert host.runtime.containers[cid].files["/srv/x.txt"] == b"x"
        tg.cancel_scope.cancel()


async def test_a_batch_that_failed_to_send_is_sent_again(
    tmp_path: Path, session: DevSession
) -> None:
    from podctl.runtime.errors import EngineUnavailable

    host = Host(FakeRuntime(), [make_stack(tmp_path, SYNC, replicas=1)])
    cid = await add_replica(host, 0)
    host.runtime.fail("put_archive", EngineUnavailable("copying", "engine did not answer"))
    session.retry_s = 0.01
    events = host.events.subscribe()
    async with anyio.create_task_group() as tg:
        await run(host, session, tg)
        index = tmp_path / "app" / "site" / "index.html"
        index.write_text("v2\n")
        change(session, index)
        failed = await next_event(events, "SyncFailed")
        assert "engine did not answer" in failed.message
        await next_event(events, "Synced")
        assert host.runtime.containers[cid].files["/www/index.html"] == b"v2\n"
        tg.cancel_scope.cancel()


REBUILD = SYNC + "        - {path: app/Dockerfile, action: rebuild}\n"


async def test_a_failed_build_keeps_the_revision_and_shows_the_last_lines(
    tmp_path: Path, session: DevSession
) -> None:
    from podctl.runtime.errors import BuildError

    host = Host(FakeRuntime(), [make_stack(tmp_path, REBUILD, replicas=1)])
    await add_replica(host, 0)
    host.runtime.fail(
        "build_image", BuildError("building", "returned 1", ["Step 3/3 : RUN false", "boom"])
    )
    events = host.events.subscribe()
    async with anyio.create_task_group() as tg:
        await run(host, session, tg)
        dockerfile = tmp_path / "app" / "Dockerfile"
        dockerfile.write_text("FROM busybox:1.36\nRUN false\n")
        change(session, dockerfile)
        failed = await next_event(events, "BuildFailed")
        assert "web keeps its running revision" in failed.message
        assert failed.message.endswith("Step 3/3 : RUN false\nboom")
        assert host.stacks.handed == []  # nothing rolled
        # Fixed: built, then handed over (the controller rolls it).
        dockerfile.write_text("FROM busybox:1.36\nCOPY site /www\n# fixed\n")
        change(session, dockerfile)
        await next_event(events, "Built")
        with anyio.fail_after(5):
            while not host.stacks.handed:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()


async def test_over_1000_files_rebuilds_and_says_so(tmp_path: Path, session: DevSession) -> None:
    host = Host(FakeRuntime(), [make_stack(tmp_path, SYNC, replicas=1)])
    await add_replica(host, 0)
    events = host.events.subscribe()
    site = tmp_path / "app" / "site"
    async with anyio.create_task_group() as tg:
        await run(host, session, tg)
        paths = []
        for i in range(1001):
            (site / f"f{i}.txt").write_text(str(i))
            paths.append(site / f"f{i}.txt")
        change(session, *paths)
        fallback = await next_event(events, "SyncFallback")
        assert "1001 files changed at once" in fallback.message
        assert "rebuilding web" in fallback.message
        await next_event(events, "Built")
        tg.cancel_scope.cancel()
    assert host.runtime.calls_to("put_archive") == []
