"""$LISTEN_FDS parsing: names, pid check, unsetting; real descriptors in a child process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from podctl.host.listenfds import listen_fd_numbers

ROOT = Path(__file__).resolve().parents[2]


def test_named_descriptors_start_at_3() -> None:
    env = {"LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web/http:db/pg"}
    assert listen_fd_numbers(env, pid=42) == [("web/http", 3), ("db/pg", 4)]
    assert env == {}  # unset, as sd_listen_fds(1) does


def test_descriptors_for_another_pid_are_not_ours_and_still_unset() -> None:
    env = {"LISTEN_PID": "41", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "web/http", "HOME": "/"}
    assert listen_fd_numbers(env, pid=42) == []
    assert env == {"HOME": "/"}


def test_keep_the_variables_when_asked() -> None:
    env = {"LISTEN_PID": "42", "LISTEN_FDS": "1"}
    assert listen_fd_numbers(env, pid=42, unset=False) == [("unknown", 3)]
    assert env == {"LISTEN_PID": "42", "LISTEN_FDS": "1"}


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"LISTEN_FDS": "1"},  # no LISTEN_PID: not for us (sd_listen_fds requires it)
        {"LISTEN_PID": "42", "LISTEN_FDS": "zero"},
        {"LISTEN_PID": "42", "LISTEN_FDS": "0"},
        {"LISTEN_PID": "x", "LISTEN_FDS": "1"},
    ],
)
def test_nothing_passed(env: dict[str, str]) -> None:
    assert listen_fd_numbers(env, pid=42) == []


def test_a_name_list_of_the_wrong_length_keeps_the_descriptors_unnamed() -> None:
    env = {"LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "only-one"}
    assert listen_fd_numbers(env, pid=42) == [("unknown", 3), ("unknown", 4)]


CHILD = textwrap.dedent(
    """
    import fcntl, json, os, socket, sys
    from podctl.host.listenfds import listen_sockets

    sources = [int(x) for x in sys.argv[1].split(",")]
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in sources]
    for fd in sources:
        os.close(fd)
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i)
        os.close(fd)
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ["LISTEN_FDS"] = str(len(sources))
    os.environ["LISTEN_FDNAMES"] = sys.argv[2]
    got = listen_sockets()
    out = {
        "env_left": [k for k in os.environ if k.startswith("LISTEN_")],
        "sockets": {
            name: {
                "fd": s.fileno(),
                "type": int(s.type),
                "addr": list(s.getsockname()),
                "inheritable": os.get_inheritable(s.fileno()),
            }
            for name, s in got.items()
        },
    }
    # Still listening: serve one client on web/http.
    conn, _ = got["web/http"].accept()
    conn.sendall(b"served")
    conn.close()
    print(json.dumps(out))
    """
)


def test_child_gets_named_sockets_and_serves_a_waiting_client(tmp_path: Path) -> None:
    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    r, w = os.pipe()  # not a socket: closed and skipped
    # A client connects before the child exists: it waits in the backlog.
    client = socket.create_connection(tcp.getsockname(), timeout=30)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    fds = [tcp.fileno(), udp.fileno(), r]
    try:
        proc = subprocess.run(
            [sys.executable, str(script), ",".join(map(str, fds)), "web/http:dns/udp:pipe"],
            pass_fds=fds,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert proc.returncode == 0, proc.stderr
        assert client.recv(16) == b"served"
        out = json.loads(proc.stdout)
        assert out["env_left"] == []
        socks = out["sockets"]
        assert sorted(socks) == ["dns/udp", "web/http"]
        assert socks["web/http"]["fd"] == 3
        assert socks["web/http"]["type"] == socket.SOCK_STREAM
        assert tuple(socks["web/http"]["addr"]) == tcp.getsockname()
        assert socks["dns/udp"]["type"] == socket.SOCK_DGRAM
        assert tuple(socks["dns/udp"]["addr"]) == udp.getsockname()
        assert not socks["web/http"]["inheritable"]
        assert "not a usable socket" in proc.stderr
    finally:
        client.close()
        tcp.close()
        udp.close()
        os.close(r)
        os.close(w)
