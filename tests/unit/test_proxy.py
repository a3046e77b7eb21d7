"""Pure parts of the proxy: routing order, counters, error messages, metrics text."""

from __future__ import annotations

import errno
import resource

import pytest

from podctl import defaults
from podctl.net.limits import AcceptBackoff, connection_cap
from podctl.net.metrics import render
from podctl.net.proxy import Endpoint, ProxyStats, ServiceProxy, _bind_error_message


def eps(*keys: str) -> list[Endpoint]:
    return [Endpoint(k, "127.0.0.1", 1000 + i) for i, k in enumerate(keys)]


def picks(p: ServiceProxy, n: int) -> list[str]:
    out = []
    for _ in range(n):
        ep = p._next_endpoint(set())
        assert ep is not None
        out.append(ep.key)
    return out


def test_round_robin_visits_each_endpoint_in_turn() -> None:
    p = ServiceProxy("s", "127.0.0.1", 0)
    p.set_endpoints(eps("a", "b", "c"))
    assert picks(p, 7) == ["a", "b", "c", "a", "b", "c", "a"]


def test_a_swapped_table_is_used_at_once_and_stays_fair() -> None:
    p = ServiceProxy("s", "127.0.0.1", 0)
    p.set_endpoints(eps("a", "b", "c"))
    picks(p, 2)
    p.set_endpoints(eps("a", "c"))
    got = picks(p, 100)
    assert set(got) == {"a", "c"}
    assert got.count("a") == got.count("c") == 50


def test_retry_order_skips_tried_endpoints_and_is_bounded() -> None:
    p = ServiceProxy("s", "127.0.0.1", 0)
    p.set_endpoints(eps("a", "b", "c"))
    tried: set[str] = set()
    order = []
    while (ep := p._next_endpoint(tried)) is not None:
        tried.add(ep.key)
        order.append(ep.key)
    assert order == ["a", "b", "c"]
    p.set_endpoints([])
    assert p._next_endpoint(set()) is None


def test_stats_add_sums_counters_and_endpoints() -> None:
    a = ProxyStats(active=1, total=5, bytes_in=10, endpoint_active=(("x", 1),))
    b = ProxyStats(active=2, total=1, bytes_out=3, endpoint_active=(("x", 1), ("y", 1)))
    s = a + b
    assert (s.active, s.total, s.bytes_in, s.bytes_out) == (3, 6, 10, 3)
    assert s.endpoint_active == (("x", 2), ("y", 1))


def test_bind_errors_say_what_to_do() -> None:
    in_use = OSError(errno.EADDRINUSE, "Address already in use")
    assert _bind_error_message("127.0.0.1", 8080, in_use) == (
        "port 8080 on 127.0.0.1 is in use by another process"
    )
    denied = OSError(errno.EACCES, "Permission denied")
    assert "CAP_NET_BIND_SERVICE" in _bind_error_message("0.0.0.0", 80, denied)


def test_metrics_render_prometheus_text() -> None:
    text = render(
        {
            'shop/we"b': ProxyStats(active=2, total=9, bytes_in=100, endpoint_active=(("r1", 2),)),
        }
    )
    lines = text.splitlines()
    assert "# TYPE podctl_service_connections_total counter" in lines
    assert 'podctl_service_connections_total{service="shop/we\\"b"} 9' in lines
    assert 'podctl_service_received_bytes_total{service="shop/we\\"b"} 100' in lines
    assert 'podctl_endpoint_connections_active{service="shop/we\\"b",endpoint="r1"} 2' in lines
    assert text.endswith("\n")


def test_the_connection_cap_follows_the_descriptor_limit() -> None:
    # 2 descriptors per connection, a reserve of 64 + 10 % of the limit.
    assert connection_cap(1024) == (1024 - 64 - 102) // 2 == 429
    assert connection_cap(20000) == (20000 - 64 - 2000) // 2
    assert connection_cap(1_000_000) == defaults.PROXY_MAX_CONNECTIONS  # the ceiling
    assert connection_cap(1_000_000, ceiling=50) == 50
    assert connection_cap(64) == 1  # never zero: the listener still serves someone
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert connection_cap() == connection_cap(None if soft == resource.RLIM_INFINITY else soft)


def test_a_listener_cap_is_bounded_by_the_descriptor_limit() -> None:
    p = ServiceProxy("s", "127.0.0.1", 0, max_connections=10**9)
    assert p.max_connections == connection_cap()
    assert ServiceProxy("s", "127.0.0.1", 0, max_connections=3).max_connections == 3


def test_accept_backoff_doubles_from_5ms_to_1s_and_resets() -> None:
    b = AcceptBackoff()
    delays = [b.failed() for _ in range(10)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[-1] == 1.0 and max(delays) == 1.0
    assert b.succeeded() is True and b.succeeded() is False
    assert b.failed() == 0.005
    assert b.episodes == 2


def test_peers_must_be_a_network() -> None:
    p = ServiceProxy("s", "172.20.0.1", 0, peers="172.20.0.0/16")
    assert str(p.peers) == "172.20.0.0/16"
    with pytest.raises(ValueError):
        ServiceProxy("s", "172.20.0.1", 0, peers="not-a-network")
