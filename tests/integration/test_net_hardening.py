"""Issue 9: the proxy and the control socket under descriptor exhaustion, and the
in-stack listener serving only its own network, against the real engine."""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from podctl.net import Endpoint, ListenAddress, ProxySet, ServiceBinding
from podctl.net.limits import connection_cap
from tests.integration.harness import (
    Podctl,
    docker,
    free_port,
    stack_containers,
    wait_for,
    write_stack,
)

pytestmark = pytest.mark.docker

NOFILE = 1024
IDLE = 650  # 1300 descriptors if each took two: more than podctl may open


class LimitedPodctl(Podctl):
    """`podctl run` with soft and hard RLIMIT_NOFILE at `NOFILE` (so it cannot raise it)."""

    def start(self, *files: Path | str, extra: tuple[str, ...] = ("--no-watch",)) -> None:
        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))

        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "podctl", "run", "-v", *map(str, files), *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            preexec_fn=limit,
        )
        wait_for(
            "the control socket",
            lambda: self.cli("get", "stacks").returncode == 0 and self._alive(),
            30,
        )


@pytest.fixture
def lpc(tmp_path: Path, seeded_images: list[str]) -> Iterator[LimitedPodctl]:
    p = LimitedPodctl(tmp_path)
    try:
        yield p
    finally:
        p.close()


