"""Stack file errors that name file, line, column and field."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from collections.abc import Sequence

FieldPath = tuple[str | int, ...]

# C0 and C1 control characters and DEL, plus the bidi overrides and isolates
# that reorder what a terminal shows ("Trojan Source"). Text from a stack file
# (keys, values, names) ends up in messages; written raw, an ESC in it would
# drive the user's terminal (`\x1b]52;...` even writes their clipboard).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    r"""`text` with control characters written as escapes (`\x1b`, `\n`), safe for a terminal.

    Everything else, including non-ASCII letters, is kept as is. A backslash is
    not doubled: the result is for reading, not for parsing back.
    """
    return _CONTROL.sub(_escape_one, text)


def render_path(path: FieldPath) -> str:
    """`("pods", "web", "mounts", 0, "path")` -> `pods.web.mounts[0].path`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


class SpecIssue(msgspec.Struct, frozen=True):
    """One problem in a stack file, located as precisely as the file allows."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        """`FILE:LINE:COL: field: message` on one line, control characters escaped."""
        where = f" {self.field}:" if self.field and self.field != "(top level)" else ""
        return escape_control(f"{self.file}:{self.line}:{self.column}:{where} {self.message}")


class SpecError(Exception):
    """One or more problems in stack files. `str()` gives one `FILE:LINE:COL: msg` per line."""

    def __init__(self, issues: Sequence[SpecIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class FieldError(Exception):
    """Raised during normalisation with a field path; the loader turns it into a SpecIssue."""

    def __init__(self, path: FieldPath, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{render_path(path)}: {message}")
