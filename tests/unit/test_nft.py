"""The kernel fast path's pure parts: the nft ruleset text, counters, route lookup."""

from __future__ import annotations

import json

from podctl.net.nft import (
    KernelRoute,
    eligible,
    parse_counters,
    render_delete,
    render_ruleset,
    route_interface,
)
from podctl.net.proxy import Endpoint

WEB = KernelRoute(
    "shop/web",
    (("127.0.0.1", 8080), ("172.18.0.1", 8080)),
    (Endpoint("c1", "172.18.0.2", 80), Endpoint("c2", "172.18.0.3", 80)),
)


def chain(text: str, name: str) -> list[str]:
    """The rule lines of one chain in a rendered ruleset."""
    lines = text.splitlines()
    start = lines.index(f"\tchain {name} {{")
    body = []
    for line in lines[start + 1 :]:
        if line == "\t}":
            break
        body.append(line.strip())
    return body


def test_the_table_is_replaced_as_a_whole_in_one_transaction() -> None:
    text = render_ruleset([WEB])
    assert text.startswith("add table ip podctl\ndelete table ip podctl\ntable ip podctl {\n")
    # Nothing outside podctl's own table is named.
    assert all("table" not in line or "ip podctl" in line for line in text.splitlines())


def test_round_robin_over_ready_endpoints_with_numgen_vmap() -> None:
    text = render_ruleset([WEB])
    assert chain(text, "svc0") == [
        "counter numgen inc mod 2 vmap { 0 : jump svc0_e0, 1 : jump svc0_e1 }"
        ' comment "podctl shop/web"'
    ]
    assert chain(text, "svc0_e0") == [
        'meta l4proto tcp counter dnat ip to 172.18.0.2:80 comment "podctl shop/web c1"'
    ]
    assert chain(text, "svc0_e1") == [
        'meta l4proto tcp counter dnat ip to 172.18.0.3:80 comment "podctl shop/web c2"'
    ]


def test_loopback_is_matched_from_this_host_only() -> None:
    text = render_ruleset([WEB])
    assert chain(text, "nat_output") == [
        "type nat hook output priority -101; policy accept;",
        "ip daddr 127.0.0.1 tcp dport 8080 jump svc0",
        "ip daddr 172.18.0.1 tcp dport 8080 jump svc0",
    ]
    # 127.0.0.1 never in prerouting: a neighbour must not reach a loopback-only service.
    assert chain(text, "nat_prerouting") == [
        "type nat hook prerouting priority -101; policy accept;",
        "ip daddr 172.18.0.1 tcp dport 8080 jump svc0",
    ]


def test_any_address_uses_fib_and_excludes_loopback_from_outside() -> None:
    route = KernelRoute("s/any", (("0.0.0.0", 9000),), (Endpoint("a", "10.0.0.2", 90),))
    text = render_ruleset([route])
    assert "fib daddr type local tcp dport 9000 jump svc0" in chain(text, "nat_output")
    assert "fib daddr type local tcp dport 9000 ip daddr != 127.0.0.0/8 jump svc0" in chain(
        text, "nat_prerouting"
    )


def test_dnatted_connections_leaving_the_host_are_masqueraded() -> None:
    post = chain(render_ruleset([WEB]), "nat_postrouting")
    assert post[1:] == [
        'meta l4proto tcp ct status dnat oifname != "lo" ct original ip daddr 127.0.0.1'
        " ct original proto-dst 8080 masquerade",
        'meta l4proto tcp ct status dnat oifname != "lo" ct original ip daddr 172.18.0.1'
        " ct original proto-dst 8080 masquerade",
    ]


def test_route_localnet_interfaces_get_the_martian_guard() -> None:
    text = render_ruleset([WEB], ["br-1", "br-0"])
    assert chain(text, "filter_input")[1:] == [
        'iifname { "br-0", "br-1" } ip daddr 127.0.0.0/8 ct status ! dnat drop'
    ]
    assert "filter_input" not in render_ruleset([WEB])


def test_services_the_kernel_cannot_serve_are_left_to_the_proxy() -> None:
    none_ready = KernelRoute("s/a", (("127.0.0.1", 1),), ())
    v6 = KernelRoute("s/b", (("::1", 2),), (Endpoint("x", "fd00::2", 80),))
    named = KernelRoute("s/c", (("localhost", 3),), (Endpoint("x", "10.0.0.2", 80),))
    assert not any(eligible(r) for r in (none_ready, v6, named))
    assert eligible(WEB)
    assert render_ruleset([none_ready, v6, named]) == render_delete()
    text = render_ruleset([none_ready, WEB])
    assert "s/a" not in text and "shop/web" in text


def test_several_services_get_their_own_chains_in_name_order() -> None:
    a = KernelRoute("z/last", (("127.0.0.1", 2),), (Endpoint("k", "10.0.0.9", 1),))
    text = render_ruleset([a, WEB])
    assert 'comment "podctl shop/web"' in chain(text, "svc0")[0]
    assert 'comment "podctl z/last"' in chain(text, "svc1")[0]
    assert chain(text, "svc1")[0].startswith("counter numgen inc mod 1 vmap { 0 : jump svc1_e0 }")


def test_comments_cannot_break_out_of_their_quotes() -> None:
    evil = KernelRoute('s/"x"; flush ruleset', (("127.0.0.1", 5),), (Endpoint("k", "10.0.0.2", 1),))
    text = render_ruleset([evil])
    assert '"podctl s/_x__ flush ruleset"' in text


def _rule(comment: str, packets: int) -> dict[str, object]:
    return {
        "rule": {
            "family": "ip",
            "table": "podctl",
            "comment": comment,
            "expr": [{"counter": {"packets": packets, "bytes": packets * 60}}],
        }
    }


def test_counters_are_read_per_service_and_endpoint() -> None:
    listing = json.dumps(
        {
            "nftables": [
                {"metainfo": {"version": "1.0.6"}},
                _rule("podctl shop/web", 10),
                _rule("podctl shop/web c1", 6),
                _rule("podctl shop/web c2", 4),
                _rule("someone else", 99),
            ]
        }
    )
    stats = parse_counters(listing)
    assert stats["shop/web"].connections == 10
    assert stats["shop/web"].per_endpoint == (("c1", 6), ("c2", 4))
    assert parse_counters("not json") == {}


ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
br-abc\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
"""


def test_route_interface_is_the_longest_prefix() -> None:
    assert route_interface(ROUTES, "172.18.0.2") == "br-abc"
    assert route_interface(ROUTES, "10.0.0.7") == "eth0"
    assert route_interface(ROUTES, "8.8.8.8") == "eth0"  # the default route
    assert route_interface(ROUTES, "127.0.0.1") == "lo"
    assert route_interface(ROUTES, "fd00::1") is None
