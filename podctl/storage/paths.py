"""Where podctl keeps things on the host.

* runtime directory: the control socket and materialised configs/secrets. It should be
  on tmpfs (`/run` or `$XDG_RUNTIME_DIR`) so secret files never reach a disk and vanish
  on reboot, as the kubelet does with its tmpfs-backed secret volumes.
* state directory: small durable files (revision history); never secret values.

The resolvers are pure (they read the environment, touch nothing); `ensure_private_dir`
creates a directory 0700 when a caller is about to write into it, and refuses one that
another user owns or can write to (`UnsafeDirectory`).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from podctl.storage.errors import StorageError

if TYPE_CHECKING:
    from collections.abc import Mapping

ENV_RUNTIME_DIR = "PODCTL_RUNTIME_DIR"
ENV_STATE_DIR = "PODCTL_STATE_DIR"
ENV_SOCKET = "PODCTL_SOCKET"
# Set by systemd for a unit with StateDirectory=/RuntimeDirectory= (systemd.exec(5)).
ENV_SYSTEMD_STATE_DIR = "STATE_DIRECTORY"
ENV_SYSTEMD_RUNTIME_DIR = "RUNTIME_DIRECTORY"

DEFAULT_RUNTIME_DIR = Path("/run/podctl")
DEFAULT_STATE_DIR = Path("/var/lib/podctl")
SOCKET_NAME = "podctl.sock"
STACKS_DIR = "stacks"

SHM_RUNTIME_DIR = Path("/dev/shm/podctl")
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600

# Filesystems that keep their content in memory only.
_MEMORY_FS = frozenset({"tmpfs", "ramfs"})
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def _systemd_dir(env: Mapping[str, str], key: str) -> Path | None:
    """The first directory systemd passed in `key` ($STATE_DIRECTORY, $RUNTIME_DIRECTORY:
    absolute paths, `:`-separated when the unit names several)."""
    first = env.get(key, "").split(":", 1)[0]
    return Path(first) if first.startswith("/") else None


def runtime_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$PODCTL_RUNTIME_DIR, else systemd's $RUNTIME_DIRECTORY (a unit's
    RuntimeDirectory=), else $XDG_RUNTIME_DIR/podctl, else /run/podctl.

    Secrets are materialised here, so it must be memory-backed: where /run is
    not tmpfs (some containers and VMs), /dev/shm/podctl is used instead.
    """
    env = _env(environ)
    if env.get(ENV_RUNTIME_DIR):
        return Path(env[ENV_RUNTIME_DIR])
    if (systemd := _systemd_dir(env, ENV_SYSTEMD_RUNTIME_DIR)) is not None:
        return systemd
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "podctl"
    if is_tmpfs(DEFAULT_RUNTIME_DIR.parent) is False and is_tmpfs(SHM_RUNTIME_DIR.parent):
        return SHM_RUNTIME_DIR
    return DEFAULT_RUNTIME_DIR


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$PODCTL_STATE_DIR, else systemd's $STATE_DIRECTORY (a unit's StateDirectory=),
    else $XDG_STATE_HOME/podctl, else /var/lib/podctl."""
    env = _env(environ)
    if env.get(ENV_STATE_DIR):
        return Path(env[ENV_STATE_DIR])
    if (systemd := _systemd_dir(env, ENV_SYSTEMD_STATE_DIR)) is not None:
        return systemd
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]) / "podctl"
    return DEFAULT_STATE_DIR


def socket_path(environ: Mapping[str, str] | None = None) -> Path:
    """$PODCTL_SOCKET, else <runtime_dir>/podctl.sock."""
    env = _env(environ)
    if env.get(ENV_SOCKET):
        return Path(env[ENV_SOCKET])
    return runtime_dir(env) / SOCKET_NAME


def stacks_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Base of the materialised configs and secrets: <runtime_dir>/stacks."""
    return runtime_dir(environ) / STACKS_DIR


