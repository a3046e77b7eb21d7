"""sd_notify on a plain datagram socket: no libsystemd, no blocking, no exceptions.

systemd passes `$NOTIFY_SOCKET` to a `Type=notify` service: a filesystem path, or an
abstract socket name written with a leading `@`. A message is one datagram of
newline-separated `KEY=VALUE` fields (sd_notify(3)); the file descriptor store takes
descriptors as SCM_RIGHTS ancillary data next to `FDSTORE=1`.

Sends never block (the socket is non-blocking: a full receive queue drops the message)
and never raise: supervision must not take podctl down. The first failure is logged as
a warning, later ones at debug level. Without `$NOTIFY_SOCKET` every call is a no-op
that returns False, so callers need no "are we under systemd" branches.

The watchdog: systemd sets `$WATCHDOG_USEC` (and `$WATCHDOG_PID` naming the process it
is meant for); `WATCHDOG=1` must arrive within that period, so `watchdog_interval` is
half of it. The caller sends it from a task on its main event loop, so a stalled loop
misses the deadline and systemd restarts the service, which is the point.
"""

from __future__ import annotations

import array
import logging
import os
import select
import socket
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, MutableMapping, Sequence

log = logging.getLogger("podctl.host.notify")

ENV_NOTIFY_SOCKET = "NOTIFY_SOCKET"
ENV_WATCHDOG_USEC = "WATCHDOG_USEC"
ENV_WATCHDOG_PID = "WATCHDOG_PID"

# systemd's limit for names in $LISTEN_FDNAMES and FDNAME= (FDNAME_MAX).
FDNAME_MAX = 255
# The default name systemd gives a stored descriptor sent without FDNAME=.
FDNAME_DEFAULT = "stored"


def fdname_is_valid(name: str) -> bool:
    """systemd's rule: 1..255 printable ASCII characters, no `:` (the list separator)."""
    return 0 < len(name) <= FDNAME_MAX and all(" " <= c <= "~" for c in name) and ":" not in name


def socket_address(value: str) -> str | bytes | None:
    """The address to send to for a $NOTIFY_SOCKET value (None when unusable).

    `@name` is the abstract socket `\\0name`; an absolute path is used as it is. systemd
    253 also accepts `vsock:` addresses (for VMs), which podctl does not need.
    """
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def watchdog_usec(environ: Mapping[str, str] | None = None, pid: int | None = None) -> int | None:
    """$WATCHDOG_USEC when it is meant for this process, else None (sd_watchdog_enabled).

    `$WATCHDOG_PID`, when set, must be our pid: a child that inherited the environment
    must not ping on the service's behalf.
    """
    env = os.environ if environ is None else environ
    raw = env.get(ENV_WATCHDOG_USEC, "")
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    wd_pid = env.get(ENV_WATCHDOG_PID)
    if wd_pid is not None and wd_pid != "":
        try:
            if int(wd_pid) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec


