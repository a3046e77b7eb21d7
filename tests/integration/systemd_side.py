"""systemd's side of the notify protocol, for tests: no systemd (PID 1) needed.

`SystemdSide` binds a notify socket (a path or an abstract name), runs a command the way
a `Type=notify` unit does and records what it says:

    with SystemdSide(tmp_path) as sd:
        proc = sd.start([podctl, "run", ...], watchdog_usec=2_000_000)
        sd.wait_for("READY=1")                  # the first message with READY=1
        proc.send_signal(signal.SIGTERM)
        sd.wait_for("STOPPING=1")
        proc.wait(30)
        proc2 = sd.start([...], pass_stored=True)  # a restart: the store as $LISTEN_FDS

It keeps the file descriptor store as systemd does: FDSTORE=1 (+ FDNAME=, default
"stored") keeps the received descriptors, FDSTOREREMOVE=1 closes those with the name,
BARRIER=1 closes the pipe it came with. Every message records the sender's pid (from
SCM_CREDENTIALS, as NotifyAccess=main checks it) and its arrival time (monotonic).

`start` execs the command through this module's own launcher (`python -m
tests.integration.systemd_side --exec ...`), which moves the stored descriptors to
3, 4, ... and sets $LISTEN_PID/$WATCHDOG_PID to its own pid before exec(): the pid is
known only in the child, which is why systemd does the same after fork().
"""

from __future__ import annotations

import array
import fcntl
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_MAX_FDS = 253  # SCM_MAX_FD
_CRED_SIZE = 12  # struct ucred: pid, uid, gid


@dataclass
class Message:
    """One datagram: its fields in order, the sender's pid and the descriptors it carried."""

    raw: str
    fields: dict[str, str]
    pid: int | None
    time: float
    fds: list[int] = field(default_factory=list)

    def has(self, item: str) -> bool:
        """`KEY=VALUE` is one of the fields, or `KEY` is present (any value)."""
        key, sep, value = item.partition("=")
        if not sep:
            return key in self.fields
        return self.fields.get(key) == value


