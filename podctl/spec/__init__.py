"""Stack files: schema, loading with file:line errors, normalisation to DesiredState.

The public entry points are synchronous (they read files and hash build
contexts); async callers run them with `anyio.to_thread.run_sync`.

    stacks = load_stacks(["shop.yaml"], overrides={"web_replicas": "5"})

Every problem in every file is collected before anything is raised, so
`podctl validate` shows them all at once and `podctl run` starts nothing of a
stack that is only half right.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from podctl.spec.errors import FieldError, SpecError, SpecIssue
from podctl.spec.limits import DEFAULT_MAX_REPLICAS
from podctl.spec.loader import LoadedFile, load_file, redact
from podctl.spec.normalise import normalise

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from podctl.spec.model import DesiredStack

__all__ = [
    "DEFAULT_MAX_REPLICAS",
    "FieldError",
    "SpecError",
    "SpecIssue",
    "load_stack",
    "load_stacks",
    "validate",
]


def _load(
    path: str | os.PathLike[str],
    overrides: Mapping[str, str] | None,
    environ: Mapping[str, str],
    port_start: int | None,
    max_replicas: int,
) -> tuple[LoadedFile, DesiredStack | None, list[SpecIssue]]:
    loaded = load_file(path, overrides, environ)
    issues = list(loaded.issues)
    desired: DesiredStack | None = None
    if loaded.stack is not None:
        desired, errors = normalise(
            loaded.stack,
            source=loaded.source,
            environ=environ,
            port_start=port_start,
            max_replicas=max_replicas,
        )
        found = [loaded.issue(e.path, e.message) for e in errors]
        issues.extend(redact(found, loaded.secret_sources, os.path.dirname(loaded.source), environ))
    issues.sort(key=lambda i: (i.line, i.column))
    return loaded, desired, issues


def load_stack(
    path: str | os.PathLike[str],
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    port_start: int | None = None,
    max_replicas: int = DEFAULT_MAX_REPLICAS,
) -> DesiredStack:
    """Load, check and normalise one stack file (or a directory holding one).

    `overrides` are `--set k=v` values; `environ` defaults to `os.environ` and
    feeds both `${VAR}` and `secrets.<x>.env`; `port_start` is the lowest host
    port this process may bind (default: worked out from the euid and kernel);
    `max_replicas` is the most replicas one pod may ask for (`replicas: 1e9` is
    refused here, before anything is planned). Raises SpecError with every
    problem found.
    """
    return load_stacks(
        [path], overrides, environ, port_start=port_start, max_replicas=max_replicas
    )[0]


def load_stacks(
    paths: Iterable[str | os.PathLike[str]],
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    port_start: int | None = None,
    max_replicas: int = DEFAULT_MAX_REPLICAS,
) -> list[DesiredStack]:
    """Load several stack files; they must not clash with each other.

    Besides each file's own problems: two files may not define the same stack
    name, and no two services (in any of the stacks) may take the same host
    port. Every pod's `replicas` is at most `max_replicas` (default
    DEFAULT_MAX_REPLICAS, 1,000). Raises SpecError collecting the problems of
    all files.
    """
    env = os.environ if environ is None else environ
    issues: list[SpecIssue] = []
    stacks: list[DesiredStack] = []
    names: dict[str, str] = {}  # stack name -> file that defines it
    ports: dict[int, str] = {}  # host port -> "service `x` of stack `y` (file)"
    for path in paths:
        loaded, desired, file_issues = _load(path, overrides, env, port_start, max_replicas)
        issues.extend(file_issues)
        if desired is None:
            continue
        if desired.name in names:
            issues.append(
                loaded.issue(
                    ("name",),
                    f"stack `{desired.name}` is also defined in {names[desired.name]}",
                )
            )
            continue
        names[desired.name] = loaded.display
        clash = False
        for service in desired.services:
            if service.port is None:
                continue
            owner = ports.get(service.port)
            if owner is not None:
                clash = True
                issues.append(
                    loaded.issue(
                        ("services", service.name, "port"),
                        f"host port {service.port} is already used by {owner}",
                    )
                )
            else:
                ports[service.port] = (
                    f"service `{service.name}` of stack `{desired.name}` ({loaded.display})"
                )
        if not clash:
            stacks.append(desired)
    if issues:
        raise SpecError(issues)
    return stacks


def validate(
    paths: Iterable[str | os.PathLike[str]],
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    port_start: int | None = None,
    max_replicas: int = DEFAULT_MAX_REPLICAS,
) -> list[SpecIssue]:
    """Every problem in `paths` (empty when all are valid); for `podctl validate`."""
    try:
        load_stacks(paths, overrides, environ, port_start=port_start, max_replicas=max_replicas)
    except SpecError as exc:
        return exc.issues
    return []
