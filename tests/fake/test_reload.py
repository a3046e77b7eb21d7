"""StackWatcher with real files, the real loader and the real notify backend.

Every wait is on something observable (a hand-over, a counter of the watcher)
under a generous deadline; none is a sleep that hopes the watcher got there.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from podctl.reload import StackWatcher, referenced_paths
from podctl.spec import SpecError, load_stacks
from podctl.spec.model import DesiredStack

pytestmark = pytest.mark.anyio

DEADLINE = 20.0


def stack_text(replicas: int, *, extra: str = "") -> str:
    return (
        "name: shop\n"
        "pods:\n"
        "  web:\n"
        "    image: busybox:1.36\n"
        f"    replicas: {replicas}\n"
        "    command: [sleep, '3600']  # a comment long enough to take a while to write\n"
        f"{extra}"
    )


class Recorder:
    """The callbacks: what was loaded and what was handed over."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.loaded_texts: list[str] = []
        self.handed: list[list[DesiredStack]] = []
        self.invalid: list[SpecError] = []

    def load(self) -> list[DesiredStack]:
        first = self.paths[0]
        self.loaded_texts.append((first / "podctl.yaml" if first.is_dir() else first).read_text())
        return load_stacks(self.paths, environ={})

    async def on_loaded(self, stacks: list[DesiredStack]) -> None:
        self.handed.append(stacks)

    def on_invalid(self, error: SpecError) -> None:
        self.invalid.append(error)


async def until(pred: Callable[[], bool], timeout: float = DEADLINE) -> None:
    with anyio.fail_after(timeout):
        while not pred():
            await anyio.sleep(0.01)


@asynccontextmanager
async def watching(paths: list[Path], **kw: float) -> AsyncIterator[tuple[StackWatcher, Recorder]]:
    rec = Recorder(paths)
    current = load_stacks(paths, environ={})
    watcher = StackWatcher(paths, rec.load, rec.on_loaded, rec.on_invalid, current=current, **kw)
    async with anyio.create_task_group() as tg:
        await tg.start(watcher.run)
        yield watcher, rec
        tg.cancel_scope.cancel()


def idle(watcher: StackWatcher, rounds: int) -> Callable[[], bool]:
    return lambda: watcher.rounds >= rounds and not watcher.pending


async def write_slowly(path: Path, text: str, *, chunk: int = 1, gap: float = 0.002) -> None:
    with open(path, "w") as f:
        for i in range(0, len(text), chunk):
            f.write(text[i : i + chunk])
            f.flush()
            await anyio.sleep(gap)


