"""The `podctl` command line (kubectl-like verbs).

While `podctl run` is active the verbs ask it over its control socket; without
one, `get`, `down`, `logs`, `exec` and `describe` still work from Docker labels.
Exit codes: 0 ok, 1 failure at run time, 2 bad input.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import msgspec
import typer

from podctl.api import client
from podctl.api.schema import PodRow, Request, ServiceRow, StackRow
from podctl.cli import common, registry
from podctl.cli.common import EXIT_BAD_INPUT, EXIT_FAIL, OutputOpt, SetOpt
from podctl.cli.dev import dev as dev_command
from podctl.cli.output import Format, err, local_times, print_data, safe
from podctl.cli.params import ValuesOpt, parameters
from podctl.cli.rollout import app as rollout_app
from podctl.spec.limits import DEFAULT_MAX_REPLICAS

app = typer.Typer(
    name="podctl",
    help="The Kubernetes model (pods, replicas, services, probes) on one Docker host.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"podctl {version('podctl')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """The Kubernetes model (pods, replicas, services, probes) on one Docker host."""


POD_COLUMNS = [
    ("STACK", "stack"),
    ("NAME", "name"),
    ("PHASE", "phase"),
    ("READY", "ready"),
    ("RESTARTS", "restarts"),
    ("AGE", "age"),
    ("REVISION", "revision"),
    ("IP", "ip"),
    ("REASON", "reason"),
]
SERVICE_COLUMNS = [
    ("STACK", "stack"),
    ("NAME", "name"),
    ("POD", "pod"),
    ("LISTEN", "listen"),
    ("IN-STACK", "in_stack"),
    ("ENDPOINTS", "endpoints"),
    ("ERROR", "error"),
]
STACK_COLUMNS = [
    ("NAME", "name"),
    ("PODS", "pods"),
    ("REPLICAS", "replicas"),
    ("READY", "ready"),
    ("SERVICES", "services"),
    ("ENGINE", "engine"),
    ("SOURCE", "source"),
]

# -- run / validate ------------------------------------------------------------


@app.command()
def run(
    files: Annotated[
        list[Path] | None, typer.Argument(help="stack files (YAML or TOML)", show_default=False)
    ] = None,
    stacks_dir: Annotated[
        Path | None,
        typer.Option(
            "--stacks-dir",
            help="run every *.yaml/*.yml/*.toml in DIR as a stack; files added or removed "
            "start or stop their stack",
            file_okay=False,
        ),
    ] = None,
    set_: SetOpt = None,
    values: ValuesOpt = None,
    no_watch: Annotated[bool, typer.Option("--no-watch", help="do not hot-reload")] = False,
    keep: Annotated[
        bool, typer.Option("--keep", help="leave containers running on exit, to be adopted")
    ] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
    metrics: Annotated[
        str | None,
        typer.Option(
            "--metrics", help="serve Prometheus metrics at HOST:PORT (e.g. 127.0.0.1:9100)"
        ),
    ] = None,
    kernel_proxy: Annotated[
        bool,
        typer.Option(
            "--kernel-proxy",
            help="serve host ports with nftables DNAT (root, nft) where possible; "
            "the userspace proxy remains the fallback",
        ),
    ] = False,
    max_replicas: Annotated[
        int, typer.Option("--max-replicas", min=0, help="most replicas one pod may ask for")
    ] = DEFAULT_MAX_REPLICAS,
    log_format: Annotated[
        str, typer.Option("--log-format", help="text or json (one line per event)")
    ] = "text",
    ready_timeout: Annotated[
        float | None,
        typer.Option(
            "--ready-timeout",
            min=0,
            help="under systemd: send READY after this many seconds even if not every "
            "pod is ready (STATUS says what is not); default 240",
        ),
    ] = None,
    view: Annotated[
        bool, typer.Option("--view", help="redraw a live view in place (on a terminal)")
    ] = False,
) -> None:
    """Run stacks in the foreground: reconcile, probe, proxy, hot-reload."""
    from podctl.cli.runner import run_foreground

    if bool(files) == (stacks_dir is not None):
        raise common.fail("give stack files or --stacks-dir DIR (not both)", EXIT_BAD_INPUT)
    if log_format not in ("text", "json"):
        raise common.fail(f"--log-format {log_format}: use text or json", EXIT_BAD_INPUT)

    metrics_addr = None
    if metrics is not None:
        host, _, port = metrics.rpartition(":")
        if not host or not port.isdigit():
            raise common.fail(f"--metrics {metrics}: expected HOST:PORT", EXIT_BAD_INPUT)
        metrics_addr = (host, int(port))

    code = run_foreground(
        files or [],
        parameters(values, set_),
        watch=not no_watch,
        keep=keep,
        verbose=verbose,
        metrics=metrics_addr,
        kernel_fast_path=kernel_proxy,
        max_replicas=max_replicas,
        stacks_dir=stacks_dir,
        log_format=log_format,
        ready_timeout_s=ready_timeout,
        view=view,
    )
    raise typer.Exit(code)


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument()],
    set_: SetOpt = None,
    values: ValuesOpt = None,
    max_replicas: Annotated[
        int, typer.Option("--max-replicas", min=0, help="most replicas one pod may ask for")
    ] = DEFAULT_MAX_REPLICAS,
    report: Annotated[
        bool,
        typer.Option("--report", help="list every field or kind that did not carry over exactly"),
    ] = False,
) -> None:
    """Check stack files or Kubernetes YAML: exit 0, or exit 2 with FILE:LINE:COL: message lines."""
    from podctl import bridge

    loaded = bridge.load(
        files, parameters(values, set_), dict(os.environ), max_replicas=max_replicas
    )
    if report:
        for entry in loaded.report:
            typer.echo(str(entry))
    elif loaded.report:
        err(f"{len(loaded.report)} fields or objects did not carry over exactly (see --report)")
    if loaded.issues:
        for issue in loaded.issues:
            err(str(issue))
        raise typer.Exit(EXIT_BAD_INPUT)
    for st in loaded.stacks:
        typer.echo(f"{st.source}: stack {st.name} is valid ({len(st.pods)} pods)")


@app.command()
def render(
    files: Annotated[list[Path], typer.Argument(help="stack files or Kubernetes YAML")],
    set_: SetOpt = None,
    values: ValuesOpt = None,
    output: Annotated[Format, typer.Option("-o", "--output", help="json or yaml")] = Format.json,
) -> None:
    """Print the fully resolved stacks (secret values redacted)."""
    from podctl import bridge

    loaded = bridge.load(files, parameters(values, set_), dict(os.environ))
    if loaded.issues:
        for issue in loaded.issues:
            err(str(issue))
        raise typer.Exit(EXIT_BAD_INPUT)
    data = [bridge.render_stack(s, loaded.secret_sources.get(s.name)) for s in loaded.stacks]
    if output is Format.yaml:
        import yaml

        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    else:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(data), indent=2).decode() + "\n")


@app.command()
def export(
    files: Annotated[list[Path], typer.Argument(help="stack files or Kubernetes YAML")],
    to: Annotated[str, typer.Option("--to", help="kubernetes or compose")],
    set_: SetOpt = None,
    values: ValuesOpt = None,
    include_secret_values: Annotated[
        bool,
        typer.Option("--include-secret-values", help="write secret values (Kubernetes only)"),
    ] = False,
) -> None:
    """Print the stacks as Kubernetes documents or a compose file; losses go to stderr."""
    from podctl import bridge

    if to not in ("kubernetes", "compose"):
        raise common.fail(f"--to {to}: expected kubernetes or compose", EXIT_BAD_INPUT)
    loaded = bridge.load(files, parameters(values, set_), dict(os.environ))
    if loaded.issues:
        for issue in loaded.issues:
            err(str(issue))
        raise typer.Exit(EXIT_BAD_INPUT)
    text, report = bridge.export(
        loaded, to, environ=dict(os.environ), include_secret_values=include_secret_values
    )
    for entry in [*loaded.report, *report]:
        err(f"warning: {entry}")
    sys.stdout.write(text)


# -- get / describe ------------------------------------------------------------


@app.command()
def get(
    kind: Annotated[str, typer.Argument(help="pods | services | stacks")],
    stack: Annotated[str | None, typer.Argument(help="only this stack")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """List pods (replicas), services or stacks."""
    kinds = {
        "pods": "pods",
        "pod": "pods",
        "po": "pods",
        "services": "services",
        "service": "services",
        "svc": "services",
        "stacks": "stacks",
        "stack": "stacks",
    }
    k = kinds.get(kind)
    if k is None:
        raise common.fail(f"unknown kind {kind!r}: use pods, services or stacks", EXIT_BAD_INPUT)
    verb = {"pods": "get_pods", "services": "get_services", "stacks": "get_stacks"}[k]
    reply = common.ask(Request(verb=verb, stack=stack))  # type: ignore[arg-type]
    if reply is not None:
        if not reply.ok:
            raise common.fail(reply.error or "request failed")
        data = reply.data
    else:
        from podctl.cli import offline

        data = msgspec.to_builtins(common.offline(getattr(offline, f"get_{k}"), stack))
    row_type: Any = {"pods": PodRow, "services": ServiceRow, "stacks": StackRow}[k]
    rows = msgspec.convert(data, list[row_type])
    columns = {"pods": POD_COLUMNS, "services": SERVICE_COLUMNS, "stacks": STACK_COLUMNS}[k]
    if k == "services" and output is Format.table:
        for r in rows:
            r.endpoints = [f"{e.address}{'' if e.ready else ' (not ready)'}" for e in r.endpoints]
    if not rows and output is Format.table:
        typer.echo(f"no {k} in stack {stack}" if stack else f"no {k}")
        return
    print_data(rows, output, columns)


@app.command()
def describe(
    kind: Annotated[str, typer.Argument(help="pod | service")],
    name: Annotated[str, typer.Argument(help="container name, pod-N, stack/pod-N or id prefix")],
    output: OutputOpt = Format.yaml,
) -> None:
    """Show one replica (probes, last results, events) or one service (counters)."""
    verb = "describe_service" if kind in ("service", "services", "svc") else "describe_pod"
    reply = common.ask(Request(verb=verb, name=name))  # type: ignore[arg-type]
    if reply is None:
        from podctl.cli import offline

        data = common.offline(offline.describe_pod, name) if verb == "describe_pod" else None
        if data is None:
            raise common.fail(f"no {kind} named {name!r}", EXIT_FAIL)
    elif not reply.ok:
        raise common.fail(reply.error or "request failed")
    else:
        data = reply.data
    fmt = Format.yaml if output is Format.table else output
    if fmt is Format.yaml:
        data = local_times(data)  # for reading; -o json keeps epoch seconds for scripts
    if fmt is Format.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(data), indent=2).decode() + "\n")
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))


# -- logs / exec / events ---------------------------------------------------------


@app.command()
def logs(
    name: Annotated[str, typer.Argument()],
    follow: Annotated[bool, typer.Option("-f", "--follow")] = False,
    tail: Annotated[int | None, typer.Option("--tail")] = None,
) -> None:
    """Print a replica's logs, or a stack's: every replica merged, `pod-N |` prefixes."""
    from podctl.cli import offline

    async def go(rt: Any) -> None:
        try:
            cid = await offline.resolve(rt, name)
        except LookupError:
            from podctl.cli.stacklogs import stack_logs

            if await stack_logs(rt, name, follow=follow, tail=tail):
                return
            raise
        out = sys.stdout.buffer
        async for chunk in rt.logs(cid, follow=follow, tail=tail):
            out.write(chunk)
            out.flush()

    try:
        common.offline(go)
    except LookupError as exc:
        raise common.fail(str(exc)) from exc
    except KeyboardInterrupt:
        pass


@app.command(name="exec", context_settings={"allow_extra_args": True})
def exec_(
    name: Annotated[str, typer.Argument()],
    command: Annotated[list[str], typer.Argument(help="-- CMD [ARGS...]")],
    timeout: Annotated[float, typer.Option("--timeout")] = 60.0,
) -> None:
    """Run a command in a replica; exits with the command's exit code."""
    from podctl.cli import offline

    async def go(rt: Any) -> int:
        cid = await offline.resolve(rt, name)
        result = await rt.exec(cid, command, timeout)
        sys.stdout.buffer.write(result.output)
        sys.stdout.flush()
        return int(result.exit_code)

    try:
        code = common.offline(go)
    except LookupError as exc:
        raise common.fail(str(exc)) from exc
    raise typer.Exit(code)


