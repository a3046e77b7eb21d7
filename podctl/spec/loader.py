"""Read one stack file into a `StackFile`, collecting every problem with its position.

Steps: parse YAML or TOML into plain data with a `Locator`; expand `${VAR}`;
check the data against the schema piece by piece (so one bad pod does not
hide the problems of the next, and each problem keeps its dict keys, which
msgspec's own error paths drop as `[...]`); finally `msgspec.convert` the
checked data into the frozen `StackFile`.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

import msgspec

from podctl.spec import limits
from podctl.spec.errors import FieldPath, SpecIssue, render_path
from podctl.spec.interpolate import Variables, interpolate
from podctl.spec.locator import LIMIT_NOTE, Locator, ParseError, parse_toml, parse_yaml
from podctl.spec.paths import PathEscape, resolve_in_stack
from podctl.spec.schema import StackFile

if TYPE_CHECKING:
    from collections.abc import Mapping

# Looked for, in this order, when a directory is given instead of a file.
STACK_FILE_NAMES = (
    "podctl.yaml",
    "podctl.yml",
    "podctl.toml",
    "stack.yaml",
    "stack.yml",
    "stack.toml",
)

_MSGSPEC_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MSGSPEC_PART = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


class LoadedFile(msgspec.Struct, frozen=True, kw_only=True):
    """One stack file after loading: the Struct (None if it has problems) and its positions."""

    display: str  # the path as the user gave it, for messages
    source: str  # absolute path of the file
    stack: StackFile | None
    issues: list[SpecIssue]
    locator: Locator
    # (secret name, "env" | "file", variable or path): references only, never values.
    secret_sources: tuple[tuple[str, str, str], ...] = ()

    def issue(self, path: FieldPath, message: str, *, at_key: bool = False) -> SpecIssue:
        line, col = self.locator.find_key(path) if at_key else self.locator.find(path)
        return SpecIssue(
            file=self.display, line=line, column=col, field=render_path(path), message=message
        )


def resolve_stack_path(path: str | os.PathLike[str]) -> Path:
    """A stack file path; a directory means the stack file inside it."""
    p = Path(path)
    if p.is_dir():
        for name in STACK_FILE_NAMES:
            if (p / name).is_file():
                return p / name
        raise FileNotFoundError(
            f"no stack file in directory {p} (looked for {', '.join(STACK_FILE_NAMES)})"
        )
    return p


def _too_big(display: str, size: int) -> str:
    mib = limits.MAX_FILE_BYTES / (1024 * 1024)
    told = f"{size} bytes" if size > limits.MAX_FILE_BYTES else "it grew while read"
    return f"stack file {display} is too large ({told}); the limit is {mib:g} MiB"


def load_file(
    path: str | os.PathLike[str],
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedFile:
    """Parse, interpolate and check one stack file. Never raises for bad content.

    Hostile content is bounded (`podctl.spec.limits`): files over 10 MiB, alias
    bombs and deep nesting are refused with a located issue before they cost
    more than about a second.
    """
    try:
        return _load_file(path, overrides, environ)
    except RecursionError:
        # The limits keep every walk shallow; this is only the last line of defence.
        display = os.fspath(path)
        issue = SpecIssue(
            file=display,
            line=1,
            column=1,
            field="",
            message=f"nesting too deep to read {LIMIT_NOTE}",
        )
        return LoadedFile(
            display=display, source=display, stack=None, issues=[issue], locator=Locator()
        )


def _load_file(
    path: str | os.PathLike[str],
    overrides: Mapping[str, str] | None,
    environ: Mapping[str, str] | None,
) -> LoadedFile:
    display = os.fspath(path)
    env = os.environ if environ is None else environ
    locator = Locator()

    def fail(line: int, col: int, message: str) -> LoadedFile:
        issue = SpecIssue(file=display, line=line, column=col, field="", message=message)
        return LoadedFile(
            display=display, source=display, stack=None, issues=[issue], locator=locator
        )

    try:
        file = resolve_stack_path(path)
        if file != Path(path):
            display = os.fspath(file)
        # Read one byte past the limit: the size from stat may be stale (or a FIFO's 0).
        with open(file, "rb") as f:
            raw = f.read(limits.MAX_FILE_BYTES + 1)
            size = os.fstat(f.fileno()).st_size
        if len(raw) > limits.MAX_FILE_BYTES:
            return fail(1, 1, _too_big(display, size))
        text = raw.decode("utf-8")
    except FileNotFoundError as exc:
        return fail(1, 1, f"cannot read stack file: {exc.strerror or exc}")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        return fail(1, 1, f"cannot read stack file: {reason}")
    source = os.path.abspath(file)

    issues: list[SpecIssue] = []
    try:
        if file.suffix.lower() == ".toml":
            data, locator = parse_toml(text)
        else:
            # YAML is also the fallback: it reads JSON too.
            data, locator, duplicates = parse_yaml(text)
            for dup in duplicates:
                line, col = locator.find_key(dup.path)
                issues.append(
                    SpecIssue(
                        file=display,
                        line=line,
                        column=col,
                        field=render_path(dup.path),
                        message=f"duplicate key `{dup.key}`",
                    )
                )
    except ParseError as exc:
        return fail(exc.line, exc.column, exc.message)

    loaded = LoadedFile(display=display, source=source, stack=None, issues=[], locator=locator)
    if data is None:
        return fail(1, 1, "the stack file is empty")
    if not isinstance(data, dict):
        return fail(1, 1, "a stack file must be a mapping with `name` and `pods`")

    defaults = data.get("variables")
    variables = Variables(
        overrides=overrides or {},
        environ=env,
        defaults={
            k: v
            for k, v in (defaults.items() if isinstance(defaults, dict) else ())
            if isinstance(v, str | int | float | bool)
        },
    )
    # `variables` are the defaults themselves: they are not expanded.
    data, typed, problems = interpolate(data, variables, skip=frozenset({("variables",)}))
    issues.extend(loaded.issue(p.path, p.message) for p in problems)

    checker = _Checker(loaded, typed, failed={p.path for p in problems})
    cleaned = checker.check(data, StackFile, ())
    issues.extend(checker.issues)

    stack: StackFile | None = None
    if not issues:
        try:
            stack = msgspec.convert(cleaned, StackFile, strict=False)
        except msgspec.ValidationError as exc:
            # The piecewise check should have caught it; keep whatever msgspec says.
            issues.append(_from_validation_error(loaded, (), exc))
    sources = _secret_sources(data)
    return LoadedFile(
        display=display,
        source=source,
        stack=stack,
        issues=redact(issues, sources, os.path.dirname(source), env),
        locator=locator,
        secret_sources=sources,
    )


def _secret_sources(data: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    secrets = data.get("secrets")
    out: list[tuple[str, str, str]] = []
    if isinstance(secrets, dict):
        for name, spec in secrets.items():
            if isinstance(spec, dict):
                out.extend(
                    (name, kind, spec[kind])
                    for kind in ("env", "file")
                    if isinstance(spec.get(kind), str)
                )
    return tuple(out)


# Shorter values are not scrubbed: replacing every "ab" would garble messages,
# and a secret that short protects nothing anyway.
_MIN_REDACT_LEN = 4
_MAX_SECRET_FILE = 1 << 20


def redact(
    issues: list[SpecIssue],
    sources: tuple[tuple[str, str, str], ...],
    stack_dir: str,
    environ: Mapping[str, str],
) -> list[SpecIssue]:
    """Scrub secret values out of messages (belt and braces).

    No message is built from a secret, but a user may also interpolate the
    same variable elsewhere (`period: ${API_KEY}`), and a parse error would
    then echo it. Values are read only here and dropped on return.
    """
    if not sources or not issues:
        return issues
    values: list[tuple[str, str]] = []
    for name, kind, ref in sources:
        if kind == "env":
            value = environ.get(ref)
        else:
            try:
                real = resolve_in_stack(stack_dir, ref)
                with open(real, "rb") as f:
                    value = f.read(_MAX_SECRET_FILE).decode("utf-8", "replace")
            except (OSError, PathEscape):
                value = None
        for variant in {value, value.strip()} if value else ():
            if len(variant) >= _MIN_REDACT_LEN:
                values.append((name, variant))
    values.sort(key=lambda v: -len(v[1]))  # longest first, so a prefix never wins

    def scrub(text: str) -> str:
        for name, value in values:
            text = text.replace(value, f"<secret {name}>")
        return text

    return [
        SpecIssue(
            file=i.file,
            line=i.line,
            column=i.column,
            field=scrub(i.field),
            message=scrub(i.message),
        )
        for i in issues
    ]


def _from_validation_error(
    loaded: LoadedFile, base: FieldPath, exc: msgspec.ValidationError
) -> SpecIssue:
    """`Expected `int`, got `str` - at `$.replicas`` under `base` -> a located SpecIssue."""
    match = _MSGSPEC_AT.match(str(exc))
    message = match.group("msg") if match else str(exc)
    path = list(base)
    if match and match.group("path"):
        for part in _MSGSPEC_PART.finditer(match.group("path")):
            name, index = part.groups()
            if name is not None:
                path.append(name)
            elif index == "...":
                break  # msgspec hides dict keys; stop at the last known part
            else:
                path.append(int(index))
    message = message[:1].lower() + message[1:]
    message = message.replace("`", "")  # `Expected `int`, got `str`` reads better plain
    return loaded.issue(tuple(path), message)


def _struct_type(tp: Any) -> type[msgspec.Struct] | None:
    return tp if isinstance(tp, type) and issubclass(tp, msgspec.Struct) else None


def _is_str_only(tp: Any) -> bool:
    """`str` or `str | None`: where a typed `${x}` is turned back into text."""
    if tp is str:
        return True
    if get_origin(tp) in (Union, types.UnionType):
        return {a for a in get_args(tp) if a is not type(None)} == {str}
    return False


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Checker:
    """Walks plain data alongside the schema types, collecting located issues."""

    def __init__(self, loaded: LoadedFile, typed: set[FieldPath], failed: set[FieldPath]) -> None:
        self.loaded = loaded
        self.typed = typed
        # Scalars whose interpolation failed are already reported; their
        # un-expanded text would only add a second, confusing type error.
        self.failed = failed
        self.issues: list[SpecIssue] = []

    def check(self, value: Any, tp: Any, path: FieldPath) -> Any:
        struct = _struct_type(tp)
        if struct is not None and isinstance(value, dict):
            return self.check_struct(value, struct, path)
        origin = get_origin(tp)
        if origin in (Union, types.UnionType):
            args = get_args(tp)
            if value is None and type(None) in args:
                return None
            structs = [a for a in args if _struct_type(a) is not None]
            if isinstance(value, dict) and len(structs) == 1:
                return self.check_struct(value, structs[0], path)
            # `list[str] | str`: walk into the list so each item is checked (and a
            # typed `${n}` item becomes text) with its own index in the path.
            for container in (list, dict):
                alternatives = [a for a in args if get_origin(a) is container]
                if isinstance(value, container) and len(alternatives) == 1 and not structs:
                    return self.check(value, alternatives[0], path)
        elif origin is dict and isinstance(value, dict):
            key_type, value_type = get_args(tp)
            out: dict[Any, Any] = {}
            for key, item in value.items():
                self.leaf(key, key_type, (*path, key))
                out[key] = self.check(item, value_type, (*path, key))
            return out
        elif origin is list and isinstance(value, list):
            (item_type,) = get_args(tp)
            return [self.check(item, item_type, (*path, i)) for i, item in enumerate(value)]
        return self.leaf(value, tp, path)

    def check_struct(self, value: dict[str, Any], tp: type[msgspec.Struct], path: FieldPath) -> Any:
        fields = {f.encode_name: f for f in msgspec.structs.fields(tp)}
        out: dict[str, Any] = {}
        for key, item in value.items():
            field = fields.get(key)
            if field is None and not path and key.startswith("x-"):
                # Compose's convention: top-level `x-*` keys hold YAML anchors to reuse.
                continue
            if field is None:
                self.unknown_field(key, list(fields), (*path, key))
                continue
            out[key] = self.check(item, field.type, (*path, key))
        for name, field in fields.items():
            required = field.default is msgspec.NODEFAULT and (
                field.default_factory is msgspec.NODEFAULT
            )
            if required and name not in value:
                self.issues.append(
                    self.loaded.issue(path, f"missing required field `{name}`", at_key=True)
                )
        return out

    def unknown_field(self, key: str, known: list[str], path: FieldPath) -> None:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        if close:
            message = f"unknown field `{key}`; did you mean `{close[0]}`?"
        else:
            message = f"unknown field `{key}` (expected one of: {', '.join(sorted(known))})"
        self.issues.append(self.loaded.issue(path, message, at_key=True))

    def leaf(self, value: Any, tp: Any, path: FieldPath) -> Any:
        if path in self.typed and _is_str_only(tp) and not isinstance(value, str):
            # `image: busybox:${tag}` is text already; `image: ${tag}` with `tag: 1.36`
            # is a float from `variables` and means the text "1.36".
            value = _as_text(value)
        if tp is Any or path in self.failed:
            return value
        try:
            msgspec.convert(value, tp, strict=False)
        except msgspec.ValidationError as exc:
            self.issues.append(_from_validation_error(self.loaded, path, exc))
        return value


__all__ = ["STACK_FILE_NAMES", "LoadedFile", "load_file", "redact", "resolve_stack_path"]
