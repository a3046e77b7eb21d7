"""Load input files of either kind: podctl stack files and Kubernetes manifests.

A file is Kubernetes YAML when one of its documents has `apiVersion` and
`kind`; a directory is a set of manifests when it holds no stack file but
YAML files of that kind. Stack files take the usual path
(`podctl.spec.load_stacks`); Kubernetes files are imported into `StackFile`s
(`kube_in`) and then normalised the same way, so revisions match.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from podctl.bridge import kyaml
from podctl.bridge.kube_in import ImportedStack, Importer, stack_name_from_stem
from podctl.bridge.report import FidelityEntry, sort_entries
from podctl.spec import DEFAULT_MAX_REPLICAS, SpecError
from podctl.spec import load_stacks as load_stack_files
from podctl.spec.errors import SpecIssue, render_path
from podctl.spec.limits import MAX_FILE_BYTES
from podctl.spec.loader import STACK_FILE_NAMES
from podctl.spec.normalise import normalise

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, MutableMapping

    from podctl.spec.model import DesiredStack

log = logging.getLogger("podctl.bridge")

_YAML_SUFFIXES = (".yaml", ".yml", ".json")
_MAX_FILE = MAX_FILE_BYTES  # the stack files' limit


class LoadedInputs:
    """Stacks from any mix of stack files and Kubernetes manifests."""

    def __init__(self) -> None:
        self.stacks: list[DesiredStack] = []
        self.report: list[FidelityEntry] = []
        self.issues: list[SpecIssue] = []
        # stack -> secret -> where its value came from ("Secret/db key password")
        self.secret_sources: dict[str, dict[str, str]] = {}
        # Values of Kubernetes secrets, as the env vars their `secrets.<x>.env` name.
        # Memory only: whoever delivers the secrets merges this into its environ.
        self.secret_env: dict[str, str] = {}


def _read(path: Path) -> str | None:
    try:
        if path.stat().st_size > _MAX_FILE:
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _manifest_files(path: Path) -> list[Path] | None:
    """The Kubernetes files `path` stands for, or None when it is a stack file."""
    if path.is_dir():
        if any((path / n).is_file() for n in STACK_FILE_NAMES):
            return None
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _YAML_SUFFIXES)
        found = [p for p in files if _manifest_files(p)]
        return found or None
    if path.suffix.lower() == ".toml":
        return None
    text = _read(path)
    if text is None:
        return None
    try:
        docs = kyaml.parse_documents(text)
    except kyaml.ParseError:
        # A stack file with a typo reads the same: let the stack loader explain it,
        # unless the text plainly starts like a manifest.
        head = text.lstrip()
        return [path] if head.startswith(("apiVersion:", "kind:")) else None
    for doc in docs:
        if doc.data is None:
            continue
        if isinstance(doc.data, dict) and ("apiVersion" in doc.data or "kind" in doc.data):
            return [path]
        if isinstance(doc.data, dict) and ("pods" in doc.data or "name" in doc.data):
            return None
    return None


def is_kubernetes(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is Kubernetes YAML (a manifest file or a directory of them)."""
    return _manifest_files(Path(path)) is not None


def load(
    paths: Iterable[str | os.PathLike[str]],
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    port_start: int | None = None,
    max_replicas: int = DEFAULT_MAX_REPLICAS,
) -> LoadedInputs:
    """Load stack files and Kubernetes manifests; never raises for bad content.

    Problems land in `issues` (FILE:LINE:COL, exit 2); what did not carry over
    exactly from Kubernetes lands in `report`.
    """
    env = dict(os.environ if environ is None else environ)
    out = LoadedInputs()
    given = [Path(p) for p in paths]
    kinds = [(p, _manifest_files(p)) for p in given]
    if all(files is None for _, files in kinds):
        try:
            out.stacks = load_stack_files(
                given, overrides, env, port_start=port_start, max_replicas=max_replicas
            )
        except SpecError as exc:
            out.issues = exc.issues
        return out

    importer = Importer()
    for path, files in kinds:
        if files is None:
            try:
                out.stacks.extend(
                    load_stack_files(
                        [path], overrides, env, port_start=port_start, max_replicas=max_replicas
                    )
                )
            except SpecError as exc:
                out.issues.extend(exc.issues)
            continue
        default = stack_name_from_stem(path.name if path.is_dir() else path.stem)
        for file in files:
            display = os.fspath(file)
            text = _read(file)
            if text is None:
                out.issues.append(
                    SpecIssue(display, 1, 1, "", "cannot read the file (not UTF-8 text?)")
                )
                continue
            try:
                docs = kyaml.parse_documents(text)
            except kyaml.ParseError as exc:
                out.issues.append(SpecIssue(display, exc.line, exc.column, "", exc.message))
                continue
            importer.add_file(display, os.path.abspath(file), docs, default)
    result = importer.finish()
    out.issues.extend(result.issues)
    out.report.extend(result.report)
    if not result.issues:
        for imported in result.stacks:
            desired = _normalise(imported, env, port_start, max_replicas, out)
            if desired is not None:
                out.stacks.append(desired)
    _cross_check(out)
    out.report = sort_entries(out.report)
    return out