@app.command()
def events(
    stack: Annotated[str | None, typer.Argument()] = None,
    follow: Annotated[bool, typer.Option("-f", "--follow")] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Show what podctl did and why (needs a running `podctl run`)."""
    from podctl.api.schema import EventRow

    columns = [
        ("TIME", "time"),
        ("STACK", "stack"),
        ("OBJECT", "object"),
        ("REASON", "reason"),
        ("MESSAGE", "message"),
    ]

    def show(rows: list[EventRow]) -> None:
        if output is Format.table:
            import datetime

            for r in rows:
                t = datetime.datetime.fromtimestamp(r.time).strftime("%H:%M:%S")
                line = f"{t}  {r.stack or '-':<10} {r.object:<28} {r.reason:<16} {r.message}"
                typer.echo(safe(line))
        else:
            print_data(rows, output, columns)

    if not follow:
        reply = common.ask(Request(verb="events", stack=stack))
        if reply is None:
            raise common.fail("no podctl run is active (events live in the running instance)")
        show(msgspec.convert(reply.data, list[EventRow]))
        return

    async def go() -> None:
        async for line in client.stream_lines(
            common.socket(), Request(verb="events", stack=stack, follow=True)
        ):
            show([msgspec.json.decode(line, type=EventRow)])
            sys.stdout.flush()

    try:
        anyio.run(go)
    except client.NotRunning as exc:
        raise common.fail("no podctl run is active") from exc
    except KeyboardInterrupt:
        pass


# -- scale / down ----------------------------------------------------------------


@app.command()
def scale(
    target: Annotated[str, typer.Argument(help="STACK/POD")],
    replicas: Annotated[int, typer.Argument(min=0)],
) -> None:
    """Set a pod's replica count in the running podctl (until the file changes)."""
    if "/" not in target:
        raise common.fail("expected STACK/POD", EXIT_BAD_INPUT)
    stack, pod = target.split("/", 1)
    reply = common.ask(Request(verb="scale", stack=stack, name=pod, replicas=replicas))
    if reply is None:
        raise common.fail("no podctl run is active; change `replicas` in the stack file instead")
    if not reply.ok:
        raise common.fail(reply.error or "scale failed")
    typer.echo(f"{stack}/{pod} scaled to {replicas}")


@app.command()
def down(
    stack: Annotated[str, typer.Argument()],
    volumes: Annotated[bool, typer.Option("--volumes", help="also remove volumes")] = False,
) -> None:
    """Remove a stack's containers, then its network (volumes with --volumes)."""
    reply = common.ask(Request(verb="down", stack=stack, volumes=volumes))
    if reply is not None and reply.ok:
        typer.echo(f"stack {stack} removed")
        return
    from podctl.cli import offline
    from podctl.storage.errors import StorageError

    try:
        n = common.offline(lambda rt: offline.down(rt, stack, volumes=volumes))
    except StorageError as exc:  # the stack is run by a podctl on another socket
        raise common.fail(str(exc)) from exc
    typer.echo(f"stack {stack} removed ({n} objects)" if n else f"stack {stack}: nothing to remove")


# -- build / push (podctl/cli/registry.py) ----------------------------------------

registry.register(app)

# -- systemd ---------------------------------------------------------------------

app.add_typer(rollout_app, name="rollout")

systemd_app = typer.Typer(help="Run podctl as a systemd service.", no_args_is_help=True)
app.add_typer(systemd_app, name="systemd")


@systemd_app.command("unit")
def systemd_unit(
    stacks_dir: Annotated[
        Path, typer.Option("--stacks-dir", help="every *.yaml/*.yml/*.toml in it is a stack")
    ] = Path("/etc/podctl/stacks"),
    name: Annotated[str, typer.Option("--name", help="unit and directory name")] = "podctl",
    notify_reload: Annotated[
        bool, typer.Option("--notify-reload", help="Type=notify-reload (systemd >= 253)")
    ] = False,
    kernel_proxy: Annotated[
        bool, typer.Option("--kernel-proxy", help="run --kernel-proxy; allows nftables")
    ] = False,
) -> None:
    """Print a hardened systemd unit that runs every stack in a directory."""
    from pathlib import PurePosixPath

    from podctl.host import systemd as unit

    options = unit.UnitOptions(
        command=unit.podctl_command(),
        stacks_dir=PurePosixPath(stacks_dir.absolute()),
        name=name,
        notify_reload=notify_reload,
        kernel_proxy=kernel_proxy,
        read_paths=unit.interpreter_paths(),
    )
    try:
        text = unit.render_unit(options)
    except unit.UnitError as exc:
        raise common.fail(str(exc), EXIT_BAD_INPUT) from exc
    sys.stdout.write(text)


app.command("dev")(dev_command)


def main() -> None:
    app()
