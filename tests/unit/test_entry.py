"""The `podctl` entry point: a stop signal during its imports ends it quietly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def catches_sigterm(pid: int) -> bool:
    """podctl's first line ran: it catches SIGTERM (CPython alone leaves it default)."""
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("SigCgt:"))
    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def interrupt_while_importing(sig: int) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "podctl", "validate", "/nonexistent/stack.yaml"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not catches_sigterm(proc.pid):
        assert time.monotonic() < deadline, "podctl never installed its signal handling"
        time.sleep(0.001)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("attempt", range(3))
def test_ctrl_c_while_importing_exits_130_quietly(attempt: int) -> None:
    done = interrupt_while_importing(signal.SIGINT)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "" and done.stdout == ""


def test_sigterm_while_importing_is_re_raised() -> None:
    done = interrupt_while_importing(signal.SIGTERM)
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert done.stderr == ""


def test_other_commands_get_python_ctrl_c_back() -> None:
    code = (
        "import signal, sys; sys.argv = ['podctl', 'get']; "
        "from podctl import early_signals; early_signals.install(); early_signals.restore(); "
        "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, "
        "signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]
