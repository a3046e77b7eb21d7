"""Issues 8 and 9: `podctl run` as a process. Ctrl-C at any moment, a second
instance, its directories, and `podctl down` without a running podctl."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import StackCleanup
from tests.integration.harness import Podctl, docker, stack_containers, wait_for, write_stack

pytestmark = pytest.mark.docker


def web_stack(tmp_path: Path, stack: str, replicas: int = 3, name: str = "stack.yaml") -> Path:
    return write_stack(
        tmp_path,
        f"""
        name: {stack}
        pods:
          web:
            image: busybox:1.36
            command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
            replicas: {replicas}
            stop_grace: 1s
        """,
        name,
    )


def networks(stack: str) -> list[str]:
    return docker("network", "ls", "-q", "--filter", f"label=io.podctl.stack={stack}").split()


def catches_sigterm(pid: int) -> bool:
    """podctl's own code runs: it catches SIGTERM (Python alone leaves it default).

    Before that point the process is CPython starting up, which podctl cannot
    reach; from it on, every stop signal must end in a clean stop.
    """
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(
        next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16
    )
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def start_run(pc: Podctl, path: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [*pc.cli_prefix(), "run", str(path), "--no-watch"],
            env=pc.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def assert_clean_stop(proc: subprocess.Popen[bytes], log: Path, stack: str) -> None:
    code = proc.wait(90)
    output = log.read_text(errors="replace")
    # 0: stopped cleanly; 130: Ctrl-C before `run` began; -SIGINT: the standard re-raise.
    assert code in (0, 130, -signal.SIGINT), f"exit {code}:\n{output}"
    assert "Traceback" not in output, output
    assert " ERROR " not in output, output
    assert stack_containers(stack) == []
    assert networks(stack) == []


@pytest.mark.parametrize(
    ("sig", "delay"),
    [
        (signal.SIGINT, 0.0),
        (signal.SIGINT, 0.2),
        (signal.SIGINT, 0.5),
        (signal.SIGINT, 0.8),
        (signal.SIGINT, 1.5),
        (signal.SIGTERM, 0.0),
        (signal.SIGTERM, 0.8),
    ],
)
def test_ctrl_c_during_start_up_leaves_nothing(
    pc: Podctl, tmp_path: Path, stack_name: str, sig: int, delay: float
) -> None:
    log = tmp_path / "run.log"
    proc = start_run(pc, web_stack(tmp_path, stack_name), log)
    try:
        wait_for("podctl's own signal handling", lambda: catches_sigterm(proc.pid), 30, 0.001)
        time.sleep(delay)  # from "podctl's first line": during imports, loading, creating
        proc.send_signal(sig)
        assert_clean_stop(proc, log, stack_name)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("stage", ["network", "container", "running"])
def test_ctrl_c_while_creating_leaves_nothing(
    pc: Podctl, tmp_path: Path, stack_name: str, stage: str
) -> None:
    log = tmp_path / "run.log"
    proc = start_run(pc, web_stack(tmp_path, stack_name, replicas=6), log)
    try:

        def reached() -> bool:
            if stage == "network":
                return bool(networks(stack_name))
            all_ = stage == "container"
            return bool(stack_containers(stack_name, all_=all_))

        wait_for(f"a {stage} of the stack", reached, 60, 0.02)
        proc.send_signal(signal.SIGINT)
        assert_clean_stop(proc, log, stack_name)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def running_ids(stack: str) -> list[str]:
    return stack_containers(stack, all_=False)


def test_second_run_of_a_stack_is_refused_and_touches_nothing(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    path = web_stack(tmp_path, stack_name, replicas=2)
    pc.start(path)
    pc.wait_ready(stack_name, 2)
    before = running_ids(stack_name)
    assert pc.proc is not None
    # Same socket and state dir, then its own socket, state and runtime dirs: the lock
    # is the stack's on this host, whatever the environment says.
    other = Podctl(tmp_path / "other")
    other.tmp.mkdir()
    try:
        for env in (pc.env, other.env):
            second = subprocess.run(
                [*pc.cli_prefix(), "run", str(path), "--no-watch"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert second.returncode == 1, second.stderr
            assert f"stack {stack_name} is already run by podctl (pid {pc.proc.pid}" in (
                second.stderr
            )
            assert "Traceback" not in second.stderr
            assert running_ids(stack_name) == before
        # The first one still serves, and still owns its socket.
        assert len(pc.wait_ready(stack_name, 2)) == 2
        assert running_ids(stack_name) == before
    finally:
        other.close()
    assert pc.stop() == 0
    assert stack_containers(stack_name) == []


def test_second_run_on_the_same_socket_is_refused_and_touches_nothing(
    pc: Podctl, tmp_path: Path, stack_name: str, docker_cleanup: StackCleanup
) -> None:
    pc.start(web_stack(tmp_path, stack_name, replicas=1))
    pc.wait_ready(stack_name, 1)
    before = running_ids(stack_name)
    assert pc.proc is not None
    another = docker_cleanup.add(f"{stack_name}-b")
    second = subprocess.run(
        [*pc.cli_prefix(), "run", str(web_stack(tmp_path, another, name="b.yaml")), "--no-watch"],
        env=pc.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1, second.stderr
    assert f"another podctl (pid {pc.proc.pid}) serves the control socket" in second.stderr
    assert "Traceback" not in second.stderr
    assert running_ids(stack_name) == before
    assert stack_containers(another) == []
    assert len(pc.wait_ready(stack_name, 1)) == 1


def test_run_refuses_a_world_writable_runtime_dir_of_another_user(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    # A runtime dir someone else pre-created (as /dev/shm/podctl could be): its owner
    # could replace the control socket or read the secrets written there.
    rt = Path(pc.env["PODCTL_RUNTIME_DIR"])
    rt.mkdir(mode=0o777)
    rt.chmod(0o777)
    problem = "writable by everyone"
    if os.geteuid() == 0:
        os.chown(rt, pwd.getpwnam("nobody").pw_uid, -1)
        problem = "owned by uid"
    proc = pc.cli("run", str(web_stack(tmp_path, stack_name)), "--no-watch")
    assert proc.returncode == 1, proc.stderr
    assert str(rt) in proc.stderr
    assert problem in proc.stderr
    assert "Traceback" not in proc.stderr
    assert stack_containers(stack_name) == []
    assert not list(rt.iterdir())  # no socket, no secrets planted for it


def test_offline_down_honours_stop_grace_and_removes_secret_files(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    (tmp_path / "token").write_text("not-a-real-secret\n")
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          web:
            image: busybox:1.36
            # httpd as PID 1 ignores SIGTERM: every stop waits out the whole grace.
            command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
            replicas: 10
            stop_grace: 1s
            mounts:
              - {{secret: token}}
        secrets:
          token: {{file: ./token}}
        """,
    )
    pc.start(path)
    pc.wait_ready(stack_name, 10, timeout=90)
    stack_files = Path(pc.env["PODCTL_RUNTIME_DIR"]) / "stacks" / stack_name
    assert any(p.is_file() for p in stack_files.rglob("*"))
    pc.kill9()  # no podctl running: `down` works from the engine's labels
    assert len(stack_containers(stack_name)) == 10

    since = f"{time.time() - 1:.3f}"
    proc = pc.cli("down", stack_name, check=True, timeout=120)
    assert "removed" in proc.stdout
    assert stack_containers(stack_name) == []
    assert networks(stack_name) == []
    assert not stack_files.exists()
    # Each container got SIGTERM, then SIGKILL after its own 1 s grace, not after the
    # engine's default 10 s: the engine's kill events say which timeout a stop used,
    # whatever the machine's load does to the total.
    grace = _term_to_kill_seconds(stack_name, since)
    assert len(grace) == 10, grace
    assert all(g < 5.0 for g in grace.values()), grace


