"""Readiness reaches the proxy straight from the probes, whatever the engine does.

A hung engine must not keep an unready replica in a service: the probes (http
and tcp go from the host to the container) and the proxy need no engine call,
so a replica failing readiness leaves the routing table within one probe
period even while dockerd is frozen.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Podctl, free_port, wait_for, write_stack

pytestmark = pytest.mark.docker


def fetch(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return str(r.read().decode().strip())


def dockerd_pid() -> int | None:
    proc = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True, check=False)
    pids = proc.stdout.split()
    return int(pids[0]) if len(pids) == 1 else None


@contextlib.contextmanager
def frozen_engine(pid: int) -> Iterator[None]:
    """SIGSTOP dockerd for the block; SIGCONT whatever happens."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_unready_replica_leaves_the_service_while_the_engine_is_frozen(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    pid = dockerd_pid()
    if os.geteuid() != 0 or pid is None:
        pytest.skip("needs root and one local dockerd to freeze (SIGSTOP) the engine")
    # Each replica serves its own directory of a bind mount, so the host can make
    # one replica unready without asking the (frozen) engine for an exec.
    www = tmp_path / "www"
    for i in range(3):
        (www / f"web-{i}").mkdir(parents=True)
        (www / f"web-{i}" / "index.html").write_text(f"web-{i}\n")
        (www / f"web-{i}" / "ready.html").write_text("ok\n")
    port = free_port()
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          web:
            image: busybox:1.36
            command: ["sh", "-c", "exec httpd -f -p 8080 -h /www/$(hostname)"]
            replicas: 3
            ports: {{http: 8080}}
            mounts: [{{bind: ./www, path: /www, read_only: true}}]
            readiness:
              http: {{port: http, path: /ready.html}}
              period: 500ms
              failure_threshold: 1
            stop_grace: 1s
        services:
          web: {{pod: web, port: {port}, target: http}}
        """,
    )
    pc.start(path)
    pc.wait_ready(stack_name, 3)
    wait_for("3 answering replicas", lambda: len({fetch(port) for _ in range(12)}) == 3, 15)
    with frozen_engine(pid):
        (www / "web-1" / "ready.html").unlink()
        removed = time.monotonic()
        # One probe period plus the probe's timeout (1 s), with room for a busy host.
        wait_for(
            "web-1 out of the service",
            lambda: "web-1" not in {fetch(port) for _ in range(9)},
            timeout=5,
            every=0.1,
        )
        took = time.monotonic() - removed
        answers = collections.Counter(fetch(port) for _ in range(60))
        # The CLI still answers from podctl's own state while the engine is frozen.
        services = pc.services(stack_name)
    assert "web-1" not in answers, answers
    assert set(answers) == {"web-0", "web-2"}
    assert took < 3.0, f"web-1 left the service {took:.1f}s after failing readiness"
    ready = {e["pod"].split("-")[-2]: e["ready"] for e in services[0]["endpoints"]}
    assert ready.get("1") is False, services
