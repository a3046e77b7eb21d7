"""KernelFastPath and ProxySet's fast path against a fake `nft` (no root, no kernel)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from podctl.net import Endpoint, ListenAddress, ProxySet, ServiceBinding
from podctl.net.nft import KernelFastPath

pytestmark = pytest.mark.anyio


class FakeNft:
    """Records every script; refuses scripts that contain any of `refuse`."""

    def __init__(self) -> None:
        self.scripts: list[str] = []
        self.refuse: list[str] = []
        self.calls: list[list[str]] = []

    async def __call__(self, argv: list[str], stdin: bytes) -> tuple[int, bytes, bytes]:
        self.calls.append(argv)
        text = stdin.decode()
        if "-j" in argv:
            return 0, b'{"nftables": []}', b""
        if any(bad in text for bad in self.refuse):
            return 1, b"", b"Error: refused"
        if "-c" not in argv:
            self.scripts.append(text)
        return 0, b"", b""

    @property
    def table(self) -> str:
        return self.scripts[-1] if self.scripts else ""


def kernel(nft: FakeNft, tmp_path: Path, supported: bool = True) -> KernelFastPath:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "route").write_text("Iface\tDestination\n")
    return KernelFastPath(runner=nft, proc_root=tmp_path, supported=lambda: supported)


def binding(name: str, port: int) -> ServiceBinding:
    return ServiceBinding(name, (ListenAddress("127.0.0.1", port),))


async def test_endpoints_reach_the_kernel_and_leave_it(tmp_path: Path) -> None:
    nft = FakeNft()
    k = kernel(nft, tmp_path)
    k.set_endpoints("s/web", [("127.0.0.1", 8080)], [Endpoint("a", "127.0.0.1", 9001)])
    await k.sync()
    assert k.serves("s/web")
    assert "dnat ip to 127.0.0.1:9001" in nft.table
    k.set_endpoints("s/web", [("127.0.0.1", 8080)], [])
    await k.sync()
    assert not k.serves("s/web")
    assert "dnat" not in nft.table
    await k.close()
    assert nft.table.endswith("delete table ip podctl\n")


async def test_a_refused_service_falls_back_and_the_others_stay(tmp_path: Path) -> None:
    nft = FakeNft()
    nft.refuse = ["10.9.9.9"]
    k = kernel(nft, tmp_path)
    k.set_endpoints("s/good", [("127.0.0.1", 8080)], [Endpoint("a", "10.0.0.2", 80)])
    k.set_endpoints("s/bad", [("127.0.0.1", 8081)], [Endpoint("b", "10.9.9.9", 80)])
    await k.sync()
    assert k.serves("s/good") and not k.serves("s/bad")
    assert "10.0.0.2" in nft.table and "10.9.9.9" not in nft.table
    # A changed table gets another chance.
    nft.refuse = []
    k.set_endpoints("s/bad", [("127.0.0.1", 8081)], [Endpoint("b", "10.9.9.8", 80)])
    await k.sync()
    assert k.serves("s/bad")


async def test_without_nft_nothing_is_run_and_the_proxy_serves(tmp_path: Path) -> None:
    nft = FakeNft()
    k = kernel(nft, tmp_path, supported=False)
    k.set_endpoints("s/web", [("127.0.0.1", 8080)], [Endpoint("a", "127.0.0.1", 9001)])
    await k.sync()
    assert k.available is False and not k.serves("s/web") and nft.calls == []
    await k.close()
    assert nft.calls == []


async def test_proxyset_programs_only_addresses_it_holds(tmp_path: Path) -> None:
    nft = FakeNft()
    proxies = ProxySet(drain_s=0, kernel=kernel(nft, tmp_path))
    # A port someone else holds: podctl must not steal it with DNAT.
    taken = await anyio.create_tcp_listener(local_host="127.0.0.1")
    busy = taken.extra(anyio.abc.SocketAttribute.local_port)
    try:
        proxies.set_endpoints("s/web", [Endpoint("a", "127.0.0.1", 9001)])
        proxies.set_endpoints("s/other", [Endpoint("b", "127.0.0.1", 9002)])
        errors = await proxies.apply([binding("s/web", 0), binding("s/other", busy)])
        assert [e.service for e in errors] == ["s/other"]
        assert proxies.kernel_serves("s/web") and not proxies.kernel_serves("s/other")
        assert f"tcp dport {busy} " not in nft.table
        assert "127.0.0.1:9001" in nft.table and "127.0.0.1:9002" not in nft.table
    finally:
        await taken.aclose()
        await proxies.close()


async def test_proxyset_follows_readiness_and_removal(tmp_path: Path) -> None:
    nft = FakeNft()
    proxies = ProxySet(drain_s=0, kernel=kernel(nft, tmp_path))
    async with anyio.create_task_group() as tg:
        await tg.start(proxies.run)
        try:
            await proxies.apply([binding("s/web", 0)])
            assert not proxies.kernel_serves("s/web")  # nothing ready: the proxy refuses
            proxies.set_endpoints("s/web", [Endpoint("a", "127.0.0.1", 9001)])
            # drain() waits until the kernel holds the current table.
            await proxies.drain("s/web", "gone", 1.0)
            assert proxies.kernel_serves("s/web")
            assert "127.0.0.1:9001" in nft.table
            await proxies.apply([])
            assert not proxies.kernel_serves("s/web") and "dnat" not in nft.table
        finally:
            await proxies.close()
            tg.cancel_scope.cancel()
    assert nft.table.endswith("delete table ip podctl\n")
