"""The kernel fast path: nftables DNAT for service ports (issue 4, item 5).

Where podctl runs as root on Linux with the `nft` binary, a service's listen
addresses can be served by the kernel instead of the userspace proxy: a DNAT
rule sends each new connection to one of the ready endpoints, round-robin with
`numgen inc mod N vmap`, and conntrack carries the rest of the connection with
no process in the path (kube-proxy's iptables mode, ~0.96x direct, against
~0.36x for its userspace mode).

Everything lives in one table, `ip podctl`, which podctl creates, replaces and
deletes as a whole; no other table is read or written. Each update is one
`nft -f -` transaction (`add table; delete table; table {...}`), so a reader
never sees half a table and conntrack keeps connections that are already open.

The ruleset (see `render_ruleset`):

- `nat_output` (hook output) and `nat_prerouting` (hook prerouting), at
  priority -101, just before Docker's own nat chains (-100), jump to one chain
  per service for each listen address. Loopback addresses are matched in
  output only: a packet that arrives from outside for 127.0.0.1 must never be
  forwarded to a service (CVE-2020-8558, the kube-proxy route_localnet bug).
- the service chain counts the connection and picks an endpoint chain with
  `numgen inc mod N vmap`, one counter + `dnat` per endpoint (so connection
  counts per endpoint come from the kernel).
- `nat_postrouting` masquerades connections podctl DNAT'd that leave through
  another interface than lo: the reply must come back through the host to be
  un-NATed (host -> container from 127.0.0.1, and container -> gateway ->
  container hairpin).
- 127.0.0.1 as a source on a bridge needs `route_localnet=1` on that interface
  (the same thing Docker does with `userland-proxy: false`). `KernelFastPath`
  turns it on for the interfaces the endpoints are routed through, restores it
  on close, and `filter_input` drops packets to 127.0.0.0/8 from those
  interfaces unless they belong to a DNAT'd connection.

The listener of the userspace proxy stays open under the DNAT rules: it holds
the port (a conflict is still reported), and it takes over at once when a
service has no ready endpoint (its rule is removed, the proxy refuses at once),
when nft is unavailable, or when nft rejects the ruleset.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from podctl.net.proxy import Endpoint

log = logging.getLogger(__name__)

TABLE = "podctl"
FAMILY = "ip"
# Docker's nat chains (iptables-nft) sit at -100; ours go first so that a port
# podctl serves is not also caught by a stale Docker publish rule.
_NAT_PRIORITY = -101
_SRCNAT_PRIORITY = 99
_FILTER_PRIORITY = -1
_NFT_TIMEOUT_S = 10.0
_COMMENT_PREFIX = "podctl "

Runner = Callable[[list[str], bytes], Awaitable[tuple[int, bytes, bytes]]]


@dataclass(frozen=True, slots=True)
class KernelRoute:
    """One service as the kernel serves it: where it listens and where it goes."""

    service: str
    listen: tuple[tuple[str, int], ...]  # (host, port); host "0.0.0.0" means every local address
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True, slots=True)
class KernelStats:
    """Kernel counters: connections DNAT'd (no bytes: nat chains see first packets only)."""

    connections: int = 0
    per_endpoint: tuple[tuple[str, int], ...] = ()


class NftError(RuntimeError):
    """`nft` failed; the message carries its stderr."""


# -- pure: what goes into the kernel ----------------------------------------------------------


def _ipv4(host: str) -> ipaddress.IPv4Address | None:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    return addr if isinstance(addr, ipaddress.IPv4Address) else None


def _loopback(host: str) -> bool:
    addr = _ipv4(host)
    return addr is not None and addr.is_loopback


def eligible(route: KernelRoute) -> bool:
    """Whether the kernel can serve `route`: IPv4 listen addresses and endpoints, some ready."""
    if not route.endpoints or not route.listen:
        return False
    if any(_ipv4(h) is None or not 0 < p < 65536 for h, p in route.listen):
        return False
    return all(_ipv4(ep.host) is not None and 0 < ep.port < 65536 for ep in route.endpoints)


def _quote(text: str) -> str:
    # nft comments are double-quoted strings without escapes: keep them plain.
    safe = "".join(c if c.isalnum() or c in "-_./:= " else "_" for c in text)
    return f'"{safe[:120]}"'


