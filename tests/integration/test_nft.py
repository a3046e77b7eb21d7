"""The kernel fast path on the real kernel: nftables DNAT from 127.0.0.1 to two containers.

Needs root, `nft` and Docker. Two busybox httpd replicas on a podctl-labelled
network each serve their own hostname; a `ProxySet(kernel_fast_path=True)`
listens on a free loopback port and programs table `ip podctl`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter

import anyio
import pytest

from podctl import labels
from podctl.net import Endpoint, ListenAddress, ProxySet, ServiceBinding
from tests.integration.harness import docker, free_port, wait_for

pytestmark = [
    pytest.mark.docker,
    pytest.mark.anyio,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("nft") is None, reason="needs root and nft"
    ),
]

HTTPD = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"


def start_backend(stack: str, net: str, name: str) -> Endpoint:
    docker(
        "run", "-d", "--name", name, "--hostname", name, "--network", net,
        "--label", f"{labels.STACK}={stack}", "busybox:1.36", "sh", "-c", HTTPD,
    )  # fmt: skip
    ip = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name)
    return Endpoint(name, ip, 8080)


async def get(port: int) -> str:
    """One request on a new connection; the body is the replica's hostname."""
    with anyio.fail_after(5):
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            try:
                while True:
                    data += await s.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    return data.split(b"\r\n\r\n", 1)[-1].decode().strip()


def nft_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    return ("asyncio", {"use_uvloop": True})


async def test_dnat_round_robin_and_removed_endpoint(
    stack_name: str, seeded_images: list[str]
) -> None:
    net = f"{stack_name}-net"
    docker("network", "create", "--label", f"{labels.STACK}={stack_name}", net)
    try:
        await serve_through_nft(stack_name, net)
    finally:
        docker("rm", "-f", f"{stack_name}-a", f"{stack_name}-b", check=False)
        docker("network", "rm", net)


async def serve_through_nft(stack_name: str, net: str) -> None:
    a = start_backend(stack_name, net, f"{stack_name}-a")
    b = start_backend(stack_name, net, f"{stack_name}-b")
    for ep in (a, b):  # httpd is up (reached directly, not through podctl)

        def up(ep: Endpoint = ep) -> bool | None:
            r = subprocess.run(
                ["docker", "exec", ep.key, "wget", "-q", "-O-", "http://127.0.0.1:8080/"],
                capture_output=True,
                check=False,
            )
            return True if r.returncode == 0 else None

        wait_for(f"{ep.key} serving", up, timeout=20)

    port = free_port()
    proxies = ProxySet(drain_s=0, kernel_fast_path=True)
    service = f"{stack_name}/web"
    try:
        proxies.set_endpoints(service, [a, b])
        assert (
            await proxies.apply([ServiceBinding(service, (ListenAddress("127.0.0.1", port),))])
            == []
        )
        assert proxies.kernel_serves(service), "nft did not take the service"
        assert "table ip podctl" in nft_tables()

        got = Counter([await get(port) for _ in range(20)])
        assert got == {a.key: 10, b.key: 10}  # numgen inc: strict alternation
        # The proxy saw none of them: the kernel did the work, and counted it.
        await proxies.refresh_stats()
        stats = proxies.stats()[service]
        assert stats.total == 20
        assert dict(proxies.kernel.stats()[service].per_endpoint) == {a.key: 10, b.key: 10}  # type: ignore[union-attr]

        # b leaves the table: no new connection reaches it once drain() returns.
        proxies.set_endpoints(service, [a])
        await proxies.drain(service, b.key, 1.0)
        assert Counter([await get(port) for _ in range(10)]) == {a.key: 10}

        # Nothing ready: the rule goes, and the listener refuses at once.
        proxies.set_endpoints(service, [])
        await proxies.drain(service, a.key, 1.0)
        assert not proxies.kernel_serves(service)
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, OSError)):
            async with await anyio.connect_tcp("127.0.0.1", port) as s:
                await s.send(b"GET / HTTP/1.0\r\n\r\n")
                await s.receive()
    finally:
        await proxies.close()
    assert "table ip podctl" not in nft_tables()
    assert "table ip nat" in nft_tables()  # Docker's tables are untouched
