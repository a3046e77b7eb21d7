"""A restarted container that crashes again is seen with its new exit times.

The runtime reuses a container's inspect while the engine's list shows the same
state and exit code; a restart by podctl must not let the previous run's
FinishedAt stand for the new one (the planner dates crash-loop back-off from it).
"""

from __future__ import annotations

import subprocess

import anyio
import pytest

from podctl.runtime.docker import DockerRuntime
from podctl.runtime.engine_json import parse_time
from tests.integration.harness import wait_for
from tests.integration.test_docker_runtime import make_spec, stack_network  # noqa: F401

pytestmark = [pytest.mark.docker, pytest.mark.anyio]


def engine_finished_at(cid: str) -> float | None:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Status}} {{.State.FinishedAt}}", cid],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    return parse_time(out[1]) if out[0] == "exited" else None


async def test_restart_then_same_exit_code_shows_the_new_finish(
    docker_runtime: DockerRuntime,
    stack_name: str,
    stack_network: str,  # noqa: F811
) -> None:
    rt = docker_runtime
    cid = await rt.create_container(make_spec(stack_name, "crasher", ["sh", "-c", "exit 3"]))
    await rt.start_container(cid)
    first = await anyio.to_thread.run_sync(
        lambda: wait_for("the first exit", lambda: engine_finished_at(cid), 30, 0.05)
    )
    (c,) = await rt.list_containers(stack_name)
    assert (c.state, c.exit_code, c.finished_at) == ("exited", 3, pytest.approx(first, abs=0.001))

    # Restarted and exited again (same code) before podctl's next look.
    await rt.start_container(cid)
    second = await anyio.to_thread.run_sync(
        lambda: wait_for(
            "the second exit",
            lambda: f if (f := engine_finished_at(cid)) is not None and f > first else None,
            30,
            0.05,
        )
    )
    (c,) = await rt.list_containers(stack_name)
    assert (c.state, c.exit_code) == ("exited", 3)
    assert c.finished_at == pytest.approx(second, abs=0.001)
