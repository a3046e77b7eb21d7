"""`podctl rollout status|history|undo|pause|resume STACK/POD`.

All but `history` need a running `podctl run` (the rollout lives in it); `history`
falls back on the state directory when none answers. `status` subscribes to the
running podctl's status stream (one line each time a pass changes the pod's
rollout, so it follows probe results as they come, without asking in a loop) and
exits 0 once the rollout is complete, 1 when it failed or was rolled back (or on
`--timeout`); when no rollout is under way it reports the current state at once.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, Annotated

import anyio
import msgspec
import typer

from podctl.api import client
from podctl.api.schema import HistoryRow, Request, RolloutRow
from podctl.cli import common
from podctl.cli.common import EXIT_BAD_INPUT, EXIT_FAIL, EXIT_OK, OutputOpt
from podctl.cli.output import Format, err, json_text, print_data, safe

if TYPE_CHECKING:
    from podctl.api.schema import Reply

app = typer.Typer(
    help="Follow, list, undo, pause and resume a pod's rollouts.", no_args_is_help=True
)

Target = Annotated[str, typer.Argument(help="STACK/POD")]
NOT_RUNNING = "no podctl run is active (rollouts live in the running instance)"

HISTORY_COLUMNS = [
    ("REVISION", "revision"),
    ("CREATED", "created"),
    ("CAUSE", "cause"),
    ("STATUS", "status"),
    ("IMAGE", "image"),
    ("MESSAGE", "message"),
]


def split_target(target: str) -> tuple[str, str]:
    stack, _, pod = target.partition("/")
    if not stack or not pod or "/" in pod:
        raise common.fail(f"{target!r}: expected STACK/POD", EXIT_BAD_INPUT)
    return stack, pod


def _ask(request: Request) -> Reply:
    reply = common.ask(request)
    if reply is None:
        raise common.fail(NOT_RUNNING)
    if not reply.ok:
        raise common.fail(reply.error or "request failed")
    return reply


# -- status ------------------------------------------------------------------------


def under_way(s: RolloutRow) -> bool:
    """Whether `rollout status` has something to wait for."""
    if s.started_at is None:
        return False  # a pod's first start is not a rollout
    if s.state == "progressing":
        return True
    # Paused mid-rollout: wait (for `resume`); paused with nothing left to roll: done.
    return s.state == "paused" and (s.old_remaining > 0 or s.new_available < s.desired)


def verdict(s: RolloutRow) -> int | None:
    """The exit code once the rollout has ended, None while it is under way."""
    if s.state in ("failed", "rolled-back"):
        return EXIT_FAIL
    return None if under_way(s) else EXIT_OK


def progress_line(s: RolloutRow, now: float, *, followed: bool = True) -> str:
    """One line of `rollout status`; `followed`: the rollout was seen under way (a
    complete one seen only at its end shows how long it took, from its message)."""
    elapsed = "" if s.started_at is None else f", {_duration(max(now - s.started_at, 0.0))}"
    head = f"{s.stack}/{s.pod}: revision {s.revision[:6]}"
    if s.override is not None:
        head += f" ({s.override})"
    counts = (
        f"{s.new_ready}/{s.desired} new ready ({s.new_available} available),"
        f" {s.old_remaining} old remaining"
    )
    match s.state:
        case "complete":
            if not followed:
                return f"{head}: rollout complete: {counts}" + (
                    f" ({s.message})" if s.message else ""
                )
            return f"{head}: rollout complete: {counts}{elapsed}"
        case "failed":
            return f"{head}: rollout failed: {s.message}"
        case "rolled-back":
            return f"{head}: {s.message or 'rolled back'}"
        case "paused":
            return f"{head}: paused: {counts}{elapsed}"
        case _:
            if s.started_at is None:
                return f"{head}: no rollout under way (first start): {counts}"
            return f"{head}: rolling out: {counts}{elapsed}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _key(s: RolloutRow) -> tuple[object, ...]:
    """What a new progress line is printed for (not the elapsed time alone)."""
    return (s.revision, s.state, s.new_ready, s.new_available, s.desired, s.old_remaining)


def _show(s: RolloutRow, output: Format, *, followed: bool = False) -> None:
    if output is Format.json:
        sys.stdout.write(msgspec.json.encode(s).decode() + "\n")
    else:
        typer.echo(safe(progress_line(s, time.time(), followed=followed)))
    sys.stdout.flush()


async def follow(stack: str, pod: str, output: Format) -> int:
    """Print the rollout's progress until it ends; its exit code."""
    last: tuple[object, ...] | None = None
    followed = False
    request = Request(verb="rollout_status", stack=stack, name=pod, follow=True)
    async for line in client.stream_lines(common.socket(), request):
        data = msgspec.json.decode(line)
        if isinstance(data, dict) and data.get("ok") is False:
            raise common.fail(str(data.get("error") or "request failed"))
        s = msgspec.convert(data, RolloutRow)
        code = verdict(s)
        followed = followed or code is None
        if _key(s) != last or code is not None:
            _show(s, output, followed=followed)
            last = _key(s)
        if code is not None:
            return code
    raise common.fail(
        f"{stack}/{pod}: podctl stopped, or the stack went down, before the rollout ended"
    )


