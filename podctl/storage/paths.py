"""Where podctl keeps things on the host.

* runtime directory: the control socket and materialised configs/secrets. It should be
  on tmpfs (`/run` or `$XDG_RUNTIME_DIR`) so secret files never reach a disk and vanish
  on reboot, as the kubelet does with its tmpfs-backed secret volumes.
* state directory: small durable files (revision history); never secret values.

The resolvers are pure (they read the environment, touch nothing); `ensure_private_dir`
creates a directory 0700 when a caller is about to write into it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

ENV_RUNTIME_DIR = "PODCTL_RUNTIME_DIR"
ENV_STATE_DIR = "PODCTL_STATE_DIR"
ENV_SOCKET = "PODCTL_SOCKET"

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


def runtime_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$PODCTL_RUNTIME_DIR, else $XDG_RUNTIME_DIR/podctl, else /run/podctl.

    Secrets are materialised here, so it must be memory-backed: where /run is
    not tmpfs (some containers and VMs), /dev/shm/podctl is used instead.
    """
    env = _env(environ)
    if env.get(ENV_RUNTIME_DIR):
        return Path(env[ENV_RUNTIME_DIR])
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "podctl"
    if is_tmpfs(DEFAULT_RUNTIME_DIR.parent) is False and is_tmpfs(SHM_RUNTIME_DIR.parent):
        return SHM_RUNTIME_DIR
    return DEFAULT_RUNTIME_DIR


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$PODCTL_STATE_DIR, else $XDG_STATE_HOME/podctl, else /var/lib/podctl."""
    env = _env(environ)
    if env.get(ENV_STATE_DIR):
        return Path(env[ENV_STATE_DIR])
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


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) and make it 0700; returns `path`.

    Only the leaf is tightened: parents such as $XDG_STATE_HOME belong to the user.
    An existing directory owned by someone else is left alone (chmod would fail and the
    directory is theirs to secure). Blocking: call it from a worker thread in async code.
    """
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    st = path.stat()
    # mkdir's mode is filtered by the umask, and an existing directory keeps its mode.
    if st.st_mode & 0o777 != PRIVATE_DIR_MODE and st.st_uid == os.geteuid():
        path.chmod(PRIVATE_DIR_MODE)
    return path


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
