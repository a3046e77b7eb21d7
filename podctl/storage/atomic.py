"""Atomic file replacement: readers see the old file or the new one, never a mix.

temp file in the same directory (so rename stays on one filesystem) -> write -> fsync ->
set owner and mode -> rename over the target -> fsync the directory (so the rename
itself survives a crash). Any failure before the rename removes the temp file and
leaves the previous file untouched. Blocking: run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from typing import TYPE_CHECKING

from podctl.storage.errors import StateWriteError, describe_oserror

if TYPE_CHECKING:
    from pathlib import Path

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def atomic_write(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o600,
    uid: int | None = None,
    gid: int | None = None,
    what: str = "file",
) -> None:
    """Replace `path` with `data` atomically. Raises StateWriteError, never a bare OSError.

    `uid`/`gid` are applied with fchown (the caller decides whether it may chown).
    `what` names the file in the error message ("state file", "secret file", ...).
    """
    directory = path.parent
    tmp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd: int | None = None
    try:
        # 0600 from the first byte: the content is never readable by others, whatever
        # the umask and whatever the final mode will be.
        fd = os.open(tmp, _OPEN_FLAGS, 0o600)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        # After chown: chown clears setuid/setgid bits, and mode may drop our write bit.
        os.fchmod(fd, mode)
        os.close(fd)
        fd = None
        os.replace(tmp, path)
    except OSError as exc:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StateWriteError(
            f"cannot write {what} {path}: {describe_oserror(exc)}; the previous version is kept",
            errno=exc.errno,
        ) from exc
    _fsync_dir(directory, path, what)


def _fsync_dir(directory: Path, path: Path, what: str) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError as exc:
        # Some filesystems cannot fsync a directory; that is not a failed write.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise StateWriteError(
                f"wrote {what} {path} but could not make it durable: {describe_oserror(exc)}",
                errno=exc.errno,
            ) from exc
    finally:
        os.close(dfd)