@app.command()
def status(
    target: Target,
    timeout: Annotated[
        str | None,
        typer.Option("--timeout", help="give up (exit 1) after this long, e.g. 5m"),
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch/--no-watch", help="follow until the rollout ends")
    ] = True,
    output: Annotated[
        Format, typer.Option("-o", "--output", help="table (progress lines) or json (lines)")
    ] = Format.table,
) -> None:
    """Follow a pod's rollout: exit 0 when complete, 1 when failed or rolled back."""
    stack, pod = split_target(target)
    limit = math.inf
    if timeout is not None:
        from podctl.spec.units import parse_duration

        try:
            limit = parse_duration(timeout)
        except ValueError as exc:
            raise common.fail(f"--timeout {timeout}: {exc}", EXIT_BAD_INPUT) from exc
    if not watch:
        s = msgspec.convert(
            _ask(Request(verb="rollout_status", stack=stack, name=pod)).data, RolloutRow
        )
        _show(s, output)
        raise typer.Exit(EXIT_FAIL if s.state in ("failed", "rolled-back") else EXIT_OK)

    async def go() -> int | None:
        with anyio.move_on_after(limit):
            return await follow(stack, pod, output)
        return None

    try:
        code = anyio.run(go)
    except client.NotRunning as exc:
        raise common.fail(NOT_RUNNING) from exc
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if code is None:
        raise common.fail(f"{stack}/{pod}: rollout not finished after {timeout}")
    raise typer.Exit(code)


# -- history -------------------------------------------------------------------------


@app.command()
def history(target: Target, output: OutputOpt = Format.table) -> None:
    """List a pod's revisions: when, why (cause), how their rollout ended (status)."""
    stack, pod = split_target(target)
    reply = common.ask(Request(verb="rollout_history", stack=stack, name=pod))
    if reply is None:
        rows = offline_history(stack, pod)
    elif not reply.ok:
        raise common.fail(reply.error or "request failed")
    else:
        rows = msgspec.convert(reply.data, list[HistoryRow])
    if output is Format.table:
        import datetime

        table = [
            {
                **msgspec.to_builtins(r),
                "revision": r.revision[:12],
                "created": datetime.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M:%S"),
            }
            for r in rows
        ]
        print_data(table, output, HISTORY_COLUMNS)
    elif output is Format.json:
        sys.stdout.write(json_text(msgspec.to_builtins(rows)) + "\n")
    else:
        print_data(rows, output, HISTORY_COLUMNS)


def offline_history(stack: str, pod: str) -> list[HistoryRow]:
    """From the state directory, when no podctl runs: the revisions recorded and the
    pod's last rollout record (the revision it ran last is `current`)."""
    from podctl.api.rollouts import history_rows
    from podctl.app import LEDGER_FILE
    from podctl.reconcile.ledger import Ledger, rollout_key
    from podctl.storage import paths
    from podctl.storage.errors import StorageError
    from podctl.storage.history import RevisionHistory
    from podctl.storage.statedir import StateDir, StateFile

    try:
        state = StateDir(paths.state_dir())
        records = RevisionHistory(state).list(stack, pod)
    except (StorageError, OSError, ValueError) as exc:
        raise common.fail(f"reading the revision history: {exc}") from exc
    if not records:
        raise common.fail(f"{NOT_RUNNING}, and the state directory has no history of {stack}/{pod}")
    rec = StateFile(state, LEDGER_FILE, Ledger, Ledger).load().rollouts.get(rollout_key(stack, pod))
    current = records[-1].revision
    if rec is not None:
        current = rec.override.revision if rec.override is not None else rec.revision
    err("no podctl run is active: history as of its last run (state directory)")
    return history_rows(records, rec, current)


# -- undo / pause / resume ---------------------------------------------------------------


@app.command()
def undo(
    target: Target,
    to_revision: Annotated[
        str | None,
        typer.Option(
            "--to-revision", help="a revision (or a unique prefix) from `rollout history`"
        ),
    ] = None,
) -> None:
    """Go back to the last fully available revision before the current one (or R).

    An override: it holds, across restarts too, until the pod's entry in the file changes.
    """
    stack, pod = split_target(target)
    reply = _ask(Request(verb="rollout_undo", stack=stack, name=pod, revision=to_revision))
    revision = str(reply.data.get("revision", "")) if isinstance(reply.data, dict) else ""
    typer.echo(safe(f"{stack}/{pod} rolling back to revision {revision[:12]}"))


@app.command()
def pause(target: Target) -> None:
    """Hold a pod's rollout where it is (restarts still happen) until `resume`."""
    stack, pod = split_target(target)
    _ask(Request(verb="rollout_pause", stack=stack, name=pod))
    typer.echo(safe(f"{stack}/{pod} paused"))


@app.command()
def resume(target: Target) -> None:
    """Let a paused rollout go on; its progress deadline runs again from now."""
    stack, pod = split_target(target)
    _ask(Request(verb="rollout_resume", stack=stack, name=pod))
    typer.echo(safe(f"{stack}/{pod} resumed"))
