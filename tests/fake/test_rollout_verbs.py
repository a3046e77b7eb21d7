"""The rollout verbs' controller and StackSet sides against FakeRuntime: undo, pause,
resume, the revision history (capped by the stack's `history:`, with causes and
outcomes), and `podctl scale` as an override that survives a restart."""

from __future__ import annotations

from pathlib import Path

import anyio
import msgspec
import pytest

from podctl import labels
from podctl.api.handlers import ControlHandlers
from podctl.api.rollouts import history_rows
from podctl.api.schema import Request
from podctl.reconcile.controller import Controller
from podctl.reconcile.ledger import Ledger
from podctl.runtime.fake import FakeRuntime
from podctl.spec.model import DesiredPod, RolloutSpec
from podctl.stackset import StackSet
from podctl.storage.files import StackFiles
from podctl.storage.history import RevisionHistory
from podctl.storage.statedir import StateDir
from tests.unit.planbuild import pod, stack, template

pytestmark = pytest.mark.anyio

R1, R2, R3 = "rev1aaaaaaaa", "rev2bbbbbbbb", "rev3cccccccc"
IMAGES = {R1: "busybox:1.36", R2: "busybox:1.37", R3: "busybox:1.38"}
START = 10_000.0


def v(revision: str, replicas: int = 2) -> DesiredPod:
    return pod(replicas=replicas, revision=revision, image=IMAGES[revision])


def revisions(rt: FakeRuntime) -> list[str]:
    return sorted(c.labels[labels.REVISION] for c in rt.running("shop"))


async def settle(c: Controller, passes: int = 20) -> None:
    with anyio.fail_after(10):
        for _ in range(passes):
            await c.reconcile_once()
            if not c.last_plan.steps:
                return


class Saved:
    """on_ledger_change: what was saved, as a restarted podctl would read it back."""

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.count = 0

    async def __call__(self, ledger: Ledger) -> None:
        self.data = msgspec.json.encode(ledger)
        self.count += 1

    def load(self) -> Ledger:
        assert self.data is not None
        return msgspec.json.decode(self.data, type=Ledger)


def setup(tmp_path: Path) -> tuple[Controller, FakeRuntime, StackSet, Saved, list[float]]:
    now = [START]
    rt = FakeRuntime(clock=lambda: now[0], call_timeout_s=0.5)
    for image in IMAGES.values():
        rt.add_image(image)
    saved = Saved()
    c = Controller(rt, [stack(v(R1))], clock=lambda: now[0], on_ledger_change=saved)
    history = RevisionHistory(StateDir(tmp_path / "state"))
    stacks = StackSet(
        c, StackFiles(tmp_path / "files"), lambda: [], history, state=StateDir(tmp_path / "state")
    )
    c.templates = lambda: stacks.templates
    c.observers.append(stacks.observe_plan)
    return c, rt, stacks, saved, now


async def roll_to(c: Controller, stacks: StackSet, revision: str) -> None:
    await stacks.loaded([stack(v(revision))])
    await settle(c)


async def test_undo_goes_back_to_the_revision_before_and_is_saved(tmp_path: Path) -> None:
    c, rt, stacks, saved, _ = setup(tmp_path)
    await stacks.record_revisions("file change")
    await settle(c)
    with pytest.raises(LookupError, match="no revision before rev1aa was fully available"):
        await stacks.rollout_undo("shop", "web", None)
    await roll_to(c, stacks, R2)
    assert revisions(rt) == [R2, R2]

    rec = await stacks.rollout_undo("shop", "web", None)
    assert rec.override is not None and (rec.override.kind, rec.override.revision) == ("undo", R1)
    assert saved.load().rollouts["shop/web"].override == rec.override  # survives a restart
    await settle(c)
    assert revisions(rt) == [R1, R1]
    status = c.rollout_status("shop", "web")
    assert status is not None and (status.state, status.override) == ("complete", "undo")
    causes = [(r.revision, r.cause) for r in await stacks.revisions("shop", "web")]
    assert causes == [(R2, "file change"), (R1, "undo")]

    # Undo again toggles back to the file's revision: the override is dropped.
    rec = await stacks.rollout_undo("shop", "web", None)
    assert rec.override is None
    await settle(c)
    assert revisions(rt) == [R2, R2]


