"""The compose export of stacks/shop deploys on a real (single-node) Swarm.

The test turns the engine into a one-node swarm for as short a time as it can
(other tests share the engine): `docker swarm init --advertise-addr 127.0.0.1`,
`docker stack deploy --resolve-image never`, wait for every service's replica
count, then `docker stack rm`, wait until its tasks and networks are gone, and
`docker swarm leave --force` -- in a `finally`, so a failure leaves no swarm
behind. An engine that is already part of a swarm is not ours to leave: the
test is skipped. podctl's own networks (bridge networks labelled
`io.podctl.stack`) must come through untouched.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.harness import Podctl, docker, free_port, wait_for

pytestmark = pytest.mark.docker

STACKS = Path(__file__).resolve().parents[2] / "stacks"
NAMESPACE = "com.docker.stack.namespace"
# The shop's pods and their replica counts (web_replicas defaults to 2).
EXPECTED = {"db": 1, "api": 1, "web": 2}


def swarm_state() -> str:
    return docker("info", "--format", "{{.Swarm.LocalNodeState}}")


def podctl_networks() -> dict[str, tuple[str, str, str]]:
    """podctl's networks: name -> (id, driver, scope)."""
    out = docker(
        "network",
        "ls",
        "--no-trunc",
        "--filter",
        "label=io.podctl.stack",
        "--format",
        "{{.Name}} {{.ID}} {{.Driver}} {{.Scope}}",
    )
    rows = [line.split() for line in out.splitlines() if line.strip()]
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def replicas(stack: str) -> dict[str, str]:
    out = docker(
        "service",
        "ls",
        "--filter",
        f"label={NAMESPACE}={stack}",
        "--format",
        "{{.Name}} {{.Replicas}}",
    )
    rows = [line.split() for line in out.splitlines() if line.strip()]
    return {name.removeprefix(f"{stack}_"): count for name, count in rows}


def stack_leftovers(stack: str) -> list[str]:
    label = f"label={NAMESPACE}={stack}"
    return [
        *docker("ps", "-aq", "--filter", label, check=False).split(),
        *docker("network", "ls", "-q", "--filter", label, check=False).split(),
        *docker("service", "ls", "-q", "--filter", label, check=False).split(),
    ]


@pytest.mark.timeout(420)
def test_compose_export_of_shop_deploys_on_a_swarm(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    state = swarm_state()
    if state != "inactive":
        pytest.skip(f"the engine is already in a swarm ({state}): not ours to leave")

    # The example with its stack renamed, published on a free port.
    shop = tmp_path / "shop"
    shutil.copytree(STACKS / "shop", shop)
    stack_file = shop / "stack.yaml"
    stack_file.write_text(stack_file.read_text().replace("name: shop\n", f"name: {stack_name}\n"))
    exported = pc.cli(
        "export", str(stack_file), "--to", "compose", "--set", f"port={free_port()}", check=True
    )
    compose = tmp_path / "compose.yaml"
    compose.write_text(exported.stdout)
    # The inline config is external in the export (compose 3.x has no inline
    # content), and the warning says how to create it.
    config = f"{stack_name}_api-page"
    assert f"docker config create {config} -" in exported.stderr

    # Our own podctl-style network, to check the swarm leaves such networks alone.
    own = f"podctl_{stack_name}"
    docker("network", "create", "--label", f"io.podctl.stack={stack_name}", own)
    before = podctl_networks()
    had_gwbridge = bool(docker("network", "ls", "-q", "--filter", "name=^docker_gwbridge$"))
    started = time.monotonic()
    try:
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        subprocess.run(
            ["docker", "config", "create", config, "-"],
            input="shop api: ok\n",
            text=True,
            check=True,
            capture_output=True,
            timeout=60,
        )
        docker("stack", "deploy", "--resolve-image", "never", "-c", str(compose), stack_name)

        def converged() -> dict[str, str] | None:
            now = replicas(stack_name)
            want = {pod: f"{n}/{n}" for pod, n in EXPECTED.items()}
            return now if now == want else None

        # Tasks with a healthcheck count as running only once healthy.
        got = wait_for("every service at its replica count", converged, 240, every=1.0)
        assert got == {"db": "1/1", "api": "1/1", "web": "2/2"}
        web = json.loads(docker("service", "inspect", f"{stack_name}_web"))[0]["Spec"]
        update = web["UpdateConfig"]
        assert update["Order"] == "start-first" and update["FailureAction"] == "rollback"
        api = json.loads(docker("service", "inspect", f"{stack_name}_api"))[0]["Spec"]
        assert api["EndpointSpec"]["Mode"] == "dnsrr"
    finally:
        # Down in order: the stack, then its tasks' containers and networks, then the
        # config we made, then the swarm; each step runs even if an earlier one failed.
        docker("stack", "rm", stack_name, check=False)
        try:
            wait_for(
                "the stack's containers, networks and services to go",
                lambda: not stack_leftovers(stack_name),
                120,
                every=0.5,
            )
        finally:
            docker("config", "rm", config, check=False)
            docker("swarm", "leave", "--force", check=False)
            window = time.monotonic() - started
            if not had_gwbridge:
                docker("network", "rm", "docker_gwbridge", check=False)
            docker("volume", "rm", "-f", f"{stack_name}_dbdata", check=False)
    assert swarm_state() == "inactive"
    after = podctl_networks()
    # Networks of other tests come and go meanwhile; those still here are unchanged.
    assert after[own] == before[own]
    assert after[own][1:] == ("bridge", "local")
    for name, info in before.items():
        if name in after:
            assert after[name] == info, name
    docker("network", "rm", own)
    print(f"swarm window: {window:.1f} s")