def control_round_trip(sock: str, verb: str = "get_pods") -> tuple[float, dict[str, object]]:
    """One request on the control socket: (seconds, reply)."""
    t0 = time.monotonic()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock)
        s.sendall(json.dumps({"verb": verb}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    return time.monotonic() - t0, json.loads(buf)


def open_idle(port: int, n: int) -> list[socket.socket]:
    conns = []
    for _ in range(n):
        s = socket.socket()
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        conns.append(s)
    return conns


def still_open(conns: list[socket.socket]) -> int:
    """How many of `conns` the proxy has not closed (a closed one reads EOF or a reset)."""
    n = 0
    for s in conns:
        s.setblocking(False)
        try:
            if s.recv(1) != b"":
                n += 1
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def test_idle_connections_do_not_exhaust_podctl(
    lpc: LimitedPodctl, tmp_path: Path, stack_name: str
) -> None:
    port = free_port()
    stack = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          web:
            image: busybox:1.36
            command: ["sh", "-c", "echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
            replicas: 2
            ports: {{http: 8080}}
            readiness: {{tcp: {{port: http}}, period: 1s, failure_threshold: 1}}
            stop_grace: 1s
        services:
          web: {{pod: web, port: {port}, target: http}}
        """,
    )
    lpc.start(stack)
    lpc.wait_ready(stack_name, 2)
    ids = stack_containers(stack_name)
    sock = lpc.env["PODCTL_SOCKET"]
    conns: list[socket.socket] = []
    try:
        conns = open_idle(port, IDLE)
        cap = connection_cap(NOFILE)
        # The proxy holds what fits in its descriptor budget and closes the rest at once.
        wait_for(f"{cap} connections held", lambda: still_open(conns) == cap, 30)
        # podctl answers at once, probes keep passing, nothing was replaced.
        for _ in range(5):
            took, reply = control_round_trip(sock)
            assert reply["ok"] is True
            assert took < 1.0, took
        t0 = time.monotonic()
        pods = lpc.pods(stack_name)
        cli_s = time.monotonic() - t0
        assert len(pods) == 2
        deadline = time.monotonic() + 5  # five probe periods
        while time.monotonic() < deadline:
            assert all(p["ready"] for p in lpc.pods(stack_name)), lpc.pods(stack_name)
            time.sleep(0.5)
        assert lpc.proc is not None and lpc.proc.poll() is None
        assert stack_containers(stack_name) == ids
        # Old clients leave, new ones are served.
        for s in conns[:50]:
            s.close()
        del conns[:50]

        def fetch() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                c.sendall(b"GET / HTTP/1.0\r\n\r\n")
                return b"ok" in c.recv(4096)

        wait_for("a new connection served", fetch, 30)
        print(f"held={cap} control_rtt={took * 1000:.1f}ms cli={cli_s * 1000:.0f}ms")
    finally:
        for s in conns:
            s.close()
    out = lpc.output()
    assert "Too many open files" not in out, out[-3000:]
    assert lpc.stop() == 0


# -- the in-stack listener serves its own network only ---------------------------------


@pytest.fixture
def bridge(stack_name: str) -> Iterator[tuple[str, str, str]]:
    """A labelled bridge network of the test's own: (name, gateway, subnet)."""
    name = f"{stack_name}-net"
    docker("network", "create", "--label", f"io.podctl.stack={stack_name}", name)
    (cfg,) = json.loads(docker("network", "inspect", name, "--format", "{{json .IPAM.Config}}"))
    try:
        yield name, str(cfg["Gateway"]), str(cfg["Subnet"])
    finally:
        # The test's own object: removed here (docker_cleanup would fail the test for
        # it). The engine may still be releasing the --rm clients' endpoints.
        for _ in range(50):
            if docker("network", "rm", name, check=False) or not docker(
                "network", "ls", "-q", "--filter", f"name=^{name}$"
            ):
                break
            time.sleep(0.2)


async def nc_from(network: str, gateway: str, port: int, stack: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "docker",
        "run",
        "--rm",
        "--label",
        f"io.podctl.stack={stack}",
        "--network",
        network,
        "busybox:1.36",
        "sh",
        "-c",
        f"echo hi | nc -w 2 {gateway} {port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, _ = await proc.communicate()
    return out.decode().strip()


@pytest.mark.anyio
async def test_in_stack_listener_serves_only_its_network(
    bridge: tuple[str, str, str], stack_name: str, seeded_images: list[str]
) -> None:
    network, gateway, subnet = bridge

    async def answer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read(100)
        w.write(b"served\n")
        await w.drain()
        w.close()

    backend = await asyncio.start_server(answer, "127.0.0.1", 0)
    bport = backend.sockets[0].getsockname()[1]
    port = free_port()
    ps = ProxySet()
    try:
        ps.set_endpoints("t/web", [Endpoint("b", "127.0.0.1", bport)])
        errors = await ps.apply(
            [ServiceBinding("t/web", (ListenAddress(gateway, port, kernel=False, peers=subnet),))]
        )
        assert errors == []
        assert await nc_from(network, gateway, port, stack_name) == "served"
        assert await nc_from("bridge", gateway, port, stack_name) == ""
        stats = ps.stats()["t/web"]
        assert stats.peer_rejected == 1
        assert stats.total == 1
    finally:
        await ps.close()
        backend.close()


def test_podctl_in_stack_service_refuses_other_networks(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    """Through `podctl run`: `web:PORT` answers the stack's own containers; the same
    gateway address, dialled from the default bridge, closes at once and is counted."""
    port = free_port()
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          web:
            image: busybox:1.36
            command: ["sh", "-c", "echo served > /www/index.html; exec httpd -f -p 8080 -h /www"]
            ports: {{http: 8080}}
            stop_grace: 1s
          client:
            image: busybox:1.36
            command: ["sleep", "3600"]
            stop_grace: 1s
        services:
          web: {{pod: web, port: {port}, target: http}}
        """,
    )
    pc.start(path)
    pc.wait_ready(stack_name, 2)
    (svc,) = wait_for(
        "the in-stack listener",
        lambda: [s for s in pc.services(stack_name) if s["in_stack"]] or None,
        20,
    )
    gateway, in_port = svc["in_stack"].rsplit(":", 1)
    request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3"
    inside = pc.cli("exec", f"{stack_name}/client-0", "--", "sh", "-c", f"{request} web {in_port}")
    assert "served" in inside.stdout, inside
    outside = subprocess.run(
        [
            # Not labelled with the stack: podctl (rightly) removes a container of its
            # stack that no pod of the file accounts for. --rm cleans it up.
            "docker",
            "run",
            "--rm",
            "busybox:1.36",
            "sh",
            "-c",
            f"{request} {gateway} {in_port}; echo done",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "done" in outside.stdout, outside
    assert "served" not in outside.stdout, outside.stdout
    (row,) = wait_for(
        "the refusal counted",
        lambda: [s for s in pc.services(stack_name) if s["peer_rejected"] >= 1] or None,
        10,
    )
    assert row["name"] == "web"
