"""`podctl run` in the foreground: load, check the engine, hand over to the Instance."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import anyio

from podctl import early_signals
from podctl.cli.output import err
from podctl.spec.errors import SpecError

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger("podctl")


def run_foreground(
    files: list[Path],
    overrides: dict[str, str],
    *,
    watch: bool,
    keep: bool,
    verbose: bool,
    metrics: tuple[str, int] | None = None,
    kernel_fast_path: bool = False,
) -> int:
    from podctl.app import Instance, configure_logging, secret_values
    from podctl.spec import load_stacks
    from podctl.storage import paths
    from podctl.storage.redact import Redactor

    # From here on a SIGINT/SIGTERM is remembered, not raised: `Instance.run` acts
    # on it once it can tear down cleanly (and asyncio's own Ctrl-C handling, which
    # would cancel the main task, stays out of the way).
    early_signals.install()
    environ = dict(os.environ)
    try:
        stacks = load_stacks(files, overrides, environ)
    except SpecError as exc:
        for issue in exc.issues:
            err(str(issue))
        return 2
    redactor = Redactor(secret_values(stacks, environ))
    configure_logging(verbose, redactor)

    async def main() -> int:
        from podctl.api.server import SocketInUse
        from podctl.runtime.docker import DockerRuntime
        from podctl.runtime.errors import EngineError

        runtime = DockerRuntime()
        try:
            try:
                await runtime.ping()
            except EngineError as exc:
                log.warning("%s; podctl keeps trying and converges once the engine answers", exc)
            instance = Instance(
                runtime,
                files,
                stacks,
                overrides=overrides,
                environ=environ,
                socket_path=paths.socket_path(),
                state_dir=paths.ensure_private_dir(paths.state_dir()),
                watch=watch,
                keep=keep,
                redactor=redactor,
                metrics=metrics,
                kernel_fast_path=kernel_fast_path,
            )
            names = ", ".join(s.name for s in stacks)
            log.info("running stacks: %s (control socket %s)", names, paths.socket_path())
            try:
                return await instance.run()
            except SocketInUse as exc:
                err(f"error: {exc}")
                return 1
        finally:
            await runtime.close()

    return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
