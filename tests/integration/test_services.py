"""Issue: Services. The readiness-aware proxy and in-stack discovery, as a user sees them."""

from __future__ import annotations

import collections
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.harness import Podctl, docker, free_port, wait_for, write_stack

pytestmark = pytest.mark.docker


def write(path: Path, text: str) -> Path:
    return write_stack(path.parent, text, path.name)


def web_stack(
    tmp_path: Path, stack: str, port: int, replicas: int = 3, client: bool = False
) -> Path:
    client_pod = (
        """
          client:
            image: busybox:1.36
            command: ["sleep", "3600"]
            stop_grace: 1s
        """
        if client
        else ""
    )
    return write(
        tmp_path / "stack.yaml",
        f"""
        name: {stack}
        pods:
          web:
            image: busybox:1.36
            command:
              - sh
              - -c
              - hostname > /www/index.html && touch /www/ready.html && exec httpd -f -p 8080 -h /www
            replicas: {replicas}
            ports: {{http: 8080}}
            readiness: {{http: {{port: http, path: /ready.html}}, period: 1s, failure_threshold: 1}}
            stop_grace: 1s
        {client_pod}
        services:
          web: {{pod: web, port: {port}, target: http}}
        """,
    )


def fetch(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return str(r.read().decode().strip())


def test_requests_spread_evenly_over_ready_replicas(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    port = free_port()
    pc.start(web_stack(tmp_path, stack_name, port))
    pods = pc.wait_ready(stack_name, 3)
    wait_for("3 endpoints", lambda: len(pc.services(stack_name)[0]["endpoints"]) == 3, 10)
    counts = collections.Counter(fetch(port) for _ in range(300))
    assert set(counts) == {f"web-{p['replica']}" for p in pods}
    assert all(80 <= n <= 120 for n in counts.values()), counts
    (svc,) = pc.services(stack_name)
    assert svc["listen"] == f"127.0.0.1:{port}"
    assert len(svc["endpoints"]) == 3 and all(e["ready"] for e in svc["endpoints"])
    desc = pc.cli("describe", "service", f"{stack_name}/web", "-o", "json", check=True).stdout
    assert '"total"' in desc


def test_unready_replica_gets_no_new_connections(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    port = free_port()
    pc.start(web_stack(tmp_path, stack_name, port))
    pc.wait_ready(stack_name, 3)
    victim = "web-0"
    victim_host = pc.cli(
        "exec", f"{stack_name}/{victim}", "--", "hostname", check=True
    ).stdout.strip()
    pc.cli("exec", f"{stack_name}/{victim}", "--", "rm", "/www/ready.html", check=True)
    removed_at = time.monotonic()
    wait_for(
        "web-0 not ready", lambda: len([p for p in pc.pods(stack_name) if p["ready"]]) == 2, 5, 0.1
    )
    # One probe period (1 s) plus probe timeout, from the moment the file went away.
    assert time.monotonic() - removed_at < 3.0
    answers = collections.Counter(fetch(port) for _ in range(60))
    assert victim_host not in answers, answers
    assert len(answers) == 2
    # Readiness never restarts.
    assert all(p["restarts"] == 0 for p in pc.pods(stack_name))


def ticker_stack(tmp_path: Path, stack: str, port: int) -> Path:
    return write(
        tmp_path / "stack.yaml",
        f"""
        name: {stack}
        pods:
          tick:
            image: busybox:1.36
            command: ["nc", "-ll", "-p", "9000", "-e", "/ticker"]
            replicas: 2
            ports: {{tcp: 9000}}
            mounts: [{{config: ticker, path: /ticker, mode: "0555"}}]
            stop_grace: 1s
        configs:
          ticker: {{data: "#!/bin/sh\\nwhile true; do echo beat $(hostname); sleep 0.1; done\\n"}}
        services:
          tick: {{pod: tick, port: {port}, target: tcp}}
        """,
    )


def test_backend_killed_mid_transfer_closes_only_its_clients(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    port = free_port()
    pc.start(ticker_stack(tmp_path, stack_name, port))
    pods = pc.wait_ready(stack_name, 2)
    wait_for("2 endpoints", lambda: len(pc.services(stack_name)[0]["endpoints"]) == 2, 10)
    clients = []
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        first = s.recv(100).decode()
        clients.append((s, first.split()[1]))
    assert {host for _, host in clients} == {"tick-0", "tick-1"}
    victim_sock, victim_host = clients[0]
    survivor_sock, _ = clients[1]
    victim = next(p for p in pods if p["replica"] == int(victim_host.rsplit("-", 1)[1]))
    docker("kill", victim["container_id"])
    killed = time.monotonic()
    victim_sock.settimeout(5)
    while True:  # drain what was in flight; then EOF or reset
        try:
            data = victim_sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
    assert time.monotonic() - killed < 3.0
    survivor_sock.settimeout(2)
    got = b""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        got += survivor_sock.recv(65536)
    assert b"beat" in got
    for s, _ in clients:
        s.close()


def test_in_stack_discovery_reaches_only_ready_replicas(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    port = free_port()
    pc.start(web_stack(tmp_path, stack_name, port, client=True))
    pc.wait_ready(stack_name, 4)
    (svc,) = pc.services(stack_name)
    assert svc["in_stack"], svc
    script = f"for i in $(seq 1 30); do wget -qO- http://web:{port}/; done"
    out = pc.cli(
        "exec", f"{stack_name}/client-0", "--", "sh", "-c", script, check=True
    ).stdout.split()
    assert len(set(out)) == 3 and len(out) == 30
    pc.cli("exec", f"{stack_name}/web-1", "--", "rm", "/www/ready.html", check=True)
    wait_for(
        "web-1 not ready", lambda: len([p for p in pc.pods(stack_name) if p["ready"]]) == 3, 5, 0.1
    )
    out = pc.cli(
        "exec", f"{stack_name}/client-0", "--", "sh", "-c", script, check=True
    ).stdout.split()
    assert "web-1" not in out and len(set(out)) == 2


def test_port_conflict_is_reported_and_other_services_start(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    free = free_port()
    path = write(
        tmp_path / "stack.yaml",
        f"""
        name: {stack_name}
        pods:
          web:
            image: busybox:1.36
            command: ["sh", "-c", "hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
            ports: {{http: 8080}}
            stop_grace: 1s
        services:
          blocked: {{pod: web, port: {busy}, target: http}}
          open: {{pod: web, port: {free}, target: http}}
        """,
    )
    try:
        pc.start(path)
        pc.wait_ready(stack_name, 1)

        def reported() -> dict[str, dict[str, object]] | None:
            rows = {s["name"]: s for s in pc.services(stack_name)}
            return rows if rows["blocked"]["error"] and rows["open"]["listen"] else None

        rows = wait_for("conflict reported", reported, 10)
        assert str(busy) in str(rows["blocked"]["error"])
        assert "in use" in str(rows["blocked"]["error"])
        assert rows["blocked"]["listen"] is None
        assert fetch(free).startswith("web-0")
    finally:
        taken.close()


def test_metrics_endpoint_counts_connections(pc: Podctl, tmp_path: Path, stack_name: str) -> None:
    port, metrics = free_port(), free_port()
    pc.start(
        web_stack(tmp_path, stack_name, port, replicas=2),
        extra=("--no-watch", "--metrics", f"127.0.0.1:{metrics}"),
    )
    pc.wait_ready(stack_name, 2)
    wait_for("2 endpoints", lambda: len(pc.services(stack_name)[0]["endpoints"]) == 2, 10)
    for _ in range(10):
        fetch(port)
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as r:
        text = r.read().decode()
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("podctl_service_connections_total") and f"{stack_name}/web" in ln
    )
    assert float(line.rsplit(" ", 1)[1]) >= 10


def test_kernel_fast_path_balances_ready_replicas(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    import shutil
    import subprocess

    assert shutil.which("nft"), "nftables (nft) is needed for the kernel fast path"
    port = free_port()
    pc.start(web_stack(tmp_path, stack_name, port), extra=("--no-watch", "--kernel-proxy"))
    pc.wait_ready(stack_name, 3)
    wait_for("3 endpoints", lambda: len(pc.services(stack_name)[0]["endpoints"]) == 3, 10)
    rules = wait_for(
        "DNAT rules for the service",
        lambda: (lambda out: out if f"dport {port}" in out else None)(
            subprocess.run(
                ["nft", "list", "table", "ip", "podctl"], capture_output=True, text=True
            ).stdout
        ),
        10,
    )
    assert "dnat" in rules
    counts = collections.Counter(fetch(port) for _ in range(60))
    assert sorted(counts.values()) == [20, 20, 20], counts
    pc.cli("exec", f"{stack_name}/web-0", "--", "rm", "/www/ready.html", check=True)
    wait_for("web-0 out", lambda: len([p for p in pc.pods(stack_name) if p["ready"]]) == 2, 5, 0.1)
    time.sleep(0.3)
    assert "web-0" not in {fetch(port) for _ in range(20)}
    pc.stop()
    gone = subprocess.run(["nft", "list", "table", "ip", "podctl"], capture_output=True, text=True)
    assert gone.returncode != 0
