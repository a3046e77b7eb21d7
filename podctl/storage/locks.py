"""One podctl per stack on a host: an flock per stack name.

Two `podctl run` of the same stack would fight over its containers (each removes
what the other creates, and the loser's exit tears down the winner's replicas).
The control socket cannot prevent it: PODCTL_SOCKET and PODCTL_STATE_DIR can
differ between the two. So the lock lives in a directory that depends on nothing
podctl-specific in the environment:

* `/run/podctl/locks` when podctl can write there (root: host-wide);
* else `$XDG_RUNTIME_DIR/podctl-locks` (the user's session tmpfs);
* else `/tmp/podctl-<uid>-locks`, which must be the user's own and private.

The lock is `flock(LOCK_EX | LOCK_NB)` on `<dir>/<stack>.lock`: the kernel
releases it when the holder exits, however it exits (even SIGKILL), so a stale
file never blocks anyone. The file holds the holder's PID for the refusal
message. Lock files are never deleted: unlinking a lock file races a process that
has just opened it, and two processes would then each hold a lock on a different
inode.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

from podctl.storage.errors import StorageError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

HOST_LOCK_DIR = Path("/run/podctl/locks")
USER_LOCK_DIR_NAME = "podctl-locks"
LOCK_SUFFIX = ".lock"
_LOCK_FILE_MODE = 0o644
# A name that is one safe path component (stack names are DNS labels anyway).
_LOCK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# The holder writes its PID right after locking: a reader that wins that tiny race
# looks again for this long before reporting the PID as unknown.
_PID_WAIT_S = 0.5


class LockError(StorageError):
    """No lock directory podctl can trust, or a lock file it cannot open."""


class StackBusy(StorageError):
    """Another process holds the stack's lock: it runs the stack."""

    def __init__(self, stack: str, pid: int | None, path: Path) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"stack {stack} is already run by podctl ({holder}; lock {path})")
        self.stack = stack
        self.pid = pid
        self.path = path


def lock_dir(environ: Mapping[str, str] | None = None, *, uid: int | None = None) -> Path:
    """Where stack locks live (pure apart from access checks; creates nothing).

    The same answer whatever PODCTL_SOCKET, PODCTL_STATE_DIR or PODCTL_RUNTIME_DIR
    say: two podctl of one user (or of root) must meet at the same lock file.
    """
    env = os.environ if environ is None else environ
    uid = os.geteuid() if uid is None else uid
    if _writable_or_creatable(HOST_LOCK_DIR):
        return HOST_LOCK_DIR
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / USER_LOCK_DIR_NAME
    return Path("/tmp") / f"podctl-{uid}-locks"


def _writable_or_creatable(path: Path) -> bool:
    probe = path
    while not probe.exists():
        if probe == probe.parent:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def _ensure_lock_dir(path: Path) -> None:
    """Create the lock directory (0755: others may read who holds what) and check that
    nobody else can plant or swap lock files in it."""
    try:
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        raise LockError(f"cannot create lock directory {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise LockError(f"lock directory {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise LockError(
            f"lock directory {path} is owned by uid {st.st_uid}, not by you "
            f"(uid {os.geteuid()}): remove it or fix its owner"
        )
    if st.st_mode & 0o022:
        raise LockError(
            f"lock directory {path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o}): "
            f"run `chmod go-w {path}`"
        )


class StackLocks:
    """The stack locks this process holds, until `release()` or exit."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self.directory: Path | None = None

    @property
    def stacks(self) -> list[str]:
        return sorted(self._fds)

    def acquire(self, stack: str) -> None:
        """Lock one more stack (a stack a hot reload adds); StackBusy names the holder.

        A no-op when this process holds it already. Blocking but brief: call it from a
        worker thread on the event loop.
        """
        if stack in self._fds:
            return
        directory = self.directory or lock_dir()
        _ensure_lock_dir(directory)
        self.directory = directory
        self._fds[stack] = _lock_one(stack, lock_path(stack, directory))

    def release_stack(self, stack: str) -> None:
        """Let another podctl run `stack` (it left this one's set)."""
        fd = self._fds.pop(stack, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def release(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the last descriptor drops the flock
        self._fds.clear()

    def __enter__(self) -> StackLocks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_path(stack: str, directory: Path | None = None) -> Path:
    if not _LOCK_NAME.fullmatch(stack):
        raise LockError(f"{stack!r} is not a stack name")
    return (directory or lock_dir()) / f"{stack}{LOCK_SUFFIX}"


def acquire_stacks(stacks: Iterable[str], *, directory: Path | None = None) -> StackLocks:
    """Lock every stack for this process, or none: StackBusy names the holder's PID.

    Blocking but brief (never waits for a lock): call it before the event loop runs,
    or from a worker thread.
    """
    directory = directory or lock_dir()
    _ensure_lock_dir(directory)
    held = StackLocks()
    held.directory = directory
    try:
        for stack in sorted(set(stacks)):
            held._fds[stack] = _lock_one(stack, lock_path(stack, directory))
    except BaseException:
        held.release()
        raise
    return held


def _lock_one(stack: str, path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, _LOCK_FILE_MODE)
    except OSError as exc:
        raise LockError(f"cannot open lock file {path}: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise LockError(f"lock file {path} is not a regular file of yours: remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackBusy(stack, _holder_pid(fd), path) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _holder_pid(fd: int) -> int | None:
    deadline = time.monotonic() + _PID_WAIT_S
    while True:
        raw = os.pread(fd, 32, 0).strip()
        if raw.isdigit():
            return int(raw)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)
