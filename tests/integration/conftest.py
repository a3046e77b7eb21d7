"""Fixtures for tests against the real Docker engine (marker `docker`).

- `seeded_images` (session): runs `scripts/seed-image` once, so `busybox:1.36`
  exists without a registry.
- `stack_name`: a unique stack name per test (`t-<hex>`); every object a test
  creates carries it in `io.podctl.stack`.
- `docker_cleanup` (autouse for `docker` tests): after the test and its other
  fixtures (a `podctl run` of `pc` is stopped with SIGTERM, as a user stops it),
  every container, network and volume still labelled with the test's stack name,
  or a stack registered with `docker_cleanup.add(name)`, is a leak: the fixture
  force-removes it, then fails the test naming what leaked. A test that keeps
  objects on purpose (`--keep`, volumes, which `down` keeps unless `--volumes`)
  removes them itself, through podctl where it can.
- `docker_runtime`: a `DockerRuntime`, closed after the test.
- `pc`: a podctl installation; its `podctl run` is stopped with SIGTERM (then
  killed if it does not exit) when the test ends.

Cleanup goes through the `docker` CLI on purpose: it must work even when the
runtime under test is broken or its event loop is gone.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from podctl import labels
from podctl.runtime.docker import DockerRuntime
from tests.integration.harness import Podctl

ROOT = Path(__file__).resolve().parents[2]
SEED_IMAGE = ROOT / "scripts" / "seed-image"
BUSYBOX = "busybox:1.36"


def _docker(*args: str) -> list[str]:
    proc = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=120, check=False
    )
    return [line for line in proc.stdout.split() if line]


def _names(kind: str, selector: str) -> list[str]:
    """Names of the `kind` objects (container/network/volume) matching `selector`."""
    if kind == "container":
        return _docker("ps", "-a", "--filter", selector, "--format", "{{.Names}}")
    return _docker(kind, "ls", "--filter", selector, "--format", "{{.Name}}")


def stack_objects(stack: str) -> list[str]:
    """Every object labelled with `stack`, as "kind name"."""
    selector = f"label={labels.STACK}={stack}"
    return [
        f"{kind} {name}"
        for kind in ("container", "network", "volume")
        for name in _names(kind, selector)
    ]


def remove_stack_objects(stack: str) -> None:
    """Force-remove everything labelled with `stack` (containers first, then networks)."""
    selector = f"label={labels.STACK}={stack}"
    containers = _docker("ps", "-aq", "--filter", selector)
    if containers:
        _docker("rm", "-f", *containers)
    networks = _docker("network", "ls", "-q", "--filter", selector)
    if networks:
        _docker("network", "rm", *networks)
    volumes = _docker("volume", "ls", "-q", "--filter", selector)
    if volumes:
        _docker("volume", "rm", "-f", *volumes)


class StackCleanup:
    """Stack names whose Docker objects are removed when the test ends."""

    def __init__(self) -> None:
        self.stacks: list[str] = []

    def add(self, stack: str) -> str:
        self.stacks.append(stack)
        return stack

    def leaks(self) -> list[str]:
        return [obj for stack in self.stacks for obj in stack_objects(stack)]

    def run(self) -> None:
        for stack in self.stacks:
            remove_stack_objects(stack)


@pytest.fixture(scope="session")
def seeded_images() -> list[str]:
    """Images the integration tests use, present locally (pulled or seeded)."""
    proc = subprocess.run(
        [str(SEED_IMAGE), BUSYBOX], capture_output=True, text=True, timeout=300, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/seed-image failed:\n{proc.stdout}{proc.stderr}")
    return [BUSYBOX]


@pytest.fixture
def stack_name() -> str:
    return f"t-{secrets.token_hex(4)}"


@pytest.fixture(autouse=True)
def docker_cleanup(request: pytest.FixtureRequest) -> Iterator[StackCleanup]:
    cleanup = StackCleanup()
    is_docker_test = request.node.get_closest_marker("docker") is not None
    if is_docker_test:
        cleanup.add(request.getfixturevalue("stack_name"))
    try:
        yield cleanup
    finally:
        # The other fixtures are torn down by now (this one is set up first).
        leaked = cleanup.leaks()
        cleanup.run()
    if leaked:
        left = cleanup.leaks()
        pytest.fail(
            "the test left labelled objects behind (removed now): "
            + ", ".join(leaked)
            + (f"; and these would not go: {', '.join(left)}" if left else ""),
            pytrace=False,
        )


@pytest.fixture
async def docker_runtime(
    anyio_backend: str, seeded_images: list[str]
) -> AsyncIterator[DockerRuntime]:
    runtime = DockerRuntime()
    try:
        yield runtime
    finally:
        await runtime.close()


@pytest.fixture
def pc(tmp_path: Path, seeded_images: list[str]) -> Iterator[Podctl]:
    """A podctl installation of the test's own (socket, state, runtime dir); its
    `podctl run` process is killed when the test ends."""
    p = Podctl(tmp_path)
    try:
        yield p
        if p.proc is not None and p.proc.poll() is None:
            p.stop()  # SIGTERM: podctl removes its stacks' containers and networks
    finally:
        p.close()
