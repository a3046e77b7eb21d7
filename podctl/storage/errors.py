"""Errors of the storage room.

Every message names the object (file path, config or secret name, env var name)
and the reason, and never the content: a secret value must not reach an error
that ends up in a log, an event or the control API.
"""

from __future__ import annotations

import errno as _errno


class StorageError(Exception):
    """Base of storage failures; the message is safe to show to the user."""


class StateWriteError(StorageError):
    """A state or runtime file could not be written; the previous version is intact."""

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class StateReadError(StorageError):
    """A state file exists but cannot be read or decoded."""


class SourceError(StorageError):
    """The source of a config or secret is missing or unreadable (file gone, env var unset)."""


class DigestMismatch(StorageError):
    """The source content changed since the stack was loaded: the controller should reload.

    Carries the kind and name only; both digests are of the content, never the content.
    """

    def __init__(self, kind: str, name: str, expected: str, actual: str) -> None:
        super().__init__(
            f"{kind} {name!r} changed since the stack was loaded "
            f"(expected {expected}, found {actual}); reload the stack"
        )
        self.kind = kind
        self.name = name
        self.expected = expected
        self.actual = actual


def describe_oserror(exc: OSError) -> str:
    """`ENOSPC (No space left on device)`: the symbolic name helps operators search for it."""
    code = exc.errno
    name = _errno.errorcode.get(code, str(code)) if code is not None else "error"
    reason = exc.strerror or str(exc)
    return f"{name} ({reason})"
