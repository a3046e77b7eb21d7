"""The engine restarts under a running podctl: podctl stays up and converges.

This test stops dockerd and starts it again, so it runs last (`zz`), needs root and
a dockerd it can put back exactly as it was (same command line, same working
directory, same log file), and is skipped otherwise with the reason. Every container
on the engine is stopped meanwhile (no live-restore): other tests running at the same
moment will notice, so run it on its own (`pytest tests/integration/test_zz_engine_restart.py`).

What it checks: while dockerd is away podctl keeps running and its STATUS says
`engine unavailable`; once dockerd is back, podctl reconnects, starts the replicas the
engine stopped in place (same container IDs) without counting restarts, the service
answers again, and STATUS is back to every replica ready.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.harness import Podctl, free_port, stack_containers, wait_for, write_stack
from tests.integration.systemd_side import SystemdSide
from tests.integration.test_systemd_run import WEB, http_get

pytestmark = [pytest.mark.docker]


@dataclass
class Dockerd:
    pid: int
    argv: list[str]
    cwd: str
    log: str | None  # the file its stdout/stderr went to


def running_dockerd() -> Dockerd | str:
    """The one dockerd to restart, or why the test cannot."""
    if os.geteuid() != 0:
        return "stops and restarts dockerd: needs root"
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        return "dockerd is managed by systemd here: not restarting the host's engine"
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and os.path.basename(argv[0]) == b"dockerd":
                pids.append(int(entry.name))
    if len(pids) != 1:
        return f"expected one dockerd process, found {len(pids)}"
    pid = pids[0]
    base = Path(f"/proc/{pid}")
    argv = [a.decode() for a in (base / "cmdline").read_bytes().split(b"\0") if a]
    log = os.readlink(base / "fd" / "1")
    return Dockerd(pid, argv, os.readlink(base / "cwd"), log if log.startswith("/") else None)


def running(ids: list[str]) -> bool:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Running}}", *ids],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return out.returncode == 0 and out.stdout.split() == ["true"] * len(ids)


def engine_answers() -> bool:
    proc = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    return proc.returncode == 0


def start_dockerd(d: Dockerd) -> None:
    out = open(d.log or "/tmp/dockerd.log", "ab")  # noqa: SIM115 (handed to the daemon)
    subprocess.Popen(
        d.argv, cwd=d.cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    out.close()
    wait_for("dockerd answering again", engine_answers, 120, every=0.5)


@pytest.fixture
def dockerd() -> Iterator[Dockerd]:
    found = running_dockerd()
    if isinstance(found, str):
        pytest.skip(found)
    try:
        yield found
    finally:
        if not engine_answers():
            start_dockerd(found)  # put it back, whatever happened


def test_podctl_rides_out_an_engine_restart(
    pc: Podctl, tmp_path: Path, stack_name: str, dockerd: Dockerd
) -> None:
    port = free_port()
    path = write_stack(tmp_path, WEB.format(name=stack_name, replicas=2, delay=0, port=port))
    log = (tmp_path / "run.log").open("ab")
    with SystemdSide(tmp_path) as sd:
        argv = [sys.executable, "-m", "podctl", "run", str(path), "--no-watch", "-v"]
        proc = sd.start(argv, env=dict(pc.env), stdout=log, stderr=subprocess.STDOUT)
        try:
            sd.wait_for("READY=1", timeout=120, pid=proc.pid)
            ids = stack_containers(stack_name)
            assert b"200 OK" in http_get(port)

            mark = len(sd.snapshot())
            os.kill(dockerd.pid, signal.SIGTERM)
            wait_for("dockerd gone", lambda: not Path(f"/proc/{dockerd.pid}").exists(), 90)
            sd.wait_for(
                lambda m: "engine unavailable" in m.fields.get("STATUS", ""), 60, after=mark
            )
            assert proc.poll() is None, "podctl exited when the engine went away"
            time.sleep(3)  # podctl retries meanwhile (capped, jittered back-off)
            assert proc.poll() is None

            start_dockerd(dockerd)
            # The engine stopped them; podctl starts the same containers again.
            wait_for("both replicas running again", lambda: running(ids), 120)
            assert stack_containers(stack_name) == ids, "the replicas were replaced"
            pc.wait_ready(stack_name, 2, timeout=120)

            def status() -> str | None:
                lines = [m.fields["STATUS"] for m in sd.snapshot() if "STATUS" in m.fields]
                return lines[-1] if lines and lines[-1] == "1 stack, 2/2 replicas ready" else None

            wait_for("STATUS back to every replica ready", status, 60)
            pods = pc.pods(stack_name)
            assert [p["restarts"] for p in pods] == [0, 0], pods
            assert all(p["ready"] for p in pods), pods
            wait_for("the service answering", lambda: b"200 OK" in http_get(port, 5), 60)
            events = pc.cli("events", "-o", "json", check=True).stdout
            assert "stopped by the engine's restart" in events, events
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # a plain run: takes the stack down
                proc.wait(120)