async def test_undo_to_a_revision_by_prefix_and_its_errors(tmp_path: Path) -> None:
    c, rt, stacks, _, _ = setup(tmp_path)
    await stacks.record_revisions("file change")
    await settle(c)
    await roll_to(c, stacks, R2)
    await stacks.record_revisions("file change")
    await roll_to(c, stacks, R3)
    await stacks.record_revisions("file change")
    with pytest.raises(LookupError, match="unknown revision 'feed'"):
        await c.rollout_undo("shop", "web", to_revision="feed")
    with pytest.raises(LookupError, match="ambiguous"):
        await c.rollout_undo("shop", "web", to_revision="rev")
    with pytest.raises(ValueError, match="already runs revision rev3cc"):
        await c.rollout_undo("shop", "web", to_revision="rev3")
    with pytest.raises(LookupError, match="no pod shop/api"):
        await c.rollout_undo("shop", "api")
    await c.rollout_undo("shop", "web", to_revision="rev1")
    await settle(c)
    assert revisions(rt) == [R1, R1]


async def test_pause_holds_a_rollout_across_a_restart_and_resume_finishes_it(
    tmp_path: Path,
) -> None:
    c, rt, stacks, saved, now = setup(tmp_path)
    await settle(c)
    await stacks.loaded([stack(v(R2))])
    await c.reconcile_once()  # RolloutStarted and the surge replica
    assert revisions(rt) == [R1, R1, R2]
    await c.rollout_pause("shop", "web")
    with pytest.raises(ValueError, match="already paused"):
        await c.rollout_pause("shop", "web")
    await settle(c)
    assert revisions(rt) == [R1, R1, R2]  # nothing replaced
    status = c.rollout_status("shop", "web")
    assert status is not None and status.state == "paused"

    # A restarted podctl reads the saved Ledger: still paused.
    c2 = Controller(rt, c.stacks, clock=lambda: now[0], ledger=saved.load(), on_ledger_change=saved)
    await settle(c2)
    assert revisions(rt) == [R1, R1, R2]
    now[0] += 3600.0  # paused: no progress deadline runs
    await settle(c2)
    s2 = c2.rollout_status("shop", "web")
    assert s2 is not None and s2.state == "paused"

    await c2.rollout_resume("shop", "web")
    await settle(c2)
    assert revisions(rt) == [R2, R2]
    done = c2.rollout_status("shop", "web")
    assert done is not None and done.state == "complete"
    with pytest.raises(ValueError, match="not paused"):
        await c2.rollout_resume("shop", "web")


async def test_an_edit_of_the_pod_releases_a_pause(tmp_path: Path) -> None:
    c, rt, stacks, _, _ = setup(tmp_path)
    await settle(c)
    await c.rollout_pause("shop", "web")
    await roll_to(c, stacks, R2)
    assert revisions(rt) == [R2, R2]


async def test_an_edit_of_replicas_alone_releases_an_undo_and_a_pause(tmp_path: Path) -> None:
    # The same revision, another replica count: the pod's entry in the file changed,
    # so the undo (to rev1) and the pause give way to what the file says now.
    c, rt, stacks, saved, _ = setup(tmp_path)
    await stacks.record_revisions("file change")
    await settle(c)
    await roll_to(c, stacks, R2)
    await stacks.record_revisions("file change")
    await stacks.rollout_undo("shop", "web", None)
    await settle(c)
    assert revisions(rt) == [R1, R1]
    await c.rollout_pause("shop", "web")

    await stacks.loaded([stack(v(R2, replicas=3))])
    await settle(c)
    assert revisions(rt) == [R2, R2, R2]
    rec = saved.load().rollouts["shop/web"]
    assert rec.override is None and rec.paused is None
    released = [e for e in c.events.history("shop") if e.reason == "OverrideReleased"]
    assert released and "override and pause released" in released[-1].message, released


async def test_history_outcomes_of_a_rolled_back_rollout(tmp_path: Path) -> None:
    """rev1 runs; rev2's replicas exit at once: past the deadline it is rolled back.
    The history says rev2 rolled-back and rev1 current with cause rollback."""
    now = [START]
    rt = FakeRuntime(clock=lambda: now[0], call_timeout_s=0.5)
    rt.add_image("busybox:1.37")
    spec = RolloutSpec(progress_deadline_s=60.0)
    v1 = pod(replicas=2, revision=R1, restart="never", rollout=spec)
    v2 = pod(replicas=2, revision=R2, restart="never", rollout=spec, image="busybox:1.37")
    c = Controller(rt, [stack(v1)], clock=lambda: now[0])
    state = StateDir(tmp_path / "state")
    stacks = StackSet(c, StackFiles(tmp_path / "files"), lambda: [], RevisionHistory(state))
    c.templates = lambda: stacks.templates
    c.observers.append(stacks.observe_plan)
    async with anyio.create_task_group() as tg:
        tg.start_soon(stacks.follow_rollouts)
        await stacks.record_revisions("file change")
        await settle(c)
        await stacks.loaded([stack(v2)])
        await c.reconcile_once()
        (new,) = [x for x in rt.running("shop") if x.labels[labels.REVISION] == R2]
        rt.crash(new.id, exit_code=1)
        await settle(c)
        now[0] += 61.0
        await settle(c)

        def rows() -> list[tuple[str, str, str]]:
            s = c.rollout_status("shop", "web")
            records = stacks.history.list("shop", "web") if stacks.history else ()
            return [
                (r.revision, r.status, r.cause)
                for r in history_rows(
                    records, c.ledger.rollouts.get("shop/web"), s.revision if s else None
                )
            ]

        with anyio.fail_after(5):
            while rows() != [(R2, "rolled-back", "file change"), (R1, "current", "rollback")]:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert revisions(rt) == [R1, R1]


