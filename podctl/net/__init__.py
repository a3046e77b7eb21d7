"""Services: the TCP proxy, its listeners and counters (standalone: fed endpoints, never Docker)."""

from podctl.net.nft import KernelFastPath, KernelStats
from podctl.net.proxy import Endpoint, ProxyBindError, ProxyStats, ServiceProxy
from podctl.net.proxyset import ListenAddress, ListenError, ProxySet, ServiceBinding

__all__ = [
    "Endpoint",
    "KernelFastPath",
    "KernelStats",
    "ListenAddress",
    "ListenError",
    "ProxyBindError",
    "ProxySet",
    "ProxyStats",
    "ServiceBinding",
    "ServiceProxy",
]
