"""Sockets systemd hands over at start: $LISTEN_FDS, $LISTEN_FDNAMES, $LISTEN_PID.

The protocol (sd_listen_fds(3)): descriptors 3, 4, ... 3+$LISTEN_FDS-1 are open for us
when $LISTEN_PID is our pid; $LISTEN_FDNAMES names them, `:`-separated, in order. They
come from socket units or, for podctl, from the file descriptor store: each service
listener stored with `FDSTORE=1` + `FDNAME=<stack>/<service>` returns here on restart,
so a restart binds nothing and connections wait in the kernel's backlog meanwhile.

Like sd_listen_fds(unset=1) the variables are removed once read (children must not
think the descriptors are theirs), and the descriptors are made close-on-exec.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import MutableMapping

log = logging.getLogger("podctl.host.listenfds")

SD_LISTEN_FDS_START = 3
ENV_LISTEN_FDS = "LISTEN_FDS"
ENV_LISTEN_FDNAMES = "LISTEN_FDNAMES"
ENV_LISTEN_PID = "LISTEN_PID"
# systemd's name for a descriptor that came without one (socket units use "unknown").
UNNAMED = "unknown"


def listen_fd_numbers(
    environ: MutableMapping[str, str] | None = None, pid: int | None = None, unset: bool = True
) -> list[tuple[str, int]]:
    """(name, fd) for each passed descriptor, [] when none are meant for this process.

    Raw numbers, for callers that want more than sockets; `listen_sockets` is the usual
    entry point. The variables are removed when `unset` (whether or not they matched).
    """
    env = os.environ if environ is None else environ
    try:
        return _parse(env, os.getpid() if pid is None else pid)
    finally:
        if unset:
            for key in (ENV_LISTEN_PID, ENV_LISTEN_FDS, ENV_LISTEN_FDNAMES):
                env.pop(key, None)


def listen_sockets(
    environ: MutableMapping[str, str] | None = None, pid: int | None = None, unset: bool = True
) -> dict[str, socket.socket]:
    """{name: socket} for the passed descriptors (sd_listen_fds with names).

    A descriptor that is not a socket, or whose name was seen before, is closed and
    logged: our copy only; systemd's store keeps its own until FDSTOREREMOVE=1.
    """
    out: dict[str, socket.socket] = {}
    for name, fd in listen_fd_numbers(environ, pid, unset):
        try:
            os.set_inheritable(fd, False)
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            log.warning("passed descriptor %d (%s) is not a usable socket: %s", fd, name, exc)
            _close(fd)
            continue
        if name in out:
            log.warning("passed descriptor %d repeats the name %r: closed", fd, name)
            sock.close()
            continue
        out[name] = sock
    return out


def _parse(env: MutableMapping[str, str], pid: int) -> list[tuple[str, int]]:
    raw_pid, raw_fds = env.get(ENV_LISTEN_PID), env.get(ENV_LISTEN_FDS)
    if not raw_pid or not raw_fds:
        return []
    try:
        listen_pid, count = int(raw_pid), int(raw_fds)
    except ValueError:
        log.warning(
            "ignoring malformed $%s=%r / $%s=%r", ENV_LISTEN_PID, raw_pid, ENV_LISTEN_FDS, raw_fds
        )
        return []
    if listen_pid != pid or count <= 0:
        return []
    raw_names = env.get(ENV_LISTEN_FDNAMES)
    names = raw_names.split(":") if raw_names else []
    if names and len(names) != count:
        # sd_listen_fds_with_names refuses a mismatched list; keep the descriptors,
        # unnamed, rather than lose listeners that clients are waiting on.
        log.warning("$%s has %d names for %d descriptors", ENV_LISTEN_FDNAMES, len(names), count)
        names = []
    if not names:
        names = [UNNAMED] * count
    return [(names[i], SD_LISTEN_FDS_START + i) for i in range(count)]


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