def _normalise(
    imported: ImportedStack,
    environ: dict[str, str],
    port_start: int | None,
    max_replicas: int,
    out: LoadedInputs,
) -> DesiredStack | None:
    if imported.stack is None:
        return None
    desired, errors = normalise(
        imported.stack,
        source=imported.source,
        environ={**environ, **imported.secret_env},
        port_start=port_start,
        max_replicas=max_replicas,
    )
    for error in errors:
        origin = imported.locate(error.path)
        if origin is None:
            field = render_path(error.path)
            out.issues.append(SpecIssue(imported.file, 1, 1, field, error.message))
            continue
        obj, k8s_path = origin
        line, col = obj.at(k8s_path)
        field = f"{obj.ref} {render_path(k8s_path)}" if k8s_path else obj.ref
        out.issues.append(SpecIssue(obj.file, line, col, field, error.message))
    if desired is not None:
        out.secret_sources[desired.name] = dict(imported.secret_sources)
        out.secret_env.update(imported.secret_env)
    return desired


def _cross_check(out: LoadedInputs) -> None:
    """Stacks from different files: names and host ports must not clash."""
    names: dict[str, str] = {}
    ports: dict[int, str] = {}
    kept: list[DesiredStack] = []
    for stack in out.stacks:
        if stack.name in names:
            out.issues.append(
                SpecIssue(
                    stack.source,
                    1,
                    1,
                    "name",
                    f"stack `{stack.name}` is also defined in {names[stack.name]}",
                )
            )
            continue
        names[stack.name] = stack.source
        clash = False
        for service in stack.services:
            if service.port is None:
                continue
            if service.port in ports:
                clash = True
                out.issues.append(
                    SpecIssue(
                        stack.source,
                        1,
                        1,
                        f"services.{service.name}.port",
                        f"host port {service.port} is already used by {ports[service.port]}",
                    )
                )
            else:
                ports[service.port] = f"service `{service.name}` of stack `{stack.name}`"
        if not clash:
            kept.append(stack)
    out.stacks = kept
    out.issues.sort(key=lambda i: (i.file, i.line, i.column))


def load_stacks(
    paths: Iterable[str | os.PathLike[str]],
    overrides: Mapping[str, str] | None = None,
    environ: MutableMapping[str, str] | None = None,
    *,
    port_start: int | None = None,
    max_replicas: int = DEFAULT_MAX_REPLICAS,
) -> list[DesiredStack]:
    """`podctl.spec.load_stacks` for `podctl run`, accepting Kubernetes YAML too.

    Same contract (raises SpecError with every problem; stack files load exactly
    as there), plus what running Kubernetes input needs:

    - the values of its Secrets are added to `environ` in place, under the env
      var names their `secrets.<x>.env` carry. `environ` is the mapping the run
      reads env-sourced secrets from (`storage.files.EnvironStackFiles` keeps a
      reference to it), so a reload that changes a Secret's value is seen by the
      next materialisation. They live in memory only; a secret removed from the
      file leaves a stale variable nobody refers to;
    - the fidelity report is logged as warnings (`podctl.bridge`) at each load,
      so `podctl run` shows what did not carry over at start and after an edit.
    """
    env: MutableMapping[str, str] = dict(os.environ) if environ is None else environ
    loaded = load(paths, overrides, env, port_start=port_start, max_replicas=max_replicas)
    if loaded.issues:
        raise SpecError(loaded.issues)
    env.update(loaded.secret_env)
    if loaded.report:
        log.warning(
            "%d fields or objects of the Kubernetes input did not carry over exactly:",
            len(loaded.report),
        )
        for entry in loaded.report:
            log.warning("  %s", entry)
    return loaded.stacks


__all__ = ["LoadedInputs", "is_kubernetes", "load", "load_stacks"]
