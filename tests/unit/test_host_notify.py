"""sd_notify client: real datagram sockets (path and abstract), fields, fds, silence, errors."""

from __future__ import annotations

import array
import logging
import os
import secrets
import socket
import time
from pathlib import Path

import pytest

from podctl.host import notify
from podctl.host.notify import Notifier


class Receiver:
    """A bound AF_UNIX datagram socket standing in for systemd."""

    def __init__(self, tmp_path: Path, abstract: bool) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"podctl-unit-{secrets.token_hex(6)}"
            self.sock.bind(b"\0" + name.encode())
            self.address = "@" + name
        else:
            path = tmp_path / "notify.sock"
            self.sock.bind(str(path))
            self.address = str(path)
        self.sock.settimeout(10)

    def recv(self) -> tuple[list[str], list[int]]:
        data, anc, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(16 * 4))
        fds = array.array("i")
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        return data.decode().split("\n"), list(fds)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def receiver(request: pytest.FixtureRequest, tmp_path: Path):
    r = Receiver(tmp_path, abstract=request.param == "abstract")
    yield r
    r.close()


def test_each_message_carries_its_fields(receiver: Receiver) -> None:
    n = Notifier(receiver.address)
    assert n.enabled
    assert n.ready("2 stacks, 3/3 ready")
    assert receiver.recv() == (["READY=1", "STATUS=2 stacks, 3/3 ready"], [])
    assert n.status("engine unavailable")
    assert receiver.recv() == (["STATUS=engine unavailable"], [])
    assert n.watchdog()
    assert receiver.recv() == (["WATCHDOG=1"], [])
    assert n.extend_timeout(90_000_000)
    assert receiver.recv() == (["EXTEND_TIMEOUT_USEC=90000000"], [])
    assert n.stopping()
    assert receiver.recv() == (["STOPPING=1"], [])
    assert n.fdstore_remove("web/http")
    assert receiver.recv() == (["FDSTOREREMOVE=1", "FDNAME=web/http"], [])
    n.close()


def test_reloading_sends_the_monotonic_clock(receiver: Receiver) -> None:
    n = Notifier(receiver.address)
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    fields, _ = receiver.recv()
    assert fields[0] == "RELOADING=1"
    key, _, value = fields[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after
    n.close()


def test_fdstore_passes_the_listening_socket_itself(receiver: Receiver) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    n = Notifier(receiver.address)
    assert n.fdstore(listener.fileno(), "web/http")
    fields, fds = receiver.recv()
    assert fields == ["FDSTORE=1", "FDNAME=web/http"]
    assert len(fds) == 1
    received = socket.socket(fileno=fds[0])
    try:
        # The same open socket: same inode, same bound address, still listening.
        assert os.fstat(received.fileno()).st_ino == os.fstat(listener.fileno()).st_ino
        assert received.getsockname() == listener.getsockname()
        listener.close()
        with socket.create_connection(received.getsockname(), timeout=10) as client:
            conn, _ = received.accept()
            client.sendall(b"x")
            assert conn.recv(1) == b"x"
            conn.close()
    finally:
        received.close()
        n.close()


def test_fdstore_without_polling(receiver: Receiver) -> None:
    n = Notifier(receiver.address)
    r, w = os.pipe()
    try:
        assert n.fdstore(r, "pipe", poll=False)
        fields, fds = receiver.recv()
        assert fields == ["FDSTORE=1", "FDNAME=pipe", "FDPOLL=0"]
        for fd in fds:
            os.close(fd)
    finally:
        os.close(r)
        os.close(w)
        n.close()


def test_status_is_one_line_so_it_cannot_forge_fields(receiver: Receiver) -> None:
    n = Notifier(receiver.address)
    assert n.status("web not ready\nREADY=1")
    assert receiver.recv() == (["STATUS=web not ready READY=1"], [])
    n.close()


def test_invalid_fd_names_are_refused_without_sending(receiver: Receiver) -> None:
    n = Notifier(receiver.address)
    assert not n.fdstore(0, "a:b")
    assert not n.fdstore_remove("")
    assert not n.fdstore_remove("x" * 256)
    assert n.watchdog()
    assert receiver.recv() == (["WATCHDOG=1"], [])  # nothing was sent before it
    n.close()


def test_silent_without_notify_socket() -> None:
    n = Notifier.from_environ({})
    assert not n.enabled
    assert not n.ready("x")
    assert not n.watchdog()
    assert not n.fdstore(0, "x")
    assert not n.barrier()
    assert n.watchdog_interval is None


def test_errors_are_logged_once_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier(str(tmp_path / "nobody-listens.sock"))
    with caplog.at_level(logging.DEBUG, logger="podctl.host.notify"):
        assert not n.ready()
        assert not n.watchdog()
        assert not n.stopping()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "nobody-listens.sock" in warnings[0].getMessage()
    n.close()


def test_unusable_address_is_reported_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="podctl.host.notify"):
        n = Notifier("relative/path")
    assert not n.enabled
    assert not n.ready()
    assert "unsupported" in caplog.text


def test_a_full_queue_drops_the_message_instead_of_blocking(tmp_path: Path) -> None:
    r = Receiver(tmp_path, abstract=False)
    n = Notifier(r.address)
    try:
        # Nobody reads: the receive queue fills up and sends start failing at once.
        results = [n.status("x" * 1000) for _ in range(10_000)]
        assert results[0] is True
        assert results[-1] is False
    finally:
        n.close()
        r.close()


def test_from_environ_reads_and_optionally_unsets() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    n = Notifier.from_environ(env, unset=True)
    assert n.enabled
    assert n.watchdog_interval == 1.5
    assert env == {}
    kept = {"NOTIFY_SOCKET": "/run/x"}
    Notifier.from_environ(kept)
    assert kept == {"NOTIFY_SOCKET": "/run/x"}


@pytest.mark.parametrize(
    ("env", "pid", "expected"),
    [
        ({}, 10, None),
        ({"WATCHDOG_USEC": "1000000"}, 10, 0.5),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "10"}, 10, 0.5),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "11"}, 10, None),  # meant for another
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "x"}, 10, None),
        ({"WATCHDOG_USEC": "0"}, 10, None),
        ({"WATCHDOG_USEC": "soon"}, 10, None),
    ],
)
def test_watchdog_interval_is_half_the_period_for_our_pid(
    env: dict[str, str], pid: int, expected: float | None
) -> None:
    assert notify.watchdog_interval(env, pid=pid) == expected


def test_socket_addresses() -> None:
    assert notify.socket_address("@sd/notify") == b"\0sd/notify"
    assert notify.socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify.socket_address("@") is None
    assert notify.socket_address("vsock:2:1234") is None


def test_barrier_returns_once_the_other_side_closed_the_pipe(receiver: Receiver) -> None:
    import threading

    n = Notifier(receiver.address)
    got: list[list[str]] = []

    def systemd() -> None:
        fields, fds = receiver.recv()
        got.append(fields)
        for fd in fds:
            os.close(fd)

    t = threading.Thread(target=systemd)
    t.start()
    assert n.barrier(timeout=30)
    t.join(10)
    assert got == [["BARRIER=1"]]
    n.close()


def test_barrier_times_out_when_nobody_answers(receiver: Receiver) -> None:
    n = Notifier(receiver.address)
    assert not n.barrier(timeout=0.05)  # the receiver holds the pipe's write end
    _fields, fds = receiver.recv()
    for fd in fds:
        os.close(fd)
    n.close()
