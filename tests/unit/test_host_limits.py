"""RLIMIT_NOFILE: podctl raises its soft limit to the hard one."""

from __future__ import annotations

import resource
import subprocess
import sys


def test_raise_nofile_lifts_the_soft_limit_to_the_hard_one() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    code = (
        "import resource; from podctl.host.limits import raise_nofile; "
        "before = resource.getrlimit(resource.RLIMIT_NOFILE)[0]; n = raise_nofile(); "
        "print(before, n, resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=lower, check=True
    ).stdout.split()
    before, returned, after = map(int, out)
    assert before == low
    expected = hard if hard != resource.RLIM_INFINITY else returned
    assert returned == after == expected
