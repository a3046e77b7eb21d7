"""`${VAR}` interpolation in stack files, with Helm-like parameters.

Where a value comes from, most specific first:

1. `--set a.b=c` on the command line;
2. values files (`-f values.yaml`, repeatable: a later file wins), whose nested
   mappings name their leaves with dots (`image: {tag: "1.36"}` is `image.tag`);
3. the environment;
4. the stack file's own `variables:`.

`--set` and values files reach this module merged into one `overrides` mapping
(`podctl.spec.values.merge_parameters`), which keeps that order.

Unlike Compose, a variable that is not set anywhere is an error rather than an
empty string: an empty image tag or replica count is never what was meant. A
scalar that is exactly `${x}` takes the variable's own type, so `replicas: ${n}`
is an int when `n` is; `$$` is a literal `$`.

    ${name}            the value; an error when it is set nowhere
    ${name:-default}   `default` when unset or empty   (`${name-default}`: unset only)
    ${name:?message}   required: unset or empty is an error saying `message`
                       (`${name?message}`: unset only), reported at FILE:LINE:COL
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from podctl.spec.errors import FieldPath


Scalar = str | int | float | bool

# A dotted name reaches into values files (`image.tag`); each part is an identifier
# (no dash: `${a-b}` is `a` with the default `b`, as in the shell).
_PART = r"[A-Za-z_][A-Za-z0-9_]*"
_NAME = rf"{_PART}(?:\.{_PART})*"
# name, then an optional operator (`:-`, `-`, `:?`, `?`) and its argument.
_REFERENCE = re.compile(rf"({_NAME})(?:(:?[-?])(.*))?", re.DOTALL)
_WHOLE = re.compile(rf"\$\{{({_NAME})(?:(:?[-?])([^}}]*))?\}}")


class InterpolationError(Exception):
    def __init__(self, path: FieldPath, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(message)


class Variables:
    """Where `${name}` values come from, most specific first."""

    def __init__(
        self,
        overrides: Mapping[str, str],
        environ: Mapping[str, str],
        defaults: Mapping[str, Scalar],
    ) -> None:
        self.overrides = overrides
        self.environ = environ
        self.defaults = defaults

    def lookup(self, name: str) -> Scalar | None:
        for source in (self.overrides, self.environ, self.defaults):
            if name in source:
                return source[name]
        return None


def _text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _missing(name: str) -> str:
    return (
        f"variable `{name}` is not set (give it with `--set {name}=...`, "
        f"in a values file, in the environment, or under `variables`)"
    )


def _resolve(
    variables: Variables, name: str, op: str | None, arg: str | None, path: FieldPath
) -> Scalar:
    """The value of one reference, applying its operator (see the module doc)."""
    value = variables.lookup(name)
    # `:-` and `:?` treat an empty value as unset (as in the shell); `-` and `?` do not.
    unset = value is None or (op is not None and op.startswith(":") and value == "")
    if op in (":-", "-") and unset:
        return arg or ""
    if op in (":?", "?") and unset:
        detail = (arg or "").strip()
        what = "is not set" if value is None else "is empty"
        raise InterpolationError(
            path,
            f"required variable `{name}` {what}: {detail}"
            if detail
            else f"required variable `{name}` {what} (give it with `--set {name}=...`, "
            "in a values file, or in the environment)",
        )
    if value is None:
        raise InterpolationError(path, _missing(name))
    return value


def interpolate_string(text: str, variables: Variables, path: FieldPath = ()) -> Scalar:
    """Expand one string scalar. Raises InterpolationError naming the first problem."""
    whole = _WHOLE.fullmatch(text)
    if whole is not None:
        return _resolve(variables, whole.group(1), whole.group(2), whole.group(3), path)
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$":
            # Copy a run of plain text in one go.
            nxt = text.find("$", i)
            nxt = len(text) if nxt < 0 else nxt
            out.append(text[i:nxt])
            i = nxt
            continue
        after = text[i + 1 : i + 2]
        if after == "$":
            out.append("$")
            i += 2
        elif after == "{":
            end = text.find("}", i + 2)
            if end < 0:
                raise InterpolationError(path, f"unterminated `${{` in `{text}`")
            reference = _REFERENCE.fullmatch(text[i + 2 : end])
            if reference is None:
                raise InterpolationError(
                    path,
                    f"invalid variable reference `{text[i : end + 1]}` "
                    "(use `${NAME}`, `${NAME:-default}` or `${NAME:?message}`; "
                    "`$$` is a literal `$`)",
                )
            value = _resolve(
                variables, reference.group(1), reference.group(2), reference.group(3), path
            )
            out.append(_text(value))
            i = end + 1
        else:
            # A lone `$` (e.g. in a shell command) is kept as written.
            out.append("$")
            i += 1
    return "".join(out)


def interpolate(
    data: Any,
    variables: Variables,
    path: FieldPath = (),
    *,
    skip: frozenset[FieldPath] = frozenset(),
) -> tuple[Any, set[FieldPath], list[InterpolationError]]:
    """Expand every string scalar in `data` (not keys; not below paths in `skip`).

    Returns the new data, the paths whose value came whole from a variable and
    so may have a non-string type, and every problem found (a scalar with a
    problem is left as written so later checks still see the rest of the file).
    """
    typed: set[FieldPath] = set()
    errors: list[InterpolationError] = []

    def walk(value: Any, here: FieldPath) -> Any:
        if here in skip:
            return value
        if isinstance(value, dict):
            return {k: walk(v, (*here, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*here, i)) for i, v in enumerate(value)]
        if isinstance(value, str) and "$" in value:
            try:
                result = interpolate_string(value, variables, here)
            except InterpolationError as exc:
                errors.append(exc)
                return value
            if not isinstance(result, str):
                typed.add(here)
            return result
        return value

    return walk(data, path), typed, errors
