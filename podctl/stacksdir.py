"""`podctl run --stacks-dir DIR`: every `*.yaml`, `*.yml` and `*.toml` in DIR is a stack.

Unlike files named on the command line, which load all together or not at all, the
files of a stacks directory are independent: one bad file must not stop the others.
So each file loads on its own, and a file that does not load (or clashes with another
file: the same stack name, the same host port) is reported and

* if its stack was running, the stack keeps running as last loaded (an edit that
  breaks a file is a mistake to fix, not a request to take the stack down);
* if it is new, nothing starts.

A file removed from the directory takes its stack down (containers and network; its
volumes stay). In a clash the file that already ran keeps its name and ports, so a new
file can never take a running stack over; between two new files the first in name
order wins.

Hidden files (`.name.yaml`, editors' lock and swap files) are not stacks.

    stacks = StacksDir(path, overrides, environ)
    try:
        running = stacks.load()
    except PartialLoad as exc:   # some files bad: exc.issues to report, exc.stacks to run
        running = exc.stacks
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from podctl.spec import DEFAULT_MAX_REPLICAS, load_stacks
from podctl.spec.errors import SpecError, SpecIssue

if TYPE_CHECKING:
    from collections.abc import Mapping

    from podctl.spec.model import DesiredStack

STACK_SUFFIXES = (".yaml", ".yml", ".toml")


class PartialLoad(SpecError):
    """Some files of a stacks directory did not load; `stacks` are the ones to run."""

    def __init__(self, issues: list[SpecIssue], stacks: list[DesiredStack]) -> None:
        super().__init__(issues)
        self.stacks = stacks


def is_stack_file(path: str | os.PathLike[str]) -> bool:
    """A name a stacks directory treats as a stack file (not whether it exists)."""
    name = os.path.basename(path)
    return not name.startswith(".") and name.endswith(STACK_SUFFIXES)


def stack_files(directory: Path) -> list[Path]:
    """The stack files in `directory` (regular files or links to them), sorted by name.

    Blocking: run it in a worker thread on the event loop.
    """
    out = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if is_stack_file(entry.name) and entry.is_file():  # follows symlinks
                out.append(directory / entry.name)
    return sorted(out)


class StacksDir:
    """Loads a stacks directory file by file, remembering each file's last good stack.

    `load` is blocking and not reentrant (the watcher and SIGHUP both run it in a worker
    thread, one at a time).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        overrides: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        max_replicas: int = DEFAULT_MAX_REPLICAS,
    ) -> None:
        self.directory = Path(os.path.abspath(directory))
        self.overrides = dict(overrides or {})
        self.environ = os.environ if environ is None else environ
        self.max_replicas = max_replicas
        # file -> the stack it defined when it last loaded (and did not clash)
        self._good: dict[Path, DesiredStack] = {}

    def load(self) -> list[DesiredStack]:
        """The stacks to run now; raises PartialLoad when some files are bad.

        A missing or unreadable directory is a SpecError of its own (nothing runs from
        it, but what ran keeps running: the caller keeps its last good set).
        """
        try:
            files = stack_files(self.directory)
        except OSError as exc:
            raise SpecError(
                [SpecIssue(str(self.directory), 1, 1, "", f"cannot read stacks directory: {exc}")]
            ) from exc
        issues: list[SpecIssue] = []
        loaded: dict[Path, DesiredStack] = {}
        for path in files:
            try:
                stacks = load_stacks(
                    [path], self.overrides, self.environ, max_replicas=self.max_replicas
                )
            except SpecError as exc:
                issues.extend(exc.issues)
                if path in self._good:
                    loaded[path] = self._good[path]  # the last good content keeps running
                continue
            if stacks:
                loaded[path] = stacks[0]
        # Files that ran already claim names and ports first.
        order = sorted(loaded, key=lambda p: (p not in self._good, str(p)))
        names: dict[str, Path] = {}
        ports: dict[int, str] = {}
        out: list[DesiredStack] = []
        good: dict[Path, DesiredStack] = {}
        for path in order:
            stack = loaded[path]
            clash = _clash(stack, path, names, ports)
            if clash is not None:
                issues.append(SpecIssue(str(path), 1, 1, *clash))
                continue
            names[stack.name] = path
            for svc in stack.services:
                if svc.port is not None:
                    ports[svc.port] = f"service `{svc.name}` of stack `{stack.name}` ({path})"
            good[path] = stack
            out.append(stack)
        self._good = good
        out.sort(key=lambda s: s.name)
        if issues:
            raise PartialLoad(issues, out)
        return out


def _clash(
    stack: DesiredStack, path: Path, names: dict[str, Path], ports: dict[int, str]
) -> tuple[str, str] | None:
    """(field, message) when `stack` clashes with a stack taken already."""
    if stack.name in names:
        return "name", f"stack `{stack.name}` is also defined in {names[stack.name]}"
    for svc in stack.services:
        if svc.port is not None and svc.port in ports:
            field = f"services.{svc.name}.port"
            return field, f"host port {svc.port} is already used by {ports[svc.port]}"
    return None


__all__ = ["STACK_SUFFIXES", "PartialLoad", "StacksDir", "is_stack_file", "stack_files"]
