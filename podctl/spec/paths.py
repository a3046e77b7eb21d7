"""Path containment: a stack may only reach files inside its own directory.

A relative path in a stack file resolves against the stack file's directory
and must stay there, both as written (`../x`) and after following symlinks
(`./link -> /etc`), so that a stack copied from someone else cannot read the
host's files through a config, secret, bind mount or build context. Absolute
paths are host paths and need the stack's explicit `allow_host_paths: true`.
"""

from __future__ import annotations

import os


class PathEscape(ValueError):
    """A path leaves the stack directory or is absolute where that is not allowed."""


def is_within(base: str, path: str) -> bool:
    """Whether `path` is `base` or lies below it (both absolute, already normalised)."""
    return os.path.commonpath([base, path]) == base


def resolve_in_stack(
    stack_dir: str | os.PathLike[str],
    path: str,
    *,
    allow_host_paths: bool = False,
    what: str = "path",
) -> str:
    """The absolute, symlink-free location of `path` as written in a stack file.

    Raises PathEscape when `path` is empty, absolute without `allow_host_paths`,
    or escapes `stack_dir` lexically (`..`) or through a symlink. The result is
    the real path, so later readers open what was checked, not a link that was
    swapped in meanwhile.
    """
    if not path:
        raise PathEscape(f"{what} must not be empty")
    if "\0" in path:
        raise PathEscape(f"{what} contains a NUL byte")
    if os.path.isabs(path):
        if not allow_host_paths:
            raise PathEscape(
                f"{what} `{path}` is absolute; host paths need `allow_host_paths: true` "
                "on the stack (relative paths resolve against the stack file's directory)"
            )
        return os.path.realpath(path)
    base = os.path.realpath(stack_dir)
    lexical = os.path.normpath(os.path.join(base, path))
    if not is_within(base, lexical):
        raise PathEscape(f"{what} `{path}` escapes the stack directory")
    real = os.path.realpath(lexical)
    if not is_within(base, real):
        raise PathEscape(f"{what} `{path}` escapes the stack directory through a symlink")
    return real