def _term_to_kill_seconds(stack: str, since: str) -> dict[str, float]:
    """Per container of `stack`: seconds from the engine's SIGTERM to its SIGKILL."""
    out = docker(
        "events",
        "--since",
        since,
        "--until",
        f"{time.time() + 1:.3f}",
        "--filter",
        f"label=io.podctl.stack={stack}",
        "--filter",
        "event=kill",
        "--format",
        "{{json .}}",
    )
    term: dict[str, int] = {}
    kill: dict[str, int] = {}
    for line in out.splitlines():
        e = json.loads(line)
        signal_ = e["Actor"]["Attributes"].get("signal")
        (term if signal_ == "15" else kill if signal_ == "9" else {})[e["id"]] = e["timeNano"]
    return {cid: (kill[cid] - t) / 1e9 for cid, t in term.items() if cid in kill}


def test_offline_down_refuses_a_stack_run_on_another_socket(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    pc.start(web_stack(tmp_path, stack_name, replicas=1))
    pc.wait_ready(stack_name, 1)
    before = running_ids(stack_name)
    assert pc.proc is not None
    other = Podctl(tmp_path / "other")
    other.tmp.mkdir()
    try:
        proc = other.cli("down", stack_name)
    finally:
        other.close()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"already run by podctl (pid {pc.proc.pid}" in proc.stderr
    assert running_ids(stack_name) == before
