"""Drive `podctl` as a user does: a `podctl run` process and CLI calls, on the real engine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def write_stack(tmp_path: Path, text: str, name: str = "stack.yaml") -> Path:
    """Write a stack file (indented text is dedented) and return its path."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def docker(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


def stack_containers(stack: str, all_: bool = True) -> list[str]:
    args = ["ps", "-q", "--no-trunc", "--filter", f"label=io.podctl.stack={stack}"]
    if all_:
        args.insert(1, "-a")
    return sorted(docker(*args).split())


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 30.0, every: float = 0.2) -> T:
    """Poll an observable condition (what a user would re-check) until it holds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as exc:  # a transient failure of the check itself
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


class Podctl:
    """One podctl installation: its own socket, state and runtime dirs."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = dict(os.environ)
        self.env.update(
            PODCTL_SOCKET=str(tmp / "podctl.sock"),
            PODCTL_STATE_DIR=str(tmp / "state"),
            # Secrets are materialised here: tmpfs, like the default location.
            PODCTL_RUNTIME_DIR=str(Path("/dev/shm") / f"podctl-test-{tmp.name}-{os.getpid()}"),
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "podctl-run.log"

    def cli_prefix(self) -> list[str]:
        return [sys.executable, "-m", "podctl"]

    def cli(
        self, *args: str, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "podctl", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"podctl {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def start(self, *files: Path | str, extra: tuple[str, ...] = ("--no-watch",)) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "podctl", "run", "-v", *map(str, files), *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )
        wait_for(
            "the control socket",
            lambda: self.cli("get", "stacks").returncode == 0 and self._alive(),
            30,
        )

    def _alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"podctl run exited with {self.proc.returncode}:\n{self.output()}")
        return True

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def pods(self, stack: str | None = None) -> list[dict[str, Any]]:
        args = ["get", "pods", "-o", "json"] + ([stack] if stack else [])
        proc = self.cli(*args, check=True)
        return list(json.loads(proc.stdout))

    def services(self, stack: str | None = None) -> list[dict[str, Any]]:
        args = ["get", "services", "-o", "json"] + ([stack] if stack else [])
        return list(json.loads(self.cli(*args, check=True).stdout))

    def wait_ready(self, stack: str, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        def ready() -> list[dict[str, Any]] | None:
            pods = [p for p in self.pods(stack) if p["ready"]]
            return pods if len(pods) == n else None

        return wait_for(f"{n} ready replicas of {stack}", ready, timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(
                    f"podctl did not stop on signal {sig}:\n{self.output()}"
                ) from None
        return int(self.proc.returncode)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.env["PODCTL_RUNTIME_DIR"], ignore_errors=True)