def render_ruleset(routes: Sequence[KernelRoute], localnet_ifaces: Sequence[str] = ()) -> str:
    """The `nft -f` script that makes table `ip podctl` serve exactly `routes`.

    Routes that are not `eligible` are left out (the userspace proxy serves
    them). `localnet_ifaces` are the interfaces where route_localnet is on.
    """
    routes = sorted((r for r in routes if eligible(r)), key=lambda r: r.service)
    out = [f"add table {FAMILY} {TABLE}", f"delete table {FAMILY} {TABLE}"]
    if not routes:
        return "\n".join(out) + "\n"
    output: list[str] = []
    prerouting: list[str] = []
    postrouting: list[str] = []
    chains: list[str] = []
    for i, route in enumerate(routes):
        svc_chain = f"svc{i}"
        tag = _quote(f"{_COMMENT_PREFIX}{route.service}")
        for host, port in route.listen:
            addr = _ipv4(host)
            assert addr is not None
            if addr.is_unspecified:
                match = f"fib daddr type local tcp dport {port}"
                orig = ""
            else:
                match = f"ip daddr {host} tcp dport {port}"
                orig = f" ct original ip daddr {host}"
            output.append(f"{match} jump {svc_chain}")
            if not addr.is_loopback:
                # From containers (in-stack) and, for 0.0.0.0 or a host address, other hosts.
                # `fib daddr type local` also matches 127/8, but only in output does a packet
                # to 127/8 come from this host.
                local = " ip daddr != 127.0.0.0/8" if addr.is_unspecified else ""
                prerouting.append(f"{match}{local} jump {svc_chain}")
            postrouting.append(
                f'meta l4proto tcp ct status dnat oifname != "lo"{orig}'
                f" ct original proto-dst {port} masquerade"
            )
        eps = route.endpoints
        vmap = ", ".join(f"{j} : jump {svc_chain}_e{j}" for j in range(len(eps)))
        chains.append(
            f"\tchain {svc_chain} {{\n"
            f"\t\tcounter numgen inc mod {len(eps)} vmap {{ {vmap} }} comment {tag}\n"
            "\t}"
        )
        for j, ep in enumerate(eps):
            etag = _quote(f"{_COMMENT_PREFIX}{route.service} {ep.key}")
            chains.append(
                f"\tchain {svc_chain}_e{j} {{\n"
                f"\t\tmeta l4proto tcp counter dnat ip to {ep.host}:{ep.port} comment {etag}\n"
                "\t}"
            )

    def base(name: str, kind: str, hook: str, prio: int, rules: list[str]) -> str:
        body = "".join(f"\t\t{r}\n" for r in dict.fromkeys(rules))
        return (
            f"\tchain {name} {{\n\t\ttype {kind} hook {hook} priority {prio}; policy accept;\n"
            f"{body}\t}}"
        )

    parts = [
        base("nat_output", "nat", "output", _NAT_PRIORITY, output),
        base("nat_prerouting", "nat", "prerouting", _NAT_PRIORITY, prerouting),
        base("nat_postrouting", "nat", "postrouting", _SRCNAT_PRIORITY, postrouting),
    ]
    if localnet_ifaces:
        names = ", ".join(_quote(n) for n in sorted(set(localnet_ifaces)))
        parts.append(
            base(
                "filter_input",
                "filter",
                "input",
                _FILTER_PRIORITY,
                [f"iifname {{ {names} }} ip daddr 127.0.0.0/8 ct status ! dnat drop"],
            )
        )
    parts.extend(chains)
    out.append(f"table {FAMILY} {TABLE} {{\n" + "\n".join(parts) + "\n}")
    return "\n".join(out) + "\n"


def render_delete() -> str:
    """Remove podctl's table if it exists (and nothing else)."""
    return f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"


def parse_counters(listing: str) -> dict[str, KernelStats]:
    """Connections per service (and endpoint) from `nft -j list table ip podctl`."""
    try:
        data = json.loads(listing)
    except ValueError:
        return {}
    totals: dict[str, int] = {}
    per: dict[str, dict[str, int]] = {}
    for item in data.get("nftables", []):
        rule = item.get("rule") if isinstance(item, dict) else None
        if not isinstance(rule, dict):
            continue
        comment = rule.get("comment")
        if not isinstance(comment, str) or not comment.startswith(_COMMENT_PREFIX):
            continue
        packets = 0
        for expr in rule.get("expr", []):
            if isinstance(expr, dict) and isinstance(expr.get("counter"), dict):
                packets = int(expr["counter"].get("packets", 0))
        rest = comment[len(_COMMENT_PREFIX) :]
        service, _, key = rest.partition(" ")
        if key:
            per.setdefault(service, {})[key] = packets
        else:
            totals[service] = totals.get(service, 0) + packets
    return {s: KernelStats(n, tuple(sorted(per.get(s, {}).items()))) for s, n in totals.items()}


