"""Hot reload as editors and shells really save: in chunks, renamed, next to logs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.integration.conftest import StackCleanup, remove_stack_objects
from tests.integration.harness import Podctl, docker, stack_containers, wait_for, write_stack

pytestmark = pytest.mark.docker

STACK = """
name: {name}
pods:
  web:
    image: busybox:1.36
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    replicas: {replicas}
    stop_grace: 1s
"""


def podctl_networks() -> dict[str, str]:
    """name -> io.podctl.stack of every podctl network on the engine."""
    out = {}
    for line in docker(
        "network", "ls", "--filter", "label=io.podctl.stack", "--format", "{{.Name}}"
    ).split():
        labels = json.loads(docker("network", "inspect", "-f", "{{json .Labels}}", line))
        out[line] = labels.get("io.podctl.stack", "")
    return out


def started_at(ids: list[str]) -> dict[str, str]:
    return {cid: docker("inspect", "-f", "{{.State.StartedAt}}", cid) for cid in ids}


def test_a_file_saved_byte_by_byte_is_applied_once(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    path = write_stack(tmp_path, STACK.format(name=stack_name, replicas=3))
    pc.start(path, extra=())  # watch on
    pc.wait_ready(stack_name, 3)
    before = stack_containers(stack_name)
    starts = started_at(before)
    networks = podctl_networks()
    text = STACK.format(name=stack_name, replicas=4).encode()
    try:
        with path.open("wb", buffering=0) as f:  # truncates: the file is empty first
            for byte in text:
                f.write(bytes([byte]))
                time.sleep(0.002)

        def four() -> list[str] | None:
            ids = stack_containers(stack_name)
            return ids if len(ids) == 4 else None

        after = wait_for("a fourth replica", four, 30)
        time.sleep(2.0)  # anything a prefix would have caused has had time to show
        # A prefix of the file names a prefix of the stack: "name: t-1a" for "t-1a2b3c4d".
        truncated = {
            n: s
            for n, s in podctl_networks().items()
            if n not in networks and s != stack_name and stack_name.startswith(s)
        }
        assert truncated == {}, f"a half-written file created {truncated}"
        assert stack_containers(stack_name) == after, "more than one change was applied"
        assert set(before) < set(after)
        assert started_at(before) == starts, "the existing replicas were touched"
        events = pc.cli("events", "-o", "json", check=True).stdout
        reloads = [e for e in json.loads(events) if e["reason"] in ("Reloaded", "Invalid")]
        assert [e["reason"] for e in reloads] == ["Reloaded"], reloads
    finally:
        for stack in podctl_networks().values():
            if stack != stack_name and stack_name.startswith(stack):
                remove_stack_objects(stack)  # a prefix's leak, if the test failed


def test_a_stack_renamed_in_its_file_takes_the_old_one_down(
    pc: Podctl, tmp_path: Path, stack_name: str, docker_cleanup: StackCleanup
) -> None:
    renamed = docker_cleanup.add(f"{stack_name}-b")
    path = write_stack(tmp_path, STACK.format(name=stack_name, replicas=2))
    pc.start(path, extra=())
    pc.wait_ready(stack_name, 2)
    write_stack(tmp_path, STACK.format(name=renamed, replicas=2))
    pc.wait_ready(renamed, 2)
    wait_for("the old stack's containers gone", lambda: stack_containers(stack_name) == [], 30)
    wait_for(
        "the old stack's network gone",
        lambda: stack_name not in podctl_networks().values(),
        30,
    )
    events = json.loads(pc.cli("events", stack_name, "-o", "json", check=True).stdout)
    removed = [e for e in events if e["reason"] == "Removed"]
    assert removed and "no longer in the stack files" in removed[0]["message"], events
    # A clean stop takes the renamed stack down too: nothing is left unmanaged.
    assert pc.stop() in (0, 130)
    assert stack_containers(renamed) == []