async def test_history_keeps_the_stacks_history_revisions(tmp_path: Path) -> None:
    _, _, stacks, _, _ = setup(tmp_path)
    capped = msgspec.structs.replace(stack(v(R1)), history=2)
    for rev in (R1, R2, R3):
        st = msgspec.structs.replace(capped, pods=(v(rev),))
        await stacks.loaded([st])
    assert [r.revision for r in await stacks.revisions("shop", "web")] == [R2, R3]
    # Lowering `history:` trims at once, even with no new revision.
    await stacks.loaded([msgspec.structs.replace(st, history=1, source="/other.yaml")])
    assert [r.revision for r in await stacks.revisions("shop", "web")] == [R3]


def test_revision_history_record_limit_and_outcome(tmp_path: Path) -> None:
    h = RevisionHistory(StateDir(tmp_path))
    for i, rev in enumerate((R1, R2, R3, R1)):
        h.record("shop", "web", rev, template(IMAGES[rev]), cause="file change", now=i, limit=3)
    assert [r.revision for r in h.list("shop", "web")] == [R2, R3, R1]
    assert h.set_outcome("shop", "web", R2, "failed")
    assert not h.set_outcome("shop", "web", R2, "failed")  # unchanged: no write
    assert not h.set_outcome("shop", "web", "gone", "complete")
    assert [r.outcome for r in h.list("shop", "web")] == ["failed", "", ""]


async def test_scale_is_an_override_that_survives_a_restart(tmp_path: Path) -> None:
    c, rt, stacks, _, now = setup(tmp_path)
    await settle(c)
    await stacks.scale("shop", "web", 4)
    await settle(c)
    assert revisions(rt) == [R1] * 4

    # Restart: a new controller with the file's stacks (2 replicas) restores the scale.
    file_stacks = [stack(v(R1))]
    c2 = Controller(rt, file_stacks, clock=lambda: now[0])
    state = StateDir(tmp_path / "state")
    s2 = StackSet(c2, StackFiles(tmp_path / "files"), lambda: [], state=state)
    await s2.restore()
    assert s2.scaled("shop", "web") == 4
    await settle(c2)
    assert revisions(rt) == [R1] * 4

    # An edit of another pod keeps it; an edit of this pod's entry releases it.
    other = pod("api", replicas=1, revision=R1)
    await s2.loaded([stack(v(R1), other)])
    await settle(c2)
    assert len([x for x in rt.running("shop") if x.labels[labels.POD] == "web"]) == 4
    await s2.loaded([stack(v(R1, replicas=3), other)])
    await settle(c2)
    assert s2.scaled("shop", "web") is None
    assert len([x for x in rt.running("shop") if x.labels[labels.POD] == "web"]) == 3
    assert "OverrideReleased" in [e.reason for e in c2.events.history()]
    s3 = StackSet(c2, StackFiles(tmp_path / "files"), lambda: [], state=state)
    await s3.restore()
    assert s3.scaled("shop", "web") is None  # the release was saved


async def test_a_revision_that_set_made_is_recorded_with_cause_set(tmp_path: Path) -> None:
    """At start, a pod whose revision differs from what the files alone give (its
    `--set` values changed it) gets cause `--set`; the others `file change`."""
    history = RevisionHistory(StateDir(tmp_path / "state"))
    with_set = stack(v(R2), pod("api", replicas=1, revision=R1))
    without_set = stack(v(R1), pod("api", replicas=1, revision=R1))
    c = Controller(FakeRuntime(), [with_set])
    stacks = StackSet(
        c,
        StackFiles(tmp_path / "files"),
        lambda: [],
        history,
        load_without_set=lambda: [without_set],
    )
    await stacks.record_revisions("start")
    assert [r.cause for r in history.list("shop", "web")] == ["--set"]
    assert [r.cause for r in history.list("shop", "api")] == ["file change"]


