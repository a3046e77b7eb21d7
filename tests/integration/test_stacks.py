"""The example stacks in stacks/ really run (the README's demo among them)."""

from __future__ import annotations

import collections
import shutil
import urllib.request
from pathlib import Path

import pytest

from tests.integration.harness import Podctl, docker, free_port, stack_containers, wait_for

pytestmark = pytest.mark.docker

STACKS = Path(__file__).resolve().parents[2] / "stacks"


def get(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return str(r.read().decode())


def copy_stack(name: str, tmp_path: Path, stack_name: str) -> Path:
    """The example with its stack renamed, so a test never touches a user's real stack."""
    dest = tmp_path / name
    shutil.copytree(STACKS / name, dest)
    f = dest / "stack.yaml"
    f.write_text(f.read_text().replace(f"name: {name}\n", f"name: {stack_name}\n", 1))
    return f


def test_hello_demo_serves_three_replicas(pc: Podctl, tmp_path: Path, stack_name: str) -> None:
    port = free_port()
    pc.start(
        copy_stack("hello", tmp_path, stack_name), extra=("--no-watch", "--set", f"port={port}")
    )
    pc.wait_ready(stack_name, 3)
    wait_for("3 endpoints", lambda: len(pc.services(stack_name)[0]["endpoints"]) == 3, 10)
    answers = collections.Counter(get(port).strip() for _ in range(30))
    assert answers == {"hello from web-0": 10, "hello from web-1": 10, "hello from web-2": 10}
    assert pc.stop() == 0
    assert stack_containers(stack_name) == []


def test_shop_starts_in_dependency_order_and_serves(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    port = free_port()
    pc.start(
        copy_stack("shop", tmp_path, stack_name), extra=("--no-watch", "--set", f"port={port}")
    )
    pods = {p["pod"]: p for p in pc.wait_ready(stack_name, 4, timeout=60)}
    assert pods["db"]["started_at"] < pods["api"]["started_at"] < pods["web"]["started_at"]
    assert "served by" in get(port)
    wait_for(
        "the web tier to have fetched the api page",
        lambda: "shop api: ok" in get(port, "/api.html"),
        20,
    )
    key = pc.cli("exec", f"{stack_name}/api-0", "--", "cat", "/srv/key.txt", check=True).stdout
    assert key.startswith("key-id ")
    assert "demo-api-key" not in pc.cli("describe", "pod", f"{stack_name}/api-0", check=True).stdout
    pc.stop()
    docker("volume", "rm", "-f", f"{stack_name}_dbdata", check=False)
