"""`podctl dev FILE...`: `podctl run` with the stacks' `develop.watch` rules active.

Everything runs in the one podctl process: the controller, probes, proxies, hot
reload of the stack files, and the watch rules (`podctl.dev.session`). Another
terminal can `podctl get`, `podctl logs` or `podctl events` against it, so there
is nothing to detach. `podctl run` ignores `develop:`: production never syncs.
"""

from __future__ import annotations

from pathlib import Path  # noqa: TC003 (typer reads the annotations at run time)
from typing import Annotated

import typer

from podctl.cli.common import SetOpt  # noqa: TC001 (as above)
from podctl.cli.params import ValuesOpt, parameters
from podctl.spec.limits import DEFAULT_MAX_REPLICAS


def dev(
    files: Annotated[list[Path], typer.Argument(help="stack files (YAML or TOML)")],
    values: ValuesOpt = None,
    set_: SetOpt = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="leave containers running on exit, to be adopted")
    ] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
    max_replicas: Annotated[
        int, typer.Option("--max-replicas", min=0, help="most replicas one pod may ask for")
    ] = DEFAULT_MAX_REPLICAS,
) -> None:
    """Run stacks for development: `run`, plus the pods' develop.watch rules (sync,
    restart, exec, rebuild) on every save."""
    from podctl.cli.runner import run_foreground

    code = run_foreground(
        files,
        parameters(values, set_),
        watch=True,
        keep=keep,
        verbose=verbose,
        max_replicas=max_replicas,
        dev=True,
    )
    raise typer.Exit(code)
