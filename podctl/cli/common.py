"""What every `podctl` command module shares: exit codes, options, asking the
running podctl, failing with a message, talking to the engine directly."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import anyio
import typer

from podctl.api import client
from podctl.cli.output import Format, err
from podctl.runtime.errors import EngineError
from podctl.storage import paths as storage_paths

if TYPE_CHECKING:
    from pathlib import Path

    from podctl.api.schema import Reply, Request

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2

OutputOpt = Annotated[Format, typer.Option("-o", "--output", help="table, json or yaml")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="override a variable: --set key=value")
]


def overrides(values: list[str] | None) -> dict[str, str]:
    out = {}
    for item in values or []:
        if "=" not in item:
            err(f"--set {item}: expected key=value")
            raise typer.Exit(EXIT_BAD_INPUT)
        k, v = item.split("=", 1)
        out[k.strip()] = v
    return out


def socket() -> Path:
    return storage_paths.socket_path()


def ask(request: Request) -> Reply | None:
    """Ask the running podctl; None when none is running."""

    async def go() -> Reply:
        return await client.call(socket(), request)

    try:
        reply = anyio.run(go)
    except client.NotRunning:
        return None
    if reply.engine != "ok":
        err(f"warning: the Docker engine is not responding ({reply.engine}); last known state:")
    return reply


def fail(message: str, code: int = EXIT_FAIL) -> typer.Exit:
    err(f"error: {message}")
    return typer.Exit(code)


def runtime() -> Any:
    from podctl.runtime.docker import DockerRuntime

    return DockerRuntime()


def offline(fn: Any, *args: Any) -> Any:
    """Run `fn(runtime, *args)` against the engine directly (no podctl run active)."""

    async def go() -> Any:
        rt = runtime()
        try:
            return await fn(rt, *args)
        finally:
            await rt.close()

    try:
        return anyio.run(go)
    except EngineError as exc:
        raise fail(str(exc)) from exc