def route_interface(route_table: str, host: str) -> str | None:
    """The interface `host` is routed through, by longest prefix in /proc/net/route text."""
    addr = _ipv4(host)
    if addr is None:
        return None
    if addr.is_loopback:
        return "lo"
    best: tuple[int, str] | None = None
    value = int(addr)
    for line in route_table.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 8:
            continue
        try:
            # Little-endian hex, as the kernel prints them.
            dest = int.from_bytes(bytes.fromhex(cols[1]), "little")
            mask = int.from_bytes(bytes.fromhex(cols[7]), "little")
        except ValueError:
            continue
        if value & mask == dest & mask:
            plen = bin(mask).count("1")
            if best is None or plen > best[0]:
                best = (plen, cols[0])
    return best[1] if best else None


# -- the side effects ----------------------------------------------------------------------


async def _run_nft(argv: list[str], stdin: bytes) -> tuple[int, bytes, bytes]:
    with anyio.fail_after(_NFT_TIMEOUT_S):
        proc = await anyio.run_process(argv, input=stdin, check=False)
    return proc.returncode, proc.stdout, proc.stderr


@dataclass(slots=True)
class _Localnet:
    original: dict[str, str] = field(default_factory=dict)  # iface -> value before podctl


class KernelFastPath:
    """Keeps table `ip podctl` matching the wanted routes. One event loop; not thread-safe.

    `set_endpoints`/`remove` only record what is wanted (they are cheap and
    synchronous, like the proxy's table swap); `sync()` programs the kernel.
    A service whose rules nft rejects is left to the userspace proxy.
    """

    def __init__(
        self,
        *,
        nft: str = "nft",
        runner: Runner = _run_nft,
        proc_root: Path = Path("/proc"),
        supported: Callable[[], bool] | None = None,
    ) -> None:
        """`runner`, `proc_root` and `supported` are seams for tests."""
        self._nft = nft
        self._supported = supported or self.supported
        self._runner = runner
        self._proc = proc_root
        self._wanted: dict[str, KernelRoute] = {}
        self._active: set[str] = set()  # services the kernel serves right now
        self._failed: set[str] = set()  # services nft refused: the proxy serves them
        self._available: bool | None = None  # None: not probed yet
        self._lock = anyio.Lock()
        self._generation = 0  # bumped by every change of what is wanted
        self._synced = 0  # the generation the kernel holds
        self._dirty = anyio.Event()
        self._counters_base: dict[str, KernelStats] = {}
        self._counters: dict[str, KernelStats] = {}
        self._localnet = _Localnet()
        self._installed = False

    # -- what is wanted (synchronous) -------------------------------------------------------

    @staticmethod
    def supported() -> bool:
        """Linux, root, and an `nft` binary on PATH (the cheap check; `sync` probes for real)."""
        return sys.platform == "linux" and os.geteuid() == 0 and shutil.which("nft") is not None

    def set_endpoints(
        self, service: str, listen: Sequence[tuple[str, int]], endpoints: Sequence[Endpoint]
    ) -> None:
        route = KernelRoute(service, tuple(listen), tuple(endpoints))
        if self._wanted.get(service) != route:
            self._wanted[service] = route
            self._failed.discard(service)  # a new table gets a new chance
            self._changed()

    def remove(self, service: str) -> None:
        if self._wanted.pop(service, None) is not None:
            self._failed.discard(service)
            self._changed()

    def _changed(self) -> None:
        self._generation += 1
        self._dirty.set()

    def services(self) -> set[str]:
        """The services the kernel is asked to serve (whether or not it does)."""
        return set(self._wanted)

    def serves(self, service: str) -> bool:
        """True when the kernel (not the proxy) takes the service's new connections."""
        return service in self._active

    @property
    def available(self) -> bool | None:
        return self._available

    def stats(self) -> dict[str, KernelStats]:
        """Connections per service since podctl started (as of the last `sync`/`refresh`)."""
        out: dict[str, KernelStats] = {}
        for name in set(self._counters_base) | set(self._counters):
            base = self._counters_base.get(name, KernelStats())
            cur = self._counters.get(name, KernelStats())
            per = dict(base.per_endpoint)
            for k, n in cur.per_endpoint:
                per[k] = per.get(k, 0) + n
            out[name] = KernelStats(base.connections + cur.connections, tuple(sorted(per.items())))
        return out

    # -- the kernel (async) ---------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Apply changes as they come; remove the table when cancelled."""
        task_status.started()
        try:
            while True:
                await self._dirty.wait()
                # Replaced here only: a `sync()` from elsewhere must not swap the
                # event this loop is waiting on (it would never be set).
                self._dirty = anyio.Event()
                await self.sync()
        finally:
            with anyio.CancelScope(shield=True):
                await self.close()

    async def sync(self) -> None:
        """Make the kernel hold what is wanted now."""
        async with self._lock:
            generation = self._generation
            if self._available is not None and self._synced >= generation:
                return  # already there (e.g. `run()` got to it first)
            if self._available is None:
                self._available = await self._probe()
            if self._available:
                await self._apply_wanted()
            self._synced = max(self._synced, generation)

    async def wait_synced(self, timeout_s: float) -> bool:
        """Wait until the kernel holds the table as it was wanted at the time of the call."""
        target = self._generation
        with anyio.move_on_after(timeout_s):
            while self._synced < target:
                await self.sync()  # serialised with `run()` by the lock; a no-op if it got there
            return True
        return False

    async def refresh(self) -> None:
        """Read the kernel's counters (for `stats`)."""
        if not self._installed:
            return
        code, out, _ = await self._call(["-j", "list", "table", FAMILY, TABLE], b"")
        if code == 0:
            self._counters = parse_counters(out.decode(errors="replace"))

    async def close(self) -> None:
        """Delete podctl's table and restore route_localnet."""
        async with self._lock:
            self._wanted.clear()
            self._active.clear()
            if self._available and self._installed:
                code, _, err = await self._call(["-f", "-"], render_delete().encode())
                if code != 0:
                    log.warning("could not delete nft table %s: %s", TABLE, err.decode().strip())
                self._installed = False
            await self._restore_localnet()

    async def _probe(self) -> bool:
        if not self._supported():
            log.info("kernel fast path unavailable (needs Linux, root and nft): using the proxy")
            return False
        # Start clean: a table left by a podctl that was killed is replaced as a whole.
        code, _, err = await self._call(["-f", "-"], render_delete().encode())
        if code != 0:
            log.warning("kernel fast path unavailable: nft: %s", err.decode().strip())
            return False
        return True

    async def _apply_wanted(self) -> None:
        routes = [r for r in self._wanted.values() if eligible(r)]
        ifaces = await self._localnet_for(routes)
        await self.refresh()  # counters survive the table's replacement
        for name, st in self._counters.items():
            base = self._counters_base.get(name, KernelStats())
            per = dict(base.per_endpoint)
            for k, n in st.per_endpoint:
                per[k] = per.get(k, 0) + n
            self._counters_base[name] = KernelStats(
                base.connections + st.connections, tuple(sorted(per.items()))
            )
        self._counters = {}
        ok = [r for r in routes if r.service not in self._failed]
        if await self._install(ok, ifaces):
            self._active = {r.service for r in ok}
            return
        # Something was refused: find which services nft rejects, leave those to the proxy.
        good: list[KernelRoute] = []
        for r in ok:
            code, _, err = await self._call(["-c", "-f", "-"], render_ruleset([r]).encode())
            if code == 0:
                good.append(r)
            else:
                self._failed.add(r.service)
                log.warning(
                    "%s: kernel fast path refused (%s): the proxy serves it",
                    r.service,
                    err.decode().strip(),
                )
        if await self._install(good, ifaces):
            self._active = {r.service for r in good}
        else:
            self._active = set()
            await self._install([], ())

    async def _install(self, routes: list[KernelRoute], ifaces: Sequence[str]) -> bool:
        code, _, err = await self._call(["-f", "-"], render_ruleset(routes, ifaces).encode())
        if code != 0:
            log.warning("nft: %s", err.decode().strip())
            return False
        self._installed = bool(routes)
        return True

    async def _call(self, args: list[str], stdin: bytes) -> tuple[int, bytes, bytes]:
        try:
            return await self._runner([self._nft, *args], stdin)
        except (OSError, TimeoutError) as e:
            return 1, b"", str(e).encode()

    # -- route_localnet -------------------------------------------------------------------

    async def _localnet_for(self, routes: list[KernelRoute]) -> list[str]:
        """Interfaces needing route_localnet: where loopback-listening services' endpoints are."""
        hosts = {
            ep.host for r in routes if any(_loopback(h) for h, _ in r.listen) for ep in r.endpoints
        }
        if not hosts:
            return sorted(self._localnet.original)
        table = await anyio.Path(self._proc / "net" / "route").read_text()
        ifaces = {i for h in hosts if (i := route_interface(table, h)) not in (None, "lo")}
        for iface in sorted(ifaces - set(self._localnet.original)):
            knob = anyio.Path(self._proc / "sys/net/ipv4/conf" / iface / "route_localnet")
            try:
                before = (await knob.read_text()).strip()
                if before != "1":
                    await knob.write_text("1\n")
                self._localnet.original[iface] = before
            except OSError as e:
                log.warning("cannot enable route_localnet on %s: %s", iface, e)
        return sorted(self._localnet.original)

    async def _restore_localnet(self) -> None:
        for iface, before in list(self._localnet.original.items()):
            if before == "1":
                continue
            knob = anyio.Path(self._proc / "sys/net/ipv4/conf" / iface / "route_localnet")
            try:
                await knob.write_text(f"{before}\n")
            except OSError:
                pass  # the interface is gone (its network was removed)
        self._localnet.original.clear()