class UnsafeDirectory(StorageError):
    """A runtime or state directory that someone else could write into.

    podctl keeps its control socket and materialised secrets there: a directory
    another user owns or can write to lets that user replace the socket (and so
    answer `podctl` commands) or read what is written. Like ssh with ~/.ssh,
    podctl refuses rather than fixes a directory that is not its own.
    """

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"refusing to use directory {path}: {problem}")
        self.path = path
        self.problem = problem


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _check_leaf(path: Path, st: os.stat_result) -> None:
    me = os.geteuid()
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(path, "it is not a directory")
    # root can do anything anyway: trusting a directory it owns gives nothing away.
    if st.st_uid not in (0, me):
        raise UnsafeDirectory(
            path, f"it is owned by {_owner(st.st_uid)}, not by you ({_owner(me)}) or root"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        who = "everyone" if mode & 0o002 else "its group"
        raise UnsafeDirectory(
            path, f"it is writable by {who} (mode {mode:04o}); run `chmod 700 {path}`"
        )


def check_ancestors(path: Path) -> None:
    """Refuse `path` when a directory above it lets another user swap it.

    Every existing ancestor must be owned by root or the current user, and when
    others can write to it, it must be sticky (as /tmp and /dev/shm are), so that
    nobody can rename or replace what is ours inside it.
    """
    me = os.geteuid()
    for parent in Path(os.path.abspath(path)).parents:
        try:
            st = parent.stat()
        except FileNotFoundError:
            continue
        mode = stat.S_IMODE(st.st_mode)
        if st.st_uid not in (0, me):
            raise UnsafeDirectory(
                path, f"its parent {parent} is owned by {_owner(st.st_uid)}, not by root or you"
            )
        if mode & 0o022 and not mode & stat.S_ISVTX:
            raise UnsafeDirectory(
                path, f"its parent {parent} is writable by others and not sticky (mode {mode:04o})"
            )


def check_private_dir(path: Path) -> None:
    """Raise UnsafeDirectory unless `path` is a directory of the current user (or root)
    that nobody else can write to, under parents nobody else can swap (see check_ancestors)."""
    check_ancestors(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UnsafeDirectory(path, "it does not exist") from None
    _check_leaf(path, st)


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) 0700, check it is safe, and return it.

    The parents are checked before anything is created in them. An existing
    directory of ours that others can only read is tightened to 0700; one owned by
    another user (not root), or writable by others, is refused with UnsafeDirectory (it may
    already hold what they planted). Only the leaf is tightened: parents such as
    $XDG_STATE_HOME belong to the user. Blocking: call it from a worker thread in
    async code.
    """
    check_ancestors(path)
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    st = path.stat()
    _check_leaf(path, st)
    # mkdir's mode is filtered by the umask, and an existing directory keeps its mode.
    if stat.S_IMODE(st.st_mode) != PRIVATE_DIR_MODE and st.st_uid == os.geteuid():
        path.chmod(PRIVATE_DIR_MODE)
    return path


def ensure_socket_dir(socket: Path) -> Path:
    """The control socket's directory: created 0700 when missing; an existing one must
    be private (ensure_private_dir) unless it is a shared sticky directory owned by root
    or the user, such as /tmp for PODCTL_SOCKET=/tmp/podctl.sock."""
    parent = socket.parent
    try:
        st = parent.stat()
    except FileNotFoundError:
        return ensure_private_dir(parent)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode) and mode & stat.S_ISVTX and st.st_uid in (0, os.geteuid()):
        check_ancestors(parent)
        return parent
    return ensure_private_dir(parent)


def filesystem_type(path: Path) -> str | None:
    """The filesystem type of the mount holding `path` (from /proc/mounts), or None.

    os.statvfs has no type field, so the longest mount point that prefixes the resolved
    path wins. Walks up to the nearest existing ancestor so it works before creation.
    """
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        resolved = probe.resolve()
        with open("/proc/mounts", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    best: tuple[int, str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts escapes spaces and friends as octal (\040).
        mount_point = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[1])
        if resolved == Path(mount_point) or Path(mount_point) in resolved.parents:
            depth = len(mount_point)
            # Later entries with the same mount point shadow earlier ones (over-mounts).
            if best is None or depth >= best[0]:
                best = (depth, fields[2])
    return best[1] if best else None


def is_tmpfs(path: Path) -> bool | None:
    """True when `path` lives on a memory filesystem, None when it cannot be told."""
    fstype = filesystem_type(path)
    return None if fstype is None else fstype in _MEMORY_FS


def tmpfs_warning(path: Path) -> str | None:
    """A message to log when `path` is not on tmpfs (secrets there would reach a disk)."""
    fstype = filesystem_type(path)
    if fstype is None or fstype in _MEMORY_FS:
        return None
    return (
        f"runtime directory {path} is on {fstype}, not tmpfs: secret files written there "
        f"may reach the disk and survive a reboot; set PODCTL_RUNTIME_DIR or "
        f"XDG_RUNTIME_DIR to a tmpfs directory"
    )
