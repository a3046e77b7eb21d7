"""The stacks a podctl runs: removal or rename in the file takes the old stack down;
every new template is kept in the revision history."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from podctl.reconcile.controller import Controller
from podctl.runtime.fake import FakeRuntime
from podctl.stackset import StackSet
from podctl.storage.files import StackFiles
from podctl.storage.history import RevisionHistory
from podctl.storage.statedir import StateDir
from tests.unit.planbuild import pod, stack

pytestmark = pytest.mark.anyio


async def converge(c: Controller) -> None:
    for _ in range(10):
        await c.reconcile_once()
        if not c.last_plan.steps:
            return
    raise AssertionError(f"did not converge: {c.last_plan.render()}")


async def test_a_stack_renamed_in_its_file_is_taken_down(tmp_path: Path) -> None:
    rt = FakeRuntime()
    old = stack(pod("web", stack="adv", replicas=2), name="adv")
    c = Controller(rt, [old])
    stacks = StackSet(c, StackFiles(tmp_path / "files"), lambda: [])
    await converge(c)
    assert len(rt.running("adv")) == 2
    renamed = stack(pod("web", stack="advert", replicas=2), name="advert")
    await stacks.replace_stacks([renamed], "no longer in the stack files")
    await converge(c)
    assert rt.running("adv") == []
    assert not [n for n in rt.networks.values() if n.name == "podctl_adv"]
    assert len(rt.running("advert")) == 2
    (removed,) = [e for e in c.events.history() if e.reason == "Removed"]
    assert removed.stack == "adv" and "no longer in the stack files" in removed.message


async def test_revisions_are_recorded_once_per_template(tmp_path: Path) -> None:
    history = RevisionHistory(StateDir(tmp_path / "state"))
    first = stack(pod("web", revision="rev1aaaaaaaa"))
    c = Controller(FakeRuntime(), [first])
    stacks = StackSet(c, StackFiles(tmp_path / "files"), lambda: [], history)
    await stacks.record_revisions("start")
    await stacks.record_revisions("start")
    edited = msgspec.structs.replace(
        first, pods=(msgspec.structs.replace(first.pods[0], revision="rev2bbbbbbbb"),)
    )
    c.set_stacks([edited])
    await stacks.record_revisions("file change")
    revs = history.list("shop", "web")
    assert [(r.revision, r.cause) for r in revs] == [
        ("rev1aaaaaaaa", "file change"),  # at start, from the file alone (no --set)
        ("rev2bbbbbbbb", "file change"),
    ]
