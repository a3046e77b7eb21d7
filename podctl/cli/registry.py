"""`podctl build` and `podctl push`: the images of a stack, to a registry.

    podctl build stack.yaml      # build every pod with `build:`
    podctl push stack.yaml       # build if needed, tag as `image:`, push

A pod with both `build:` and `image:` means "build this, publish it as that":
containers on this host run the build's content-hash tag (`podctl-build/...`,
so an edit of the context rolls the pod), and `push` names it `image:` and
pushes it to the registry in that name. Pushes and pulls use the user's Docker
credentials (`~/.docker/config.json`, `podctl.runtime.credentials`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import anyio
import typer

from podctl import labels
from podctl.cli import common
from podctl.cli.common import EXIT_BAD_INPUT, EXIT_FAIL, SetOpt
from podctl.cli.output import err
from podctl.cli.params import ValuesOpt, parameters
from podctl.runtime.errors import EngineError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from podctl.runtime.protocol import Runtime
    from podctl.spec.model import DesiredPod, DesiredStack

FilesArg = Annotated[list[Path], typer.Argument(help="stack files")]


def _stacks(
    files: list[Path], values: list[Path] | None, sets: list[str] | None
) -> list[DesiredStack]:
    from podctl import bridge

    loaded = bridge.load(files, parameters(values, sets), dict(os.environ))
    if loaded.issues:
        for issue in loaded.issues:
            err(str(issue))
        raise typer.Exit(EXIT_BAD_INPUT)
    return loaded.stacks


def _built(stacks: list[DesiredStack]) -> list[tuple[DesiredStack, DesiredPod]]:
    return [(s, p) for s in stacks for p in s.pods if p.build is not None]


async def _build(rt: Runtime, stack: DesiredStack, pod: DesiredPod, *, again: bool) -> str:
    """Build `pod`'s image (unless present and not `again`); returns its tag."""
    assert pod.build is not None
    tag = pod.template.image  # the content-hash tag containers run
    if again or not await rt.image_exists(tag):
        typer.echo(f"{stack.name}/{pod.name}: building {pod.build.context} as {tag}")
        await rt.build_image(pod.build.context, tag, {labels.KIND: "build"})
    return tag


def build(files: FilesArg, set_: SetOpt = None, values: ValuesOpt = None) -> None:
    """Build the images of pods with `build:` (tagged by content; also as `image:` if given)."""
    targets = _built(_stacks(files, values, set_))
    if not targets:
        typer.echo("no pod has `build:`: nothing to build")
        return

    async def go(rt: Runtime) -> None:
        for stack, pod in targets:
            tag = await _build(rt, stack, pod, again=True)
            assert pod.build is not None
            if pod.build.push:
                await rt.tag_image(tag, pod.build.push)
                typer.echo(f"{stack.name}/{pod.name}: tagged {pod.build.push}")

    _engine(go)


def push(files: FilesArg, set_: SetOpt = None, values: ValuesOpt = None) -> None:
    """Build if needed, tag each built pod's image as its `image:` and push it there."""
    targets = _built(_stacks(files, values, set_))
    pushable = [(s, p) for s, p in targets if p.build is not None and p.build.push]
    for stack, pod in targets:
        if (stack, pod) not in pushable:
            err(f"{stack.name}/{pod.name}: no `image:` next to `build:`, so no name to push as")
    if not pushable:
        raise common.fail("nothing to push", EXIT_BAD_INPUT)

    async def go(rt: Runtime) -> None:
        for stack, pod in pushable:
            assert pod.build is not None and pod.build.push is not None
            tag = await _build(rt, stack, pod, again=False)
            await rt.tag_image(tag, pod.build.push)
            typer.echo(f"{stack.name}/{pod.name}: pushing {pod.build.push}")
            await rt.push_image(pod.build.push)
            typer.echo(f"{stack.name}/{pod.name}: pushed {pod.build.push}")

    _engine(go)


def _engine(fn: Callable[[Runtime], Awaitable[None]]) -> None:
    from podctl.runtime.docker import DockerRuntime

    async def main() -> None:
        rt = DockerRuntime()
        try:
            await fn(rt)
        finally:
            await rt.close()

    try:
        anyio.run(main)
    except EngineError as exc:
        raise common.fail(str(exc), EXIT_FAIL) from exc


def register(app: typer.Typer) -> None:
    """Add `build` and `push` to the top-level command line."""
    app.command()(build)
    app.command()(push)