def watchdog_interval(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of $WATCHDOG_USEC), or None when disabled."""
    usec = watchdog_usec(environ, pid)
    return None if usec is None else usec / 2_000_000


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds: the clock systemd compares MONOTONIC_USEC= with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """A client of systemd's notify socket. Every method returns True when sent.

    Build it with `Notifier.from_environ()` (which can also remove the variables, so
    children such as `nft` do not inherit them), or with an explicit address in tests.
    """

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address_text = address
        self.watchdog_usec = watchdog_usec
        self._address = socket_address(address) if address else None
        self._sock: socket.socket | None = None
        self._warned = False
        if address and self._address is None:
            self._fail(f"unsupported ${ENV_NOTIFY_SOCKET} value {address!r}")

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str] | None = None, unset: bool = False
    ) -> Notifier:
        """From $NOTIFY_SOCKET/$WATCHDOG_USEC/$WATCHDOG_PID; `unset` removes them."""
        env = os.environ if environ is None else environ
        notifier = cls(env.get(ENV_NOTIFY_SOCKET) or None, watchdog_usec(env))
        if unset:
            for key in (ENV_NOTIFY_SOCKET, ENV_WATCHDOG_USEC, ENV_WATCHDOG_PID):
                env.pop(key, None)
        return notifier

    @property
    def enabled(self) -> bool:
        """True when there is a notify socket to talk to."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings, or None when systemd expects none."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2_000_000

    # -- the protocol ---------------------------------------------------------------

    def ready(self, status: str | None = None) -> bool:
        """READY=1 (start-up or reload finished), with a STATUS= line when given."""
        return self.send("READY=1", *_status(status))

    def status(self, text: str) -> bool:
        """STATUS=<one line> shown by `systemctl status`."""
        return self.send(*_status(text))

    def watchdog(self) -> bool:
        """WATCHDOG=1: the main loop is alive."""
        return self.send("WATCHDOG=1")

    def extend_timeout(self, usec: int) -> bool:
        """EXTEND_TIMEOUT_USEC=: the current start/stop/reload may take `usec` more."""
        return self.send(f"EXTEND_TIMEOUT_USEC={max(0, int(usec))}")

    def reloading(self, status: str | None = None) -> bool:
        """RELOADING=1 with MONOTONIC_USEC= (notify-reload requires the timestamp)."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: shutting down (after SIGTERM/SIGINT)."""
        return self.send("STOPPING=1", *_status(status))

    def fdstore(self, fd: int, name: str, poll: bool = True) -> bool:
        """Hand a duplicate of `fd` to systemd's store under `name` (FDSTORE=1).

        It comes back in $LISTEN_FDS/$LISTEN_FDNAMES after a restart. systemd drops a
        stored descriptor that reports POLLHUP/POLLERR unless `poll` is False (FDPOLL=0).
        The caller keeps (and may close) its own `fd`: systemd holds its own reference.
        """
        if not fdname_is_valid(name):
            return self._fail(f"cannot store fd under {name!r}: not a valid FDNAME")
        fields = ["FDSTORE=1", f"FDNAME={name}"]
        if not poll:
            fields.append("FDPOLL=0")
        return self.send(*fields, fds=[fd])

    def fdstore_remove(self, name: str) -> bool:
        """FDSTOREREMOVE=1: systemd closes every stored descriptor named `name`."""
        if not fdname_is_valid(name):
            return self._fail(f"cannot remove fd {name!r}: not a valid FDNAME")
        return self.send("FDSTOREREMOVE=1", f"FDNAME={name}")

    def barrier(self, timeout: float = 5.0) -> bool:
        """Wait until systemd has processed every message sent before (sd_notify_barrier).

        BLOCKS for up to `timeout`: call it from a worker thread, or just before exit so
        that a FDSTORE/STOPPING sent last is not lost with the process. True when
        systemd confirmed (closed its end of the pipe) in time.
        """
        if not self.enabled:
            return False
        r, w = os.pipe()
        try:
            sent = self.send("BARRIER=1", fds=[w])
            os.close(w)
            w = -1
            if not sent:
                return False
            poller = select.poll()
            poller.register(r, select.POLLHUP)
            return bool(poller.poll(max(0.0, timeout) * 1000))
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)

    # -- transport ------------------------------------------------------------------

    def send(self, *fields: str, fds: Sequence[int] = ()) -> bool:
        """Send one datagram of KEY=VALUE fields (and descriptors); never raises."""
        if self._address is None:
            return False
        payload = "\n".join(fields).encode()
        ancillary = []
        if fds:
            ancillary.append(
                (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())
            )
        try:
            sock = self._socket()
            sock.sendmsg([payload], ancillary, 0, self._address)
        except (OSError, ValueError, OverflowError) as exc:
            return self._fail(f"cannot notify systemd at {self.address_text}: {exc}")
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.setblocking(False)
            self._sock = sock
        return self._sock

    def _fail(self, message: str) -> bool:
        if self._warned:
            log.debug("%s", message)
        else:
            self._warned = True
            log.warning("%s (further notify errors are logged at debug level)", message)
        return False


def _status(text: str | None) -> list[str]:
    if text is None:
        return []
    # One line: a newline would start a new field (and could forge one).
    return ["STATUS=" + " ".join(text.splitlines()).strip()]
