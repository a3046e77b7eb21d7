"""The tar stream of one batch, as the engine's archive API takes it.

Members are named relative to the extraction directory `base`; the engine
creates missing parent directories. Owner root, the file's own permission
bits, one fixed mtime (the engine keeps what the tar says, and a build's
layer cache is not involved). Built in memory in a worker thread: batches are
source files, and over `MAX_BATCH_FILES` podctl rebuilds or resyncs instead.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from podctl.dev.changes import FileUpdate


def common_base(targets: Iterable[str]) -> str:
    """The deepest directory holding every target (at least `/`)."""
    dirs = [posixpath.dirname(t) for t in targets]
    if not dirs:
        return "/"
    return posixpath.commonpath(dirs) or "/"


def tar_files(files: Iterable[FileUpdate], base: str = "/") -> bytes:
    """An uncompressed tar of `files`, member names relative to `base`."""
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for f in files:
            info = tarfile.TarInfo(posixpath.relpath(f.target, base))
            info.mtime = now
            info.uid = info.gid = 0
            info.mode = f.mode
            if f.link is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = f.link
                tar.addfile(info)
            else:
                info.size = len(f.data)
                tar.addfile(info, io.BytesIO(f.data))
    return buf.getvalue()
