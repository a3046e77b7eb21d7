"""`podctl run` in the foreground: load, claim the stacks, check the engine, hand
over to the Instance.

Before anything can change on the engine, the run makes sure it is the only
podctl for its stacks (a host-wide lock per stack, `podctl.storage.locks`) and
that its runtime and state directories are its own. A run that is refused
touches nothing: no engine call, no teardown.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING

import anyio

from podctl import early_signals
from podctl.cli.output import err
from podctl.spec.errors import SpecError

if TYPE_CHECKING:
    from pathlib import Path

    from podctl.dev.session import DevSession
    from podctl.runtime.protocol import Runtime

log = logging.getLogger("podctl")

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2
# How long a podctl already serving the control socket gets to say who it is.
SOCKET_PROBE_TIMEOUT_S = 2.0
# Bound on the last look for objects an interrupted start-up left behind.
SWEEP_TIMEOUT_S = 120.0


def run_foreground(
    files: list[Path],
    overrides: dict[str, str],
    *,
    watch: bool,
    keep: bool,
    verbose: bool,
    metrics: tuple[str, int] | None = None,
    kernel_fast_path: bool = False,
    max_replicas: int | None = None,
    stacks_dir: Path | None = None,
    log_format: str = "text",
    ready_timeout_s: float | None = None,
    dev: bool = False,
    view: bool = False,
) -> int:
    # From here on a SIGINT/SIGTERM is remembered, not raised: `Instance.run` acts
    # on it once it can tear down cleanly (and asyncio's own Ctrl-C handling, which
    # would cancel the main task, stays out of the way). The entry point installed
    # this already, before its imports; this covers callers that skip it.
    early_signals.install()
    # SIGHUP means "reload" once the instance runs; before that (its default action
    # would end podctl halfway through starting) there is nothing loaded to re-read.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    from podctl.app import Instance, configure_logging, secret_values
    from podctl.bridge.inputs import load_stacks  # stack files and Kubernetes YAML
    from podctl.host.limits import raise_nofile
    from podctl.host.listenfds import listen_sockets
    from podctl.host.notify import Notifier
    from podctl.lifecycle import DEFAULT_READY_TIMEOUT_S
    from podctl.spec import DEFAULT_MAX_REPLICAS
    from podctl.stacksdir import PartialLoad, StacksDir
    from podctl.storage import paths
    from podctl.storage.errors import StorageError
    from podctl.storage.locks import acquire_stacks
    from podctl.storage.redact import Redactor

    # systemd's variables are read once and removed: children (nft, docker) must not
    # think the notify socket or the passed descriptors are theirs.
    notifier = Notifier.from_environ(unset=True)
    listeners = listen_sockets(unset=True)
    environ = dict(os.environ)
    max_replicas = DEFAULT_MAX_REPLICAS if max_replicas is None else max_replicas
    directory = None
    bad_files: SpecError | None = None
    try:
        if stacks_dir is not None:
            directory = StacksDir(stacks_dir, overrides, environ, max_replicas=max_replicas)
            try:
                stacks = directory.load()
            except PartialLoad as exc:
                # One bad file in a stacks directory stops only its own stack.
                stacks, bad_files = exc.stacks, exc
        else:
            stacks = load_stacks(files, overrides, environ, max_replicas=max_replicas)
    except SpecError as exc:
        for issue in exc.issues:
            err(str(issue))
        return EXIT_BAD_INPUT
    redactor = Redactor(secret_values(stacks, environ))
    configure_logging(verbose, redactor, log_format)
    if early_signals.pending() is not None:
        return EXIT_OK  # stopped before anything began: nothing to undo

    try:
        # Held until the process exits: the kernel drops them however it ends.
        locks = acquire_stacks(s.name for s in stacks)
    except StorageError as exc:
        err(f"error: {exc}")
        return EXIT_FAIL
    try:
        socket_path = paths.socket_path(environ)
        state_dir = paths.ensure_private_dir(paths.state_dir(environ))
        paths.ensure_private_dir(paths.runtime_dir(environ))
        paths.ensure_socket_dir(socket_path)
    except (StorageError, OSError) as exc:
        err(f"error: {exc}")
        locks.release()
        return EXIT_FAIL
    nofile = raise_nofile()
    log.debug("open files limit: %d", nofile)

    async def main() -> int:
        from podctl.api.server import SocketInUse
        from podctl.runtime.docker import DockerRuntime
        from podctl.runtime.errors import EngineError

        other = await _serving(socket_path)
        if other is not None:
            err(
                f"error: another podctl ({other}) serves the control socket {socket_path}; "
                f"stop it, or set PODCTL_SOCKET to run a second one"
            )
            return EXIT_FAIL
        runtime = DockerRuntime()
        try:
            try:
                await runtime.ping()
            except EngineError as exc:
                log.warning("%s; podctl keeps trying and converges once the engine answers", exc)
            instance = Instance(
                runtime,
                [] if directory is not None else files,
                stacks,
                overrides=overrides,
                environ=environ,
                socket_path=socket_path,
                state_dir=state_dir,
                watch=watch,
                keep=keep,
                redactor=redactor,
                metrics=metrics,
                kernel_fast_path=kernel_fast_path,
                max_replicas=max_replicas,
                stacks_dir=directory,
                notifier=notifier,
                listeners=listeners,
                ready_timeout_s=(
                    DEFAULT_READY_TIMEOUT_S if ready_timeout_s is None else ready_timeout_s
                ),
                locks=locks,
                dev=_dev_session(rules=dev) if dev or view else None,
            )
            if bad_files is not None:
                instance.stacks.invalid(bad_files)  # logged (FILE:LINE:COL) and an event
            names = ", ".join(s.name for s in stacks) or "none yet"
            where = f" from {directory.directory}" if directory is not None else ""
            log.info("running stacks%s: %s (control socket %s)", where, names, socket_path)
            if listeners:
                log.info("listeners passed by the service manager: %s", ", ".join(listeners))
            try:
                code = await instance.run()
                if not keep:
                    await _sweep(runtime, locks.stacks)
                return code
            except SocketInUse as exc:
                err(f"error: {exc}")
                return EXIT_FAIL
            except BaseExceptionGroup as group:
                in_use, rest = group.split(SocketInUse)
                if in_use is None or rest is not None:
                    raise
                err(f"error: {_first_leaf(in_use)}")
                return EXIT_FAIL
            finally:
                # Leaving its signal receiver gave SIGINT back to KeyboardInterrupt:
                # a second Ctrl-C during the last clean-up is recorded, not raised.
                early_signals.install()
        finally:
            await runtime.close()

    with locks:
        try:
            return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
        except KeyboardInterrupt:
            return early_signals.EXIT_INTERRUPTED


async def _serving(socket_path: Path) -> str | None:
    """ "pid N" of a podctl that answers on `socket_path`, or None when none does."""
    import msgspec

    from podctl.api import client
    from podctl.api.schema import Request

    try:
        with anyio.fail_after(SOCKET_PROBE_TIMEOUT_S):
            reply = await client.call(socket_path, Request(verb="ping"))
    except (client.NotRunning, TimeoutError, OSError, msgspec.DecodeError):
        return None
    data = reply.data if isinstance(reply.data, dict) else {}
    pid = data.get("pid")
    return f"pid {pid}" if isinstance(pid, int) else "pid unknown"


async def _sweep(runtime: Runtime, stacks: list[str]) -> None:
    """Remove what an interrupted start-up left behind.

    The instance tears its stacks down as it stops, but a create the engine was
    still working on (podctl stopped waiting, or the teardown looked before the
    engine answered) can appear afterwards. By now every task of the instance has
    ended, so a second look finds it. The stacks are this process's (it holds their
    locks), so whatever carries their label is its own to remove.
    """
    from podctl.cli.offline import stop_graces
    from podctl.reconcile.controller import teardown
    from podctl.runtime.errors import EngineError

    with anyio.CancelScope(shield=True), anyio.move_on_after(SWEEP_TIMEOUT_S):
        for stack in stacks:
            try:
                graces = stop_graces(await runtime.list_containers(stack))
                plan = await teardown(runtime, stack, grace_by_pod=graces)
            except EngineError as exc:
                log.error("stopping stack %s: %s", stack, exc)
                continue
            if plan.steps:
                log.info(
                    "removed %d objects of stack %s created as it stopped", len(plan.steps), stack
                )


def _dev_session(*, rules: bool) -> DevSession:
    """`podctl dev` (watch rules) or `podctl run --view` (the live view only)."""
    import sys

    from podctl.dev.session import DevSession

    # The live view only on a terminal; otherwise the log lines are the output.
    return DevSession(rules=rules, view=sys.stdout.isatty())


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
