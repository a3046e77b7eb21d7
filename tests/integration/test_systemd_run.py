"""`podctl run` as systemd runs it, on the real engine, with `SystemdSide` as PID 1.

The command is the unit's ExecStart (`podctl run --stacks-dir DIR --keep`), with
$NOTIFY_SOCKET, $WATCHDOG_USEC and, on a restart, the stored listeners in
$LISTEN_FDS. The tests read what podctl told the service manager: READY only once
every pod is ready, the watchdog's cadence, RELOADING/MONOTONIC_USEC/READY on SIGHUP,
STOPPING on SIGTERM, and a restart that takes the listeners back from the store while
clients keep making requests (none fails, no container is replaced). The last tests
cover `--stacks-dir` itself: files added, removed and broken.
"""

from __future__ import annotations

import itertools
import json
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import StackCleanup
from tests.integration.harness import (
    Podctl,
    docker,
    free_port,
    stack_containers,
    wait_for,
    write_stack,
)
from tests.integration.systemd_side import SystemdSide

pytestmark = pytest.mark.docker

# Ready only after a few seconds: READY must wait for it.
WEB = """
name: {name}
pods:
  web:
    image: busybox:1.36
    command:
      - sh
      - -c
      - sleep {delay}; mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www
    replicas: {replicas}
    ports: {{http: 8080}}
    readiness: {{http: {{port: http, path: /}}, period: 1s}}
    stop_grace: 1s
services:
  web: {{pod: web, port: {port}, target: http}}
"""


def unit_argv(stacks_dir: Path) -> list[str]:
    """The unit's ExecStart (`podctl systemd unit`), with this checkout's podctl."""
    return [sys.executable, "-m", "podctl", "run", "--stacks-dir", str(stacks_dir), "--keep", "-v"]


def start(
    sd: SystemdSide, pc: Podctl, stacks_dir: Path, log: Path, **kw: object
) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return sd.start(
        unit_argv(stacks_dir),
        env=dict(pc.env),
        stdout=out,
        stderr=subprocess.STDOUT,
        **kw,  # type: ignore[arg-type]
    )


def http_get(port: int, timeout: float = 30.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def down(pc: Podctl, stack: str) -> None:
    """Pods left running on purpose (--keep): removed through podctl, as a user would."""
    pc.cli("down", stack, timeout=120)


def stop(proc: subprocess.Popen[bytes], log: Path) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"podctl did not stop:\n{log.read_text(errors='replace')}") from None


