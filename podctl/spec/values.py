"""Values files and `--set`: the Helm-like parameters of a stack file.

    podctl run stack.yaml -f values.yaml -f prod.yaml --set image.tag=1.37

A values file is a YAML (or TOML) mapping; nested mappings name their leaves
with dots, so `image: {tag: "1.36"}` sets `${image.tag}`. Files apply in the
order given (a later file wins), then `--set` (a dotted key sets one nested
leaf). The merged result is the `overrides` mapping of `load_stacks`, above the
environment and the file's `variables:` (precedence in `interpolate`).

Values are handed over as text, as `--set` values are: a whole-scalar
`${n}` is converted to the field's type when the stack file is checked, so
`replicas: ${n}` takes `n: 3` from a values file as it takes `--set n=3`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from podctl.spec import limits
from podctl.spec.errors import SpecError, SpecIssue, render_path
from podctl.spec.locator import ParseError, parse_toml, parse_yaml

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from podctl.spec.errors import FieldPath
    from podctl.spec.locator import Locator


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load_values_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """One values file as dotted name -> text. Raises SpecError (FILE:LINE:COL)."""
    display = os.fspath(path)

    def issue(line: int, col: int, field: str, message: str) -> SpecIssue:
        return SpecIssue(file=display, line=line, column=col, field=field, message=message)

    try:
        with open(path, "rb") as f:
            raw = f.read(limits.MAX_FILE_BYTES + 1)
        if len(raw) > limits.MAX_FILE_BYTES:
            raise SpecError([issue(1, 1, "", "values file larger than 10 MiB")])
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SpecError([issue(1, 1, "", f"cannot read values file: {reason}")]) from None
    try:
        if display.lower().endswith(".toml"):
            data, locator = parse_toml(text)
        else:
            data, locator, duplicates = parse_yaml(text)
            if duplicates:
                line, col = locator.find_key(duplicates[0].path)
                dup = duplicates[0]
                raise SpecError(
                    [issue(line, col, render_path(dup.path), f"duplicate key `{dup.key}`")]
                )
    except ParseError as exc:
        raise SpecError([issue(exc.line, exc.column, "", exc.message)]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError([issue(1, 1, "", "a values file must be a mapping")])
    out: dict[str, str] = {}
    problems: list[SpecIssue] = []
    _flatten(data, (), out, problems, locator, issue)
    if problems:
        raise SpecError(problems)
    return out


def _flatten(
    data: dict[Any, Any],
    path: FieldPath,
    out: dict[str, str],
    problems: list[SpecIssue],
    locator: Locator,
    issue: Any,
) -> None:
    for key, value in data.items():
        here: FieldPath = (*path, key)
        if not isinstance(key, str) or not key or "." in key:
            line, col = locator.find_key(here)
            problems.append(
                issue(line, col, render_path(here), "keys are names without dots (nest instead)")
            )
        elif isinstance(value, dict):
            _flatten(value, here, out, problems, locator, issue)
        elif isinstance(value, list):
            line, col = locator.find(here)
            problems.append(
                issue(line, col, render_path(here), "a value is a scalar or a mapping, not a list")
            )
        elif value is not None:
            out[".".join(str(p) for p in here)] = _text(value)


def merge_parameters(
    values_files: Iterable[str | os.PathLike[str]], sets: Mapping[str, str]
) -> dict[str, str]:
    """Values files in order (later wins), then `--set`: the `overrides` of a load.

    A name set to a scalar replaces everything below it (`--set image=x` drops
    `image.tag` from the files), as a later Helm value replaces a subtree.
    Raises SpecError with the problems of every file.
    """
    merged: dict[str, str] = {}
    issues: list[SpecIssue] = []
    layers: list[Mapping[str, str]] = []
    for path in values_files:
        try:
            layers.append(load_values_file(path))
        except SpecError as exc:
            issues.extend(exc.issues)
    if issues:
        raise SpecError(issues)
    for layer in [*layers, sets]:
        for name, value in layer.items():
            prefix = name + "."
            for old in [k for k in merged if k.startswith(prefix)]:
                del merged[old]
            # A leaf below a name that was a scalar replaces that scalar.
            parts = name.split(".")
            for i in range(1, len(parts)):
                merged.pop(".".join(parts[:i]), None)
            merged[name] = value
    return merged


__all__ = ["load_values_file", "merge_parameters"]