# -- through the control API (what the CLI asks) --------------------------------------


def handlers(c: Controller, stacks: StackSet) -> ControlHandlers:
    from podctl.health.store import HealthStore

    return ControlHandlers(c, None, HealthStore(), stacks)  # type: ignore[arg-type]


async def test_the_rollout_verbs_over_the_control_api(tmp_path: Path) -> None:
    c, _, stacks, _, _ = setup(tmp_path)
    api = handlers(c, stacks)
    await stacks.record_revisions("start")
    await settle(c)
    missing = await api.handle(Request(verb="rollout_status", stack="shop", name="nope"))
    assert not missing.ok and "no pod shop/nope" in (missing.error or "")
    await stacks.loaded([stack(v(R2))])
    await settle(c)

    reply = await api.handle(Request(verb="rollout_undo", stack="shop", name="web"))
    assert reply.ok and reply.data["revision"] == R1
    await settle(c)
    status = (await api.handle(Request(verb="rollout_status", stack="shop", name="web"))).data
    assert (status["state"], status["revision"], status["override"]) == ("complete", R1, "undo")
    await stacks.scale("shop", "web", 3)
    await settle(c)
    pods = (await api.handle(Request(verb="get_pods"))).data
    assert {p["reason"] for p in pods} == {f"Override: undo to {R1[:6]}, scaled to 3"}
    described = (await api.handle(Request(verb="describe_pod", name="shop/web-0"))).data
    assert described["overrides"]["undo"]["revision"] == R1
    assert described["overrides"]["scale"] == {"replicas": 3}
    history = (await api.handle(Request(verb="rollout_history", stack="shop", name="web"))).data
    assert [(h["revision"], h["status"], h["cause"]) for h in history] == [
        (R2, "complete", "file change"),
        (R1, "current", "undo"),
    ]
    bad = await api.handle(
        Request(verb="rollout_undo", stack="shop", name="web", revision="nothere")
    )
    assert not bad.ok and "unknown revision" in (bad.error or "")
    assert (await api.handle(Request(verb="rollout_pause", stack="shop", name="web"))).ok
    again = await api.handle(Request(verb="rollout_pause", stack="shop", name="web"))
    assert not again.ok and "already paused" in (again.error or "")
    assert (await api.handle(Request(verb="rollout_resume", stack="shop", name="web"))).ok


async def test_the_status_stream_follows_passes(tmp_path: Path) -> None:
    """`rollout status` gets a line whenever a pass changes the pod's rollout."""
    c, rt, stacks, _, _ = setup(tmp_path)
    api = handlers(c, stacks)
    await settle(c)
    await stacks.loaded([stack(v(R2))])
    seen: list[dict[str, object]] = []
    request = Request(verb="rollout_status", stack="shop", name="web", follow=True)

    async def read() -> None:
        async for line in api.stream(request):
            seen.append(msgspec.json.decode(line))
            if seen[-1]["state"] == "complete" and seen[-1]["revision"] == R2:
                return

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            while not (seen and seen[-1]["state"] == "complete" and seen[-1]["revision"] == R2):
                await c.reconcile_once()
                await anyio.sleep(0.01)
    assert revisions(rt) == [R2, R2]
    assert any(s["state"] == "progressing" for s in seen), seen


async def test_with_the_loop_running_a_verb_returns_once_a_pass_planned_with_it(
    tmp_path: Path,
) -> None:
    """The change is made between passes (a pass applying records decided before it
    cannot overwrite it), and the verb returns once a pass has planned with it: a
    `rollout status` asked next sees it."""
    c, rt, stacks, saved, _ = setup(tmp_path)
    await settle(c)
    async with anyio.create_task_group() as tg:
        await tg.start(c.run)
        with anyio.fail_after(10):
            await c.wait_converged()
            await stacks.loaded([stack(v(R2))])
            while not any(x.labels[labels.REVISION] == R2 for x in rt.running("shop")):
                await c.next_pass()
            await c.rollout_pause("shop", "web")
            status = c.rollout_status("shop", "web")
            assert status is not None and status.state == "paused"
            assert saved.load().rollouts["shop/web"].paused is not None
            with pytest.raises(ValueError, match="already paused"):
                await c.rollout_pause("shop", "web")
            await c.rollout_resume("shop", "web")
            while revisions(rt) != [R2, R2]:
                await c.next_pass()
        tg.cancel_scope.cancel()
