"""Stack file errors that name file, line, column and field."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from collections.abc import Sequence

FieldPath = tuple[str | int, ...]


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
        where = f" {self.field}:" if self.field and self.field != "(top level)" else ""
        return f"{self.file}:{self.line}:{self.column}:{where} {self.message}"


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