async def test_a_file_written_a_byte_at_a_time_is_loaded_once_when_whole(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(stack_text(1))
    final = stack_text(3, extra="    labels: {team: shop}\n")
    async with watching([path]) as (watcher, rec):
        await write_slowly(path, final)  # ~200 bytes, 2 ms apart: ~0.5 s of half-written file
        await until(lambda: bool(rec.handed))
        # Counted before the hand-over: no half-written content was ever loaded.
        assert rec.loaded_texts == [final]
        assert watcher.loads == 1
        assert rec.invalid == []
        ((stack,),) = rec.handed
        assert stack.pods[0].replicas == 3
        assert dict(stack.pods[0].template.labels)["team"] == "shop"


async def test_an_unrelated_file_next_to_the_stack_file_triggers_nothing(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(stack_text(1))
    log = tmp_path / "podctl.log"
    async with watching([path]) as (watcher, rec):
        # The log that made podctl reload every 100 ms: written, appended, replaced.
        with open(log, "a") as f:
            for i in range(20):
                f.write(f"line {i}\n")
                f.flush()
                await anyio.sleep(0.005)
        (tmp_path / "notes.txt").write_text("x")
        os.replace(tmp_path / "notes.txt", tmp_path / "notes2.txt")
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "a.txt").write_text("x")
        # The watcher saw those events and classified them as irrelevant.
        await until(lambda: watcher.ignored >= 3)
        assert (watcher.seen, watcher.pending, watcher.rounds, watcher.loads) == (0, False, 0, 0)
        # It is still alive: an edit of the stack file is loaded.
        path.write_text(stack_text(2))
        await until(lambda: bool(rec.handed))
        assert watcher.loads == 1


async def test_a_referenced_config_file_change_triggers_a_load(tmp_path: Path) -> None:
    conf = tmp_path / "conf" / "app.conf"
    conf.parent.mkdir()
    conf.write_text("v1\n")
    path = tmp_path / "stack.yaml"
    path.write_text(
        stack_text(1, extra="    mounts: [{config: app, path: /etc/app.conf}]\n")
        + "configs:\n  app: {file: conf/app.conf}\n"
    )
    async with watching([path]) as (watcher, rec):
        (tmp_path / "conf" / "other.conf").write_text("not referenced\n")
        await until(lambda: watcher.ignored >= 1)
        assert watcher.rounds == 0
        conf.write_text("v2\n")
        await until(lambda: bool(rec.handed))
        ((stack,),) = rec.handed
        (config,) = stack.configs
        assert config.file == str(conf)
        assert watcher.loads == 1


async def test_a_config_added_by_an_edit_is_watched_from_then_on(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(stack_text(1))
    conf = tmp_path / "new" / "app.conf"
    async with watching([path]) as (watcher, rec):
        conf.parent.mkdir()
        conf.write_text("v1\n")
        path.write_text(stack_text(1) + "configs:\n  app: {file: new/app.conf}\n")
        await until(lambda: len(rec.handed) == 1)
        digest = rec.handed[0][0].configs[0].digest
        # The watched set grew: one more round, with the new file watched, confirms it.
        await until(lambda: watcher.loads == 2 and not watcher.pending)
        assert len(rec.handed) == 1
        conf.write_text("v2\n")
        await until(lambda: len(rec.handed) == 2)
        assert rec.handed[1][0].configs[0].digest != digest


async def test_an_editor_save_by_rename_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(stack_text(1))
    async with watching([path]) as (_watcher, rec):
        tmp = tmp_path / ".stack.yaml.swp"
        tmp.write_text(stack_text(4))
        os.replace(tmp, path)
        await until(lambda: bool(rec.handed))
        assert rec.handed[-1][0].pods[0].replicas == 4


async def test_invalid_content_is_reported_only_when_it_is_the_final_content(
    tmp_path: Path,
) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(stack_text(1))
    async with watching([path]) as (watcher, rec):
        # Slowly written, and invalid along the way (`replicas: ` with no value
        # yet, an unclosed `[`): only the final, valid content counts.
        await write_slowly(path, stack_text(2))
        await until(lambda: bool(rec.handed))
        assert rec.invalid == []
        # A final content that is invalid is reported, once.
        await write_slowly(path, stack_text(3).replace("replicas: 3", "replicas: lots"))
        await until(lambda: bool(rec.invalid))
        await until(idle(watcher, watcher.rounds))
        assert len(rec.invalid) == 1
        assert "pods.web.replicas" in str(rec.invalid[0])
        assert len(rec.handed) == 1
        # Fixing it hands over the fixed stacks.
        path.write_text(stack_text(5))
        await until(lambda: len(rec.handed) == 2)
        assert rec.handed[1][0].pods[0].replicas == 5


async def test_unchanged_content_is_not_loaded_or_handed_over(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    text = stack_text(1)
    path.write_text(text)
    async with watching([path]) as (watcher, rec):
        path.write_text(text)  # same bytes, new mtime
        await until(idle(watcher, 1))
        assert (watcher.loads, rec.handed, rec.invalid) == (0, [], [])
        # A comment-only edit loads, but the stacks are equal: nothing is handed over.
        path.write_text(text + "# just a comment\n")
        await until(lambda: watcher.loads == 1)
        await until(idle(watcher, 2))
        assert (rec.handed, rec.invalid) == ([], [])


async def test_a_directory_path_watches_the_stack_file_inside(tmp_path: Path) -> None:
    (tmp_path / "podctl.yaml").write_text(stack_text(1))
    async with watching([tmp_path]) as (_watcher, rec):
        (tmp_path / "podctl.yaml").write_text(stack_text(2))
        await until(lambda: bool(rec.handed))
        assert rec.handed[0][0].pods[0].replicas == 2


async def test_a_build_context_is_watched_recursively(tmp_path: Path) -> None:
    ctx = tmp_path / "app"
    (ctx / "src").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM busybox:1.36\n")
    (ctx / "src" / "main.sh").write_text("echo 1\n")
    path = tmp_path / "stack.yaml"
    path.write_text("name: shop\npods:\n  web:\n    build: app\n")
    async with watching([path]) as (_watcher, rec):
        (ctx / "src" / "main.sh").write_text("echo 2\n")
        await until(lambda: bool(rec.handed))
        assert rec.handed[0][0].pods[0].build is not None


async def test_cancelling_the_watcher_returns_promptly(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(stack_text(1))
    rec = Recorder([path])
    watcher = StackWatcher([path], rec.load, rec.on_loaded, rec.on_invalid)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(watcher.run)
            tg.cancel_scope.cancel()


def test_referenced_paths_are_the_files_a_load_reads(tmp_path: Path) -> None:
    for name in ("app.conf", "token"):
        (tmp_path / name).write_text("x\n")
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM busybox:1.36\n")
    path = tmp_path / "stack.yaml"
    path.write_text(
        "name: shop\npods:\n  web:\n    build: ctx\n"
        "configs:\n  app: {file: app.conf}\n  inline: {data: x}\n"
        "secrets:\n  token: {file: token}\n  env: {env: HOME}\n"
    )
    stacks = load_stacks([path], environ={"HOME": "/root"})
    assert referenced_paths(stacks) == {
        path,
        tmp_path / "app.conf",
        tmp_path / "token",
        tmp_path / "ctx",
    }


async def test_a_stacks_directory_hands_over_added_removed_and_bad_files(tmp_path: Path) -> None:
    from podctl.stacksdir import StacksDir

    def named(name: str) -> str:
        return stack_text(1).replace("name: shop", f"name: {name}")

    (tmp_path / "a.yaml").write_text(named("a"))
    directory = StacksDir(tmp_path, environ={})
    handed: list[list[str]] = []
    invalid: list[SpecError] = []

    async def on_loaded(stacks: list[DesiredStack]) -> None:
        handed.append([s.name for s in stacks])

    watcher = StackWatcher(
        [],
        directory.load,
        on_loaded,
        invalid.append,
        current=directory.load(),
        stack_dirs=[tmp_path],
    )
    async with anyio.create_task_group() as tg:
        await tg.start(watcher.run)
        (tmp_path / "b.yml").write_text(named("b"))
        await until(lambda: handed == [["a", "b"]])
        (tmp_path / "notes.txt").write_text("x")  # not a stack file
        (tmp_path / "c.toml").write_text('name = "c"\npods = 3\n')
        await until(lambda: len(invalid) == 1)
        assert [Path(i.file).name for i in invalid[0].issues] == ["c.toml"]
        assert handed == [["a", "b"]]  # the good ones did not change: nothing to apply
        (tmp_path / "a.yaml").unlink()
        await until(lambda: handed[-1] == ["b"])
        assert len(invalid) == 2  # c.toml is still bad, and still said so
        tg.cancel_scope.cancel()
