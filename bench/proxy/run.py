"""Proxy benchmark: direct vs podctl vs docker-proxy vs HAProxy vs socat, on loopback.

One command (`python -m bench.proxy`), all paths in one run, interleaved rounds,
medians. Backends: iperf3 -s for bulk; a small C epoll echo server (bench/proxy/
echo.c, compiled here) for request/response and connection rate. Each proxy and
the load client run in their own processes; proxy CPU comes from
/proc/PID/stat (utime+stime, children included) over each test, RSS is the peak
(VmHWM) of the proxy's processes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = ROOT / "bench" / "results" / "proxy.md"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    # Read the kernel's table rather than connect: a probe connection would count
    # as a test for iperf3's server.
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def find_docker_proxy() -> str | None:
    for p in (
        "/usr/bin/docker-proxy",
        "/usr/sbin/docker-proxy",
        "/usr/libexec/docker/docker-proxy",
    ):
        if os.access(p, os.X_OK):
            return p
    return shutil.which("docker-proxy")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    # utime stime cutime cstime are fields 14-17 (1-based); after ")" index 11..14.
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


@dataclass
class Path_:
    name: str
    bulk_port: int
    rr_port: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    results: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def rss(self) -> float:
        return sum(peak_rss_mib(p.pid) for p in self.procs)


def spawn(argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)  # type: ignore[call-overload,no-any-return]


def start_paths(
    tmp: Path, iperf_port: int, echo_port: int, only: set[str] | None, paths: list[Path_]
) -> None:
    """Start every proxy; `paths` is filled as they start, so the caller can stop them."""
    paths.append(Path_("direct", iperf_port, echo_port))

    def want(name: str) -> bool:
        return only is None or name in only

    if want("podctl"):
        b, r = free_port(), free_port()
        pr = spawn(
            [PY, "-m", "bench.proxy.serve", f"{b}:{iperf_port}", f"{r}:{echo_port}"], cwd=ROOT
        )
        paths.append(Path_("podctl proxy", b, r, [pr]))
    if want("nft") and os.geteuid() == 0 and shutil.which("nft"):
        # The kernel fast path: the same ProxySet with nftables DNAT (root only).
        b, r = free_port(), free_port()
        pr = spawn(
            [PY, "-m", "bench.proxy.serve", "--kernel", f"{b}:{iperf_port}", f"{r}:{echo_port}"],
            cwd=ROOT,
        )
        paths.append(Path_("podctl fast path (nft)", b, r, [pr]))
    dp = find_docker_proxy()
    if dp and want("docker-proxy"):
        b, r = free_port(), free_port()
        # docker-proxy (20.10) reports readiness on fd 3 and then closes it: without
        # an fd 3 of ours it would close its own listening socket.
        procs = [
            spawn(
                [
                    "sh",
                    "-c",
                    f"exec {dp} -proto tcp -host-ip 127.0.0.1 -host-port {hp} "
                    f"-container-ip 127.0.0.1 -container-port {cp} 3>/dev/null",
                ]
            )
            for hp, cp in ((b, iperf_port), (r, echo_port))
        ]
        paths.append(Path_("docker-proxy", b, r, procs))
    if shutil.which("haproxy") and want("haproxy"):
        b, r = free_port(), free_port()
        cfg = tmp / "haproxy.cfg"
        cfg.write_text(
            "global\n  maxconn 8000\n\ndefaults\n  mode tcp\n  timeout connect 5s\n"
            "  timeout client 60s\n  timeout server 60s\n\n"
            f"listen bulk\n  bind 127.0.0.1:{b}\n  server s1 127.0.0.1:{iperf_port}\n\n"
            f"listen rr\n  bind 127.0.0.1:{r}\n  server s1 127.0.0.1:{echo_port}\n"
        )
        paths.append(Path_("haproxy (tcp)", b, r, [spawn(["haproxy", "-db", "-f", str(cfg)])]))
    if shutil.which("socat") and want("socat"):
        b, r = free_port(), free_port()
        procs = [
            spawn(
                [
                    "socat",
                    f"TCP-LISTEN:{b},bind=127.0.0.1,fork,reuseaddr,backlog=4096",
                    f"TCP:127.0.0.1:{iperf_port}",
                ]
            ),
            spawn(
                [
                    "socat",
                    f"TCP-LISTEN:{r},bind=127.0.0.1,fork,reuseaddr,backlog=4096",
                    f"TCP:127.0.0.1:{echo_port}",
                ]
            ),
        ]
        paths.append(Path_("socat", b, r, procs))
    for p in paths:
        try:
            wait_port(p.bulk_port)
            wait_port(p.rr_port)
        except RuntimeError as e:
            raise RuntimeError(f"{p.name}: {e}") from None


def bulk(port: int, seconds: float) -> dict[str, float]:
    out = subprocess.run(
        ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"],
        capture_output=True,
        timeout=seconds + 20,
        check=False,
    )
    data = json.loads(out.stdout or b"{}")
    bps = data.get("end", {}).get("sum_received", {}).get("bits_per_second", 0.0)
    return {"rate": float(bps) / 1e9}


def client(kind: str, port: int, seconds: float, conns: int) -> dict[str, float]:
    out = subprocess.run(
        [PY, "-m", "bench.proxy.client", kind, str(port), str(seconds), str(conns)],
        capture_output=True,
        timeout=seconds + 60,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def measure(path: Path_, metric: str, args: argparse.Namespace) -> dict[str, float]:
    c0, t0 = path.cpu(), time.monotonic()
    if metric == "bulk":
        res = bulk(path.bulk_port, args.seconds)
    elif metric == "rr":
        res = client("rr", path.rr_port, args.seconds, args.conns)
    else:
        res = client("conn", path.rr_port, args.seconds, args.conns)
    res["cpu_pct"] = 100 * (path.cpu() - c0) / (time.monotonic() - t0) if path.procs else 0.0
    return res


@contextlib.contextmanager
def backends(tmp: Path) -> Iterator[tuple[int, int]]:
    iperf_port, echo_port = free_port(), free_port()
    exe = tmp / "echo"
    subprocess.run(["cc", "-O2", "-o", str(exe), str(HERE / "echo.c")], check=True)
    procs = [
        spawn(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(iperf_port)]),
        spawn([str(exe), str(echo_port)]),
    ]
    try:
        wait_port(iperf_port)
        wait_port(echo_port)
        yield iperf_port, echo_port
    finally:
        for p in procs:
            p.terminate()
            p.wait(5)


def med(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows) if rows else 0.0


def table(
    paths: list[Path_], rounds: int, args: argparse.Namespace, load: tuple[float, float]
) -> str:
    direct = paths[0].results
    out = [
        f"Loopback, {os.cpu_count()} CPUs, load average {load[0]:.1f} before / "
        f"{load[1]:.1f} after, {rounds} interleaved rounds, medians. "
        f"bulk: iperf3 {args.seconds:g} s; rr: 1 KiB echo over {args.conns} connections, "
        f"{args.seconds:g} s; conn: connect + 64 B echo + close, {args.conns} at a time, "
        f"{args.seconds:g} s. Ratios are to direct. CPU is the proxy's (% of one core) "
        "during each test; RSS its peak.",
        "",
        "| path | bulk Gbit/s | x direct | rr req/s | x direct | rr p50 µs | rr p99 µs "
        "| conn/s | x direct | CPU % bulk/rr/conn | RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for p in paths:
        r = p.results
        b, q, c = med(r["bulk"], "rate"), med(r["rr"], "rate"), med(r["conn"], "rate")
        b0, q0, c0 = (
            med(direct["bulk"], "rate"),
            med(direct["rr"], "rate"),
            med(direct["conn"], "rate"),
        )
        cpu = (
            "/".join(f"{med(r[m], 'cpu_pct'):.0f}" for m in ("bulk", "rr", "conn"))
            if p.procs
            else "-"
        )
        out.append(
            f"| {p.name} | {b:.1f} | {b / b0:.2f} | {q:,.0f} | {q / q0:.2f} "
            f"| {med(r['rr'], 'p50_us'):.0f} | {med(r['rr'], 'p99_us'):.0f} "
            f"| {c:,.0f} | {c / c0:.2f} | {cpu} | {p.rss():.1f} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--only", help="comma-separated: podctl,nft,docker-proxy,haproxy,socat")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write results")
    args = ap.parse_args()
    for tool in ("iperf3", "cc"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is needed (apt-get install iperf3 gcc)")
    only = set(args.only.split(",")) if args.only else None
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d, backends(Path(d)) as (iperf_port, echo_port):
        paths: list[Path_] = []
        try:
            start_paths(Path(d), iperf_port, echo_port, only, paths)
            for rnd in range(args.rounds):
                for metric in ("bulk", "rr", "conn"):
                    for p in paths:  # interleaved: each round visits every path
                        res = measure(p, metric, args)
                        p.results.setdefault(metric, []).append(res)
                        print(
                            f"round {rnd + 1} {metric:4} {p.name:14} {json.dumps(res)}",
                            file=sys.stderr,
                        )
                        time.sleep(0.2)
            text = table(paths, args.rounds, args, (load0, os.getloadavg()[0]))
        finally:
            for p in paths:
                for pr in p.procs:
                    pr.terminate()
                for pr in p.procs:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        pr.wait(5)
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text("# Proxy benchmark\n\n" + text)


if __name__ == "__main__":
    main()
