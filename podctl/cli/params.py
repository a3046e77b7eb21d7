"""`-f values.yaml` and `--set a.b=c`: the parameters every stack-reading command takes.

Precedence, most specific first: `--set` > values files (a later `-f` wins) >
the environment > the stack file's `variables:` (`podctl.spec.interpolate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from podctl.cli import common
from podctl.cli.common import EXIT_BAD_INPUT
from podctl.cli.output import err
from podctl.spec.errors import SpecError
from podctl.spec.values import merge_parameters

ValuesOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "-f",
        "--values",
        help="a values file (YAML or TOML); repeatable, a later file wins; --set wins over all",
    ),
]


def parameters(values: list[Path] | None, sets: list[str] | None) -> dict[str, str]:
    """The merged `overrides` of a load; bad values files exit 2 with FILE:LINE:COL."""
    try:
        return merge_parameters(values or [], common.overrides(sets))
    except SpecError as exc:
        for issue in exc.issues:
            err(str(issue))
        raise typer.Exit(EXIT_BAD_INPUT) from None