def test_ready_after_every_pod_then_watchdog_reload_and_stopping(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    stacks = tmp_path / "stacks"
    port = free_port()
    write_stack(stacks, WEB.format(name=stack_name, replicas=2, delay=3, port=port), "web.yaml")
    log = tmp_path / "run.log"
    with SystemdSide(tmp_path) as sd:
        proc = start(sd, pc, stacks, log, watchdog_usec=2_000_000)
        try:
            ready = sd.wait_for("READY=1", timeout=120)
            # READY came with every replica ready, and not before: the probes only pass
            # after a few seconds, so earlier STATUS lines said fewer.
            assert ready.pid == proc.pid
            assert "2/2 replicas ready" in ready.fields["STATUS"], ready.raw
            before = sd.snapshot()[: sd.snapshot().index(ready)]
            statuses = [m.fields["STATUS"] for m in before if "STATUS" in m.fields]
            assert any("0/2" in s or "1/2" in s for s in statuses), statuses
            pods = pc.pods(stack_name)
            assert len(pods) == 2 and all(p["ready"] for p in pods), pods

            # The watchdog: every half of WATCHDOG_USEC (1 s), never near the 2 s deadline.
            pings = sd.wait_count("WATCHDOG=1", 6, timeout=30)
            gaps = [b.time - a.time for a, b in itertools.pairwise(pings)]
            assert 0.7 < statistics.median(gaps) < 1.4, gaps
            assert max(gaps) < 2.0, gaps

            # SIGHUP: RELOADING=1 with a MONOTONIC_USEC of now, then READY=1.
            mark = len(sd.snapshot())
            now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            proc.send_signal(signal.SIGHUP)
            reloading = sd.wait_for("RELOADING=1", after=mark)
            stamp = int(reloading.fields["MONOTONIC_USEC"])
            assert now_usec <= stamp < now_usec + 30_000_000
            after_reload = sd.wait_for("READY=1", after=sd.snapshot().index(reloading))
            assert after_reload.time >= reloading.time

            # SIGTERM: STOPPING=1; the unit's --keep leaves the pods for the next start.
            ids = stack_containers(stack_name)
            mark = len(sd.snapshot())
            assert stop(proc, log) == 0
            sd.wait_for("STOPPING=1", after=mark)
            assert stack_containers(stack_name) == ids
            stored = sd.stored_names()
            assert f"{stack_name}/web" in stored, stored
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
            down(pc, stack_name)


def test_restart_takes_the_stored_listeners_back_and_fails_no_request(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    stacks = tmp_path / "stacks"
    port = free_port()
    write_stack(stacks, WEB.format(name=stack_name, replicas=2, delay=0, port=port), "web.yaml")
    log = tmp_path / "run.log"
    with SystemdSide(tmp_path) as sd:
        first = start(sd, pc, stacks, log)
        second: subprocess.Popen[bytes] | None = None
        stop_clients = threading.Event()
        done: list[int] = []
        failed: list[str] = []

        def client() -> None:
            while not stop_clients.is_set():
                try:
                    reply = http_get(port)
                    if b" 200 " not in reply.split(b"\r\n", 1)[0]:
                        failed.append(reply[:80].decode(errors="replace"))
                    else:
                        done.append(1)
                except OSError as exc:
                    failed.append(repr(exc))

        threads = [threading.Thread(target=client, daemon=True) for _ in range(3)]
        try:
            sd.wait_for("READY=1", timeout=120, pid=first.pid)
            wait_for(
                "both listeners in the store",
                lambda: (
                    {f"{stack_name}/web", f"{stack_name}/web+in-stack"} <= set(sd.stored_names())
                ),
                30,
            )
            ids = stack_containers(stack_name)
            for t in threads:
                t.start()
            wait_for("requests before the restart", lambda: len(done) >= 50, 30)
            before = len(done)
            assert stop(first, log) == 0
            second = start(sd, pc, stacks, log, pass_stored=True)
            sd.wait_for("READY=1", timeout=120, pid=second.pid)
            wait_for("requests after the restart", lambda: len(done) >= before + 100, 60)
            stop_clients.set()
            for t in threads:
                t.join(60)
            assert failed == [], f"{len(failed)} failed requests, e.g. {failed[:3]}"
            assert stack_containers(stack_name) == ids, "a container was replaced"
            text = log.read_text(errors="replace")
            assert "serving 127.0.0.1:" in text and "passed by the service manager" in text, text
            # Still exactly one stored listener per name: the adopted ones were not re-sent.
            stored = sd.stored_names()
            assert sorted(stored) == sorted(set(stored)), stored
        finally:
            stop_clients.set()
            for p in (first, second):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait(30)
            down(pc, stack_name)


def test_stacks_dir_add_remove_and_invalid_files(
    pc: Podctl, tmp_path: Path, stack_name: str, docker_cleanup: StackCleanup
) -> None:
    other = docker_cleanup.add(f"{stack_name}-b")
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    simple = """
    name: {name}
    pods:
      web:
        image: busybox:1.36
        command: ["sh", "-c", "mkdir -p /www && exec httpd -f -p 8080 -h /www"]
        replicas: {replicas}
        stop_grace: 1s
    """
    write_stack(stacks, simple.format(name=stack_name, replicas=1), "a.yaml")
    (stacks / "notes.txt").write_text("not a stack")
    pc.start(extra=("--stacks-dir", str(stacks)))
    pc.wait_ready(stack_name, 1)

    # A file added starts its stack.
    write_stack(stacks, simple.format(name=other, replicas=2), "b.yml")
    pc.wait_ready(other, 2, timeout=60)
    a_ids = stack_containers(stack_name)

    # A broken file is reported (event and log, FILE:LINE:COL) and leaves the others
    # alone: its own stack keeps running as last loaded.
    (stacks / "b.yml").write_text(f"name: {other}\npods:\n  web:\n    imagee: busybox:1.36\n")
    (stacks / "c.toml").write_text('name = "oops"\npods = 3\n')

    def invalid_events() -> list[dict[str, str]] | None:
        events = json.loads(pc.cli("events", "-o", "json", check=True).stdout)
        bad = [e for e in events if e["reason"] == "Invalid"]
        files = {e["message"].split(":", 1)[0] for e in bad}
        return bad if {str(stacks / "b.yml"), str(stacks / "c.toml")} <= files else None

    bad = wait_for("Invalid events for both bad files", invalid_events, 30)
    assert any("imagee" in e["message"] for e in bad), bad
    assert "b.yml:4:5" in pc.output() or "b.yml:4" in pc.output(), pc.output()
    assert len(stack_containers(other)) == 2
    assert stack_containers(stack_name) == a_ids
    names = {s["name"] for s in json.loads(pc.cli("get", "stacks", "-o", "json").stdout)}
    assert names == {stack_name, other}, names

    # A file removed stops its stack: containers and network go, volumes would stay.
    (stacks / "a.yaml").unlink()
    wait_for("stack a's containers gone", lambda: stack_containers(stack_name) == [], 60)
    wait_for(
        "stack a's network gone",
        lambda: (
            docker("network", "ls", "-q", "--filter", f"label=io.podctl.stack={stack_name}") == ""
        ),
        30,
    )
    events = json.loads(pc.cli("events", stack_name, "-o", "json", check=True).stdout)
    assert any(e["reason"] == "Removed" for e in events), events
    assert len(stack_containers(other)) == 2

    # Fixed: the broken file's new content applies.
    write_stack(stacks, simple.format(name=other, replicas=1), "b.yml")
    wait_for("b scaled to 1", lambda: len(stack_containers(other)) == 1, 60)
    assert pc.stop() in (0, 130)
    assert stack_containers(other) == []