class SystemdSide:
    """A notify socket plus the file descriptor store, recorded for assertions."""

    def __init__(self, tmp_path: Path | None = None, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        if abstract or tmp_path is None:
            name = f"podctl-test-{secrets.token_hex(8)}"
            self.sock.bind(b"\0" + name.encode())
            self.notify_socket = "@" + name
        else:
            path = tmp_path / f"notify-{secrets.token_hex(4)}.sock"
            self.sock.bind(str(path))
            self.notify_socket = str(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.1)
        self.messages: list[Message] = []
        # name -> descriptors (ours, duplicates of what the service sent), in store order.
        self.store: dict[str, list[int]] = {}
        self.errors: list[str] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="systemd-side", daemon=True)
        self._thread.start()
        self.processes: list[subprocess.Popen[bytes]] = []

    # -- running a service --------------------------------------------------------------

    def env(
        self, watchdog_usec: int | None = None, base: dict[str, str] | None = None
    ) -> dict[str, str]:
        """The environment a notify unit gets (without the pid-bound variables)."""
        env = dict(os.environ if base is None else base)
        for key in ("LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(key, None)
        env["NOTIFY_SOCKET"] = self.notify_socket
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def start(
        self,
        argv: Sequence[str],
        *,
        watchdog_usec: int | None = None,
        pass_stored: bool = False,
        env: dict[str, str] | None = None,
        **popen: Any,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` as the unit's main process (stdin closed).

        With `pass_stored`, the stored descriptors are passed as $LISTEN_FDS with their
        names in $LISTEN_FDNAMES, as systemd does on a restart.
        """
        names: list[str] = []
        fds: list[int] = []
        if pass_stored:
            with self._cond:
                for name, stored in self.store.items():
                    for fd in stored:
                        names.append(name)
                        fds.append(fd)
        launcher = [sys.executable, "-m", "tests.integration.systemd_side", "--exec"]
        launcher += [",".join(str(fd) for fd in fds), ":".join(names)]
        launcher += ["1" if watchdog_usec is not None else "0", "--", *argv]
        child_env = self.env(watchdog_usec, env)
        # The launcher imports this module: make the repository importable.
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), child_env.get("PYTHONPATH", "")) if p
        )
        popen.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(launcher, env=child_env, pass_fds=fds, **popen)
        self.processes.append(proc)
        return proc

    # -- reading what it said -------------------------------------------------------------

    def wait_for(
        self,
        match: str | Callable[[Message], bool],
        timeout: float = 30.0,
        after: int = 0,
        pid: int | None = None,
    ) -> Message:
        """The first message (from index `after`, from `pid` if given) that matches.

        `match` is "KEY=VALUE", "KEY" or a predicate. Raises AssertionError at the
        deadline with everything received so far.
        """
        pred = match if callable(match) else (lambda m: m.has(match))
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages[after:]:
                    if (pid is None or m.pid == pid) and pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no notify message matching {match!r} within {timeout} s; "
                        f"got {[m.raw for m in self.messages]}"
                    )
                self._cond.wait(left)

    def wait_count(
        self, match: str, count: int, timeout: float = 30.0, after: int = 0
    ) -> list[Message]:
        """Wait until `count` messages (from index `after`) match; returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self.messages[after:] if m.has(match)]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{len(found)}/{count} messages matching {match!r} within {timeout} s"
                    )
                self._cond.wait(left)

    def snapshot(self) -> list[Message]:
        with self._cond:
            return list(self.messages)

    def stored_names(self) -> list[str]:
        with self._cond:
            return [name for name, fds in self.store.items() for _ in fds]

    # -- life cycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop receiving, kill what is still running, close the store."""
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        with self._cond:
            for fds in self.store.values():
                for fd in fds:
                    _close(fd)
            self.store.clear()

    def __enter__(self) -> SystemdSide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _receive(self) -> None:
        anc = socket.CMSG_SPACE(_MAX_FDS * 4) + socket.CMSG_SPACE(_CRED_SIZE)
        while not self._stop.is_set():
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(
                    65536, anc, socket.MSG_CMSG_CLOEXEC
                )
            except TimeoutError:
                continue
            except OSError as exc:
                if not self._stop.is_set():
                    self.errors.append(str(exc))
                return
            self._record(data, ancdata)

    def _record(self, data: bytes, ancdata: list[tuple[int, int, bytes]]) -> None:
        fds: list[int] = []
        pid = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                arr = array.array("i")
                arr.frombytes(payload[: len(payload) - len(payload) % arr.itemsize])
                fds.extend(arr)
            elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = int.from_bytes(payload[:4], sys.byteorder)
        raw = data.decode(errors="replace")
        fields: dict[str, str] = {}
        for line in raw.split("\n"):
            key, sep, value = line.partition("=")
            if sep:
                fields[key] = value
        msg = Message(raw=raw, fields=fields, pid=pid, time=time.monotonic(), fds=list(fds))
        with self._cond:
            if fields.get("FDSTORE") == "1" and fds:
                self.store.setdefault(fields.get("FDNAME", "stored"), []).extend(fds)
                fds = []
            elif fields.get("FDSTOREREMOVE") == "1":
                for fd in self.store.pop(fields.get("FDNAME", ""), []):
                    _close(fd)
            # BARRIER=1 and anything else: systemd closes what it does not keep; for a
            # barrier that closing is the answer the sender waits for.
            for fd in fds:
                _close(fd)
            self.messages.append(msg)
            self._cond.notify_all()


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _launch(fd_list: str, names: str, watchdog: str, argv: list[str]) -> None:
    """In the child: stored descriptors to 3.., pid-bound variables, then exec."""
    fds = [int(x) for x in fd_list.split(",") if x]
    # Move every source out of the target range first, so no dup2 clobbers a source.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in fds]
    for fd in fds:
        os.close(fd)
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i, inheritable=True)
        os.close(fd)
    pid = str(os.getpid())
    if fds:
        os.environ["LISTEN_FDS"] = str(len(fds))
        os.environ["LISTEN_FDNAMES"] = names
        os.environ["LISTEN_PID"] = pid
    if watchdog == "1":
        os.environ["WATCHDOG_PID"] = pid
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    # python -m tests.integration.systemd_side --exec FDS NAMES WATCHDOG -- ARGV...
    if len(sys.argv) < 7 or sys.argv[1] != "--exec" or sys.argv[5] != "--":
        sys.exit("usage: systemd_side --exec FDS NAMES 0|1 -- ARGV...")
    _launch(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[6:])
