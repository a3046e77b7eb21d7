"""Golden tests of rollouts: steps, budgets, min_ready, recreate, failure, rollback, pause."""

from __future__ import annotations

import msgspec

from podctl.health.model import ContainerHealth, ProbeResult
from podctl.net.endpoints import backends as to_backends
from podctl.net.endpoints import routing_tables
from podctl.reconcile.ledger import AvailableRevision, Ledger, RestartRecord, rollout_key
from podctl.reconcile.plan import plan
from podctl.reconcile.rollout import pause, resume, rollout_budget, undo, undo_target
from podctl.reconcile.steps import Plan, RecordRollout, RunContainer
from podctl.spec.model import ContainerTemplate, DesiredService, MountSpec, RolloutSpec
from tests.unit.planbuild import container, observed, pod, rolling, stack, template

NOW = 2000.0
R1, R2, R3 = "rev1aaaaaaaa", "rev2bbbbbbbb", "rev3cccccccc"
KEY = rollout_key("shop", "web")


def run(desired, obs, ledger=None, health=None, now=NOW, **kw) -> Plan:  # type: ignore[no-untyped-def]
    return plan([desired], obs, health or {}, ledger or Ledger(), now, **kw)


def old3():  # type: ignore[no-untyped-def]
    return [container("web", i) for i in range(3)]


def test_budget_rounds_surge_up_and_unavailable_down() -> None:
    assert rollout_budget(RolloutSpec(max_surge="25%", max_unavailable="25%"), 10) == (3, 2)
    assert rollout_budget(RolloutSpec(max_surge="10%", max_unavailable="50%"), 3) == (1, 1)
    assert rollout_budget(RolloutSpec(max_surge="100%", max_unavailable=0), 3) == (3, 0)
    # Percentages that resolve to 0 and 0 surge by 1 (literal 0/0 fails validation).
    assert rollout_budget(RolloutSpec(max_surge=0, max_unavailable="10%"), 3) == (1, 0)


def test_surge_percentage_creates_several_at_once() -> None:
    desired = stack(pod(revision=R2, rollout=RolloutSpec(max_surge="50%")))
    assert run(desired, observed(*old3()), rolling()).render() == (
        "[] -> #1 pod:shop/web/0, RunContainer, template changed (revision rev2bb); surge\n"
        "[] -> #2 pod:shop/web/1, RunContainer, template changed (revision rev2bb); surge"
    )


def test_unavailable_percentage_rounds_down_to_in_place_replacements() -> None:
    # 10 replicas, 25% unavailable -> 2 in place; surge 0.
    desired = stack(
        pod(revision=R2, replicas=10, rollout=RolloutSpec(max_surge=0, max_unavailable="25%"))
    )
    obs = observed(*[container("web", i) for i in range(10)])
    text = run(desired, obs, rolling()).render()
    assert text.count("RemoveContainer") == 2
    assert text.count("RunContainer") == 2
    assert "shop-web-0-rev1aa" in text and "shop-web-1-rev1aa" in text


def test_each_step_of_a_rolling_update() -> None:
    desired = stack(pod(revision=R2, replicas=2))
    o0, o1 = container("web", 0), container("web", 1)
    n0 = container("web", 0, revision=R2, started_at=1950.0)
    n1 = container("web", 1, revision=R2, started_at=1960.0)
    # 1. start: recorded, one surge
    p = run(desired, observed(o0, o1))
    assert p.render() == (
        "[] -> #1 rollout:shop/web, RecordRollout,"
        " RolloutStarted: rolling out revision rev2bb (from rev1aa)\n"
        "[] -> #2 pod:shop/web/0, RunContainer, template changed (revision rev2bb); surge"
    )
    ledger = Ledger(rollouts={KEY: p.steps[0].record})  # type: ignore[union-attr]
    ledger = msgspec.structs.replace(ledger)
    # 2. the new replica is available: the old one in its slot goes
    assert run(desired, observed(o0, o1, n0), ledger).render() == (
        "[] -> #1 container:shop-web-0-rev1aa, RemoveContainer,"
        " replaced by shop-web-0-rev2bb (revision rev2bb)"
    )
    # 3. next slot surges
    assert run(desired, observed(o1, n0), ledger).render() == (
        "[] -> #1 pod:shop/web/1, RunContainer, template changed (revision rev2bb); surge"
    )
    p = run(desired, observed(o1, n0), ledger)
    (status,) = p.rollouts
    assert (status.state, status.new_available, status.old_remaining) == ("progressing", 1, 1)
    assert status.message == "1 of 2 new replicas available, 1 old remaining"
    # 4. replaced
    assert run(desired, observed(o1, n0, n1), ledger).render() == (
        "[] -> #1 container:shop-web-1-rev1aa, RemoveContainer,"
        " replaced by shop-web-1-rev2bb (revision rev2bb)"
    )
    # 5. complete: recorded with the revision's template, for a later rollback
    p = run(desired, observed(n0, n1), ledger, now=2100.0)
    assert p.render() == (
        "[] -> #1 rollout:shop/web, RecordRollout,"
        " RolloutComplete: revision rev2bb fully available (2/2) after 1m40s"
    )
    rec = p.steps[0].record  # type: ignore[union-attr]
    assert rec.status == "complete"
    assert [a.revision for a in rec.available] == [R1, R2]
    assert p.rollouts[0].state == "complete"
    # 6. converged
    assert run(desired, observed(n0, n1), Ledger(rollouts={KEY: rec})).render() == ""


def test_a_first_start_is_not_a_rollout() -> None:
    p = run(stack(pod(replicas=2)), observed())
    assert "RecordRollout" not in p.render()
    assert (p.rollouts[0].state, p.rollouts[0].started_at) == ("progressing", None)
    p = run(stack(pod(replicas=2)), observed(container("web", 0), container("web", 1)))
    assert (p.render(), p.rollouts[0].state) == ("", "complete")


def test_ready_floor_waits_for_availability() -> None:
    # surge used up by a new replica that is not ready: nothing else moves.
    desired = stack(pod(revision=R2, readiness=True))
    n0 = container("web", 0, revision=R2, started_at=1990.0)
    obs = observed(*old3(), n0)
    health = {c.id: ContainerHealth(started=True, ready=True) for c in obs.containers}
    health[n0.id] = ContainerHealth(started=True, ready=False)
    p = run(desired, obs, rolling(), health)
    assert p.render() == ""
    assert p.rollouts[0].new_ready == 0


def test_min_ready_holds_the_old_replica_until_it_has_passed() -> None:
    desired = stack(pod(revision=R2, replicas=1, rollout=RolloutSpec(min_ready_s=10.0)))
    o0 = container("web", 0)
    n0 = container("web", 0, revision=R2, started_at=1990.0)
    health = {
        n0.id: ContainerHealth(started=True, ready=True, started_at=1990.0, ready_since=1995.0)
    }
    p = run(desired, observed(o0, n0), rolling(), health)
    assert p.render() == ""
    assert (p.rollouts[0].new_ready, p.rollouts[0].new_available) == (1, 0)
    assert p.requeue_after == 5.0  # ready since 1995 + 10 s
    p = run(desired, observed(o0, n0), rolling(), health, now=2005.0)
    assert p.render() == (
        "[] -> #1 container:shop-web-0-rev1aa, RemoveContainer,"
        " replaced by shop-web-0-rev2bb (revision rev2bb)"
    )


def test_a_proxy_failure_within_min_ready_starts_it_over() -> None:
    desired = stack(pod(revision=R2, replicas=1, rollout=RolloutSpec(min_ready_s=10.0)))
    o0 = container("web", 0)
    n0 = container("web", 0, revision=R2, started_at=1980.0)
    health = {
        n0.id: ContainerHealth(started=True, ready=True, started_at=1980.0, ready_since=1981.0)
    }
    p = run(desired, observed(o0, n0), rolling(), health, backend_failures={n0.id: 1999.0})
    assert p.render() == ""
    assert p.requeue_after == 9.0
    # An old failure (before it was ready) does not count.
    p = run(desired, observed(o0, n0), rolling(), health, backend_failures={n0.id: 1970.0})
    assert "RemoveContainer" in p.render()


def test_a_restart_starts_min_ready_over() -> None:
    desired = stack(pod(revision=R2, replicas=1, rollout=RolloutSpec(min_ready_s=30.0)))
    o0 = container("web", 0)
    n0 = container("web", 0, revision=R2, started_at=1995.0)  # restarted at 1995
    health = {
        n0.id: ContainerHealth(started=True, ready=True, started_at=1995.0, ready_since=1995.0)
    }
    p = run(desired, observed(o0, n0), rolling(), health)
    assert p.render() == "" and p.requeue_after == 25.0


def test_an_edit_mid_rollout_rolls_forward_to_the_newest() -> None:
    # rev1 -> rev2 was under way (slot 0 had both); the file now says rev3.
    desired = stack(pod(revision=R3))
    o0, o1, o2 = old3()
    mid = container("web", 0, revision=R2, started_at=1950.0)
    p = run(desired, observed(o0, o1, o2, mid), rolling())
    assert p.render() == (
        "[] -> #1 rollout:shop/web, RecordRollout,"
        " RolloutStarted: rolling out revision rev3cc (from rev1aa; supersedes rev2bb)\n"
        "[] -> #2 container:shop-web-0-rev1aa, RemoveContainer,"
        " superseded mid-rollout (revision rev1aa)\n"
        "[] -> #3 pod:shop/web/0, RunContainer, template changed (revision rev3cc); surge"
    )
    rec = p.steps[0].record  # type: ignore[union-attr]
    assert (rec.revision, rec.from_revision) == (R3, R1)
    # rev2 is an old revision like rev1: rolled within the same budget.
    led = Ledger(rollouts={KEY: rec})
    assert run(desired, observed(o1, o2, mid), led).render() == (
        "[] -> #1 pod:shop/web/0, RunContainer, template changed (revision rev3cc); surge"
    )


def test_recreate_stops_every_old_replica_first() -> None:
    desired = stack(pod(revision=R2, replicas=2, rollout=RolloutSpec(strategy="recreate")))
    o0, o1 = container("web", 0), container("web", 1)
    p = run(desired, observed(o0, o1), rolling())
    assert p.render() == (
        "[] -> #1 container:shop-web-0-rev1aa, RemoveContainer,"
        " template changed (revision rev2bb); recreate\n"
        "[] -> #2 container:shop-web-1-rev1aa, RemoveContainer,"
        " template changed (revision rev2bb); recreate"
    )
    # Still stopping (grace): nothing new yet.
    p = run(desired, observed(o0, o1), rolling(), busy={o0.id: "removing", o1.id: "removing"})
    assert p.render() == ""
    assert {s.reason for s in p.status if s.phase == "Pending"} == {
        "Recreating: waiting for the old replicas to stop"
    }
    # Gone: the new ones start.
    assert run(desired, observed(), rolling()).render() == (
        "[] -> #1 pod:shop/web/0, RunContainer, missing\n"
        "[] -> #2 pod:shop/web/1, RunContainer, missing"
    )


def test_the_deadline_fails_the_rollout_and_rolls_back() -> None:
    desired = stack(pod(revision=R2, readiness=True))
    n0 = container("web", 0, revision=R2, started_at=1950.0)
    obs = observed(*old3(), n0)
    health = {c.id: ContainerHealth(started=True, ready=True) for c in obs.containers}
    health[n0.id] = ContainerHealth(started=True, ready=False)
    ledger = rolling(started_at=1000.0)
    before = run(desired, obs, ledger, health, now=1599.0)
    assert before.render() == "" and before.requeue_after == 1.0
    assert before.rollouts[0].deadline_at == 1600.0
    p = run(desired, obs, ledger, health, now=1600.0)
    assert p.render() == (
        "[] -> #1 rollout:shop/web, RecordRollout, RolloutFailed: revision rev2bb not fully"
        " available within 10m (0/3 available): ProgressDeadlineExceeded\n"
        "[1] -> #2 rollout:shop/web, RecordRollout, RolledBack: rolled back to revision rev1aa:"
        " revision rev2bb not fully available within 10m (0/3 available):"
        " ProgressDeadlineExceeded\n"
        "[] -> #3 container:shop-web-0-rev2bb, RemoveContainer,"
        " replaced by shop-web-0-rev1aa (revision rev1aa)"
    )
    assert p.rollouts[0].state == "rolled-back"
    assert "rolled back" in p.rollouts[0].message


def test_crash_looping_new_revision_fails_after_the_window_with_a_long_deadline() -> None:
    spec = RolloutSpec(progress_deadline_s=3600.0)  # window: min(1h, 3 x 5m) = 15m
    desired = stack(pod(revision=R2, rollout=spec))
    dead = container(
        "web", 0, revision=R2, state="exited", exit_code=1, started_at=1990.0, finished_at=1995.0
    )
    obs = observed(*old3(), dead)
    ledger = rolling(started_at=1000.0)
    ledger.restarts[dead.id] = RestartRecord(restarts=9, backoff_level=9, last_restart_at=1990.0)
    p = run(desired, obs, ledger)
    assert p.render() == ("[] -> #1 rollout:shop/web, RecordRollout, every new replica is failing")
    streak = p.steps[0].record  # type: ignore[union-attr]
    assert streak.failing_since == NOW
    assert p.requeue_after == 295.0  # its back-off (300 s from 1995) ends before the window
    led = Ledger(rollouts={KEY: streak}, restarts=ledger.restarts)
    p = run(desired, obs, led, now=2900.0)
    lines = p.render().splitlines()
    assert lines[0] == (
        "[] -> #1 rollout:shop/web, RecordRollout, RolloutFailed: revision rev2bb every new"
        " replica failing for 15m: crash loop (exit code 1)"
    )
    assert lines[1].startswith("[1] -> #2 rollout:shop/web, RecordRollout, RolledBack: rolled back")
    # The old replicas were never touched; the crash-looping new one is replaced.
    assert "shop-web-0-rev2bb, RemoveContainer" in lines[2]
    assert not any("rev1aa, RemoveContainer" in line for line in lines)


def test_a_replica_that_recovers_ends_the_streak() -> None:
    spec = RolloutSpec(progress_deadline_s=3600.0)
    desired = stack(pod(revision=R2, rollout=spec))
    n0 = container("web", 0, revision=R2, started_at=1990.0)
    ledger = rolling(started_at=1000.0, failing_since=1500.0)
    p = run(desired, observed(*old3(), n0), ledger)
    assert p.render().startswith(
        "[] -> #1 rollout:shop/web, RecordRollout, a new replica is no longer failing"
    )


def test_with_the_default_deadline_the_deadline_decides() -> None:
    # Rule 2's window is min(10m, 15m) = the deadline: no streak is even tracked.
    desired = stack(pod(revision=R2))
    dead = container("web", 0, revision=R2, state="exited", exit_code=1, finished_at=1999.0)
    p = run(desired, observed(*old3(), dead), rolling())
    assert "RecordRollout" not in p.render()


def test_rollback_target_skips_failed_revisions() -> None:
    desired = stack(pod(revision=R3, readiness=True, replicas=1))
    n0 = container("web", 0, revision=R3, started_at=1950.0)
    o0 = container("web", 0, revision=R2)
    history = (
        AvailableRevision(revision=R1, template=template("img:1"), at=100.0),
        AvailableRevision(revision=R2, template=template("img:2"), at=200.0),
    )
    ledger = rolling(R3, from_revision=R2, started_at=1000.0, available=history, failed=(R2,))
    health = {o0.id: ContainerHealth(started=True, ready=True)}
    p = run(desired, observed(o0, n0), ledger, health)
    assert "RolledBack: rolled back to revision rev1aa" in p.render()
    assert p.steps[-1].template == template("img:1")  # type: ignore[union-attr]
    rb = p.steps[1].record  # type: ignore[union-attr]
    assert rb.failed == (R2, R3)
    assert undo_target(rb, R1) is None  # nothing else fully available and not failed


def test_no_rollback_without_auto_rollback_and_the_failed_revision_is_held() -> None:
    spec = RolloutSpec(auto_rollback=False)
    desired = stack(pod(revision=R2, readiness=True, rollout=spec))
    n0 = container("web", 0, revision=R2, started_at=1950.0)
    obs = observed(*old3(), n0)
    health = {c.id: ContainerHealth(started=True, ready=True) for c in obs.containers}
    health[n0.id] = ContainerHealth(started=True, ready=False)
    p = run(desired, obs, rolling(started_at=1000.0), health)
    assert p.render() == (
        "[] -> #1 rollout:shop/web, RecordRollout, RolloutFailed: revision rev2bb not fully"
        " available within 10m (0/3 available): ProgressDeadlineExceeded;"
        " not rolled back: auto_rollback is off"
    )
    failed = Ledger(rollouts={KEY: p.steps[0].record})  # type: ignore[union-attr]
    # Not retried: even once the new replica is ready, no replacement goes on.
    health[n0.id] = ContainerHealth(started=True, ready=True)
    p = run(desired, obs, failed, health, now=3000.0)
    assert p.render() == ""
    assert p.rollouts[0].state == "failed"
    assert {s.reason for s in p.status if s.revision == R1} == {"rollout failed"}


def test_the_override_holds_until_the_file_changes() -> None:
    desired = stack(pod(revision=R2, replicas=1, readiness=True))
    n0 = container("web", 0, revision=R2, started_at=1950.0)
    o0 = container("web", 0)
    health = {o0.id: ContainerHealth(started=True, ready=True)}
    p = run(desired, observed(o0, n0), rolling(started_at=1000.0), health)
    rb = Ledger(rollouts={KEY: p.steps[1].record})  # type: ignore[union-attr]
    # Back at rev1 (the override), with the file still at rev2: nothing moves.
    p = run(desired, observed(o0), rb, health)
    assert p.render() == (
        "[] -> #1 rollout:shop/web, RecordRollout,"
        " RolloutComplete: revision rev1aa fully available (1/1) after 0s"
    )
    done = Ledger(rollouts={KEY: p.steps[0].record})  # type: ignore[union-attr]
    p = run(desired, observed(o0), done, health)
    assert p.render() == ""
    assert (p.rollouts[0].state, p.rollouts[0].override) == ("rolled-back", "rollback")
    # The file changes (rev3): the override is released and rev3 rolls out.
    p = run(stack(pod(revision=R3, replicas=1, readiness=True)), observed(o0), done, health)
    assert p.render().splitlines()[0] == (
        "[] -> #1 rollout:shop/web, RecordRollout,"
        " RolloutStarted: rolling out revision rev3cc (from rev1aa)"
    )
    rec = p.steps[0].record  # type: ignore[union-attr]
    assert rec.override is None and rec.failed == (R2,)


def test_pause_holds_replacement_but_not_upkeep() -> None:
    desired = stack(pod(revision=R2))
    ledger = rolling()
    pause(ledger, "shop", desired.pods[0], now=1950.0)
    dead = container("web", 1, state="exited", exit_code=1, started_at=1900.0, finished_at=1990.0)
    obs = observed(container("web", 0), dead, container("web", 2))
    p = run(desired, obs, ledger)
    assert p.render() == (
        "[] -> #1 pod:shop/web/1, StartContainer, exit code 1; restart after back-off 1s"
    )
    assert p.rollouts[0].state == "paused"
    resume(ledger, "shop", "web", now=2000.0)
    assert ledger.rollouts[KEY].started_at == 2000.0  # the deadline runs from the resume
    assert "surge" in run(desired, obs, ledger).render()


def test_undo_runs_the_chosen_revision_until_the_file_changes() -> None:
    desired = stack(pod(revision=R2, replicas=1))
    n0 = container("web", 0, revision=R2)
    ledger = rolling(status="complete")
    rec = ledger.rollouts[KEY]
    back = undo_target(
        msgspec.structs.replace(
            rec,
            available=(*rec.available, AvailableRevision(revision=R2, template=None, at=1.0)),
        ),
        R2,
    )
    assert back is not None and back.revision == R1 and back.template is not None
    undo(ledger, "shop", desired.pods[0], revision=back.revision, template=back.template, now=NOW)
    p = run(desired, observed(n0), ledger)
    assert p.render() == (
        "[] -> #1 rollout:shop/web, RecordRollout,"
        " RolloutStarted: rolling out revision rev1aa (from rev2bb; undo)\n"
        "[] -> #2 pod:shop/web/0, RunContainer, rollout override (revision rev1aa); surge"
    )
    assert p.rollouts[0].override == "undo"
    run_step = p.steps[1]
    assert (run_step.revision, run_step.template) == (R1, template())  # type: ignore[union-attr]


def test_apply_records_the_rollout_and_emits_its_event() -> None:
    import anyio

    from podctl.reconcile.apply import ApplyContext, apply

    events: list[tuple[str, str, str, str]] = []
    p = run(stack(pod(revision=R2)), observed(*old3()))
    rec_step = p.steps[0]
    assert isinstance(rec_step, RecordRollout)
    ledger = Ledger()
    ctx = ApplyContext(
        runtime=None,  # type: ignore[arg-type]
        stacks={},
        ledger=ledger,
        clock=lambda: NOW,
        on_event=lambda *e: events.append(e),
    )
    anyio.run(apply, Plan(steps=(rec_step,)), ctx)
    assert ledger.rollouts[KEY] == rec_step.record
    assert events == [
        ("shop", "rollout:shop/web", "RolloutStarted", "rolling out revision rev2bb (from rev1aa)")
    ]
    # It survives the state directory's JSON round trip.
    again = msgspec.json.decode(msgspec.json.encode(ledger), type=Ledger)
    assert again.rollouts[KEY] == rec_step.record


def _with_config_mount(name: str = "app.conf") -> ContainerTemplate:
    mount = MountSpec(kind="config", source=name, target="/etc/app.conf")
    return msgspec.structs.replace(template(readiness=True), mounts=(mount,))


def test_rollback_skips_a_revision_whose_config_left_the_stack() -> None:
    """A rollback target must be runnable as the stack is now: R1 mounted a config the
    stack no longer has, so R0 (older, runnable) is chosen; with none, no rollback."""
    desired = stack(pod(revision=R2, readiness=True))
    n0 = container("web", 0, revision=R2, started_at=1950.0)
    obs = observed(*old3(), n0)
    health = {c.id: ContainerHealth(started=True, ready=True) for c in obs.containers}
    health[n0.id] = ContainerHealth(started=True, ready=False)
    r0 = AvailableRevision(revision="rev0zzzzzzzz", template=template(readiness=True), at=500.0)
    r1 = AvailableRevision(revision=R1, template=_with_config_mount(), at=1000.0)
    p = run(desired, obs, rolling(started_at=1000.0, available=(r0, r1)), health, now=1600.0)
    assert "RolledBack: rolled back to revision rev0zz" in p.render()
    p = run(desired, obs, rolling(started_at=1000.0, available=(r1,)), health, now=1600.0)
    (failed,) = p.steps
    assert "not rolled back: no fully available revision" in failed.cause


def test_an_override_that_cannot_run_holds_and_creates_nothing() -> None:
    """An undo to R1 (which mounts a config) made while the stack had the config; the
    config then leaves the stack with the pod's entry unchanged: the override holds,
    but no replica of it is created and the running ones stay, with the reason shown."""
    desired = stack(pod(revision=R2, replicas=2))
    ledger = rolling(status="complete")
    undo(ledger, "shop", desired.pods[0], revision=R1, template=_with_config_mount(), now=NOW)
    obs = observed(container("web", 0, revision=R2), container("web", 1, revision=R2))
    p = run(desired, obs, ledger)
    assert p.render() == (
        "[] -> #1 rollout:shop/web, RecordRollout,"
        " RolloutStarted: rolling out revision rev1aa (from rev2bb; undo)"
    )
    msg = "rollout override cannot run: config app.conf is no longer in the stack"
    assert p.rollouts[0].message == msg
    assert {s.reason for s in p.status} == {msg}
    # A lost replica is not recreated from the override either: pending, with the reason.
    p = run(desired, observed(container("web", 0, revision=R2)), ledger)
    assert not any(isinstance(s, RunContainer) for s in p.steps)
    assert [(s.replica, s.phase, s.reason) for s in p.status if s.container_id is None] == [
        (1, "Pending", msg)
    ]


def test_old_replicas_no_probe_has_answered_for_yet_are_not_replaced_at_once() -> None:
    # podctl restarted mid-rollout (SIGKILL): every replica is probed afresh, so none
    # is ready yet. A failing old replica is replaced at once, but one no probe has
    # answered for is not known to fail: replacing it too would take them all down.
    desired = stack(pod(revision=R2, readiness=True))
    obs = observed(*old3())
    fresh = {
        c.id: ContainerHealth(started=True, ready=False, started_at=c.started_at)
        for c in obs.containers
    }
    assert run(desired, obs, rolling(), fresh).render() == (
        "[] -> #1 pod:shop/web/0, RunContainer, template changed (revision rev2bb); surge"
    )
    # Its first answer says it fails: now it goes at once (the surge moves on).
    failed = ProbeResult(probe="readiness", ok=False, at=NOW, message="HTTP 500")
    failing = dict(fresh)
    failing["web0rev1"] = msgspec.structs.replace(fresh["web0rev1"], last=(failed,))
    assert run(desired, obs, rolling(), failing).render() == (
        "[] -> #1 container:shop-web-0-rev1aa, RemoveContainer,"
        " template changed (revision rev2bb); old not ready\n"
        "[1] -> #2 pod:shop/web/0, RunContainer, template changed (revision rev2bb)\n"
        "[] -> #3 pod:shop/web/1, RunContainer, template changed (revision rev2bb); surge"
    )


def test_a_revision_superseded_before_it_was_available_is_no_rollback_target() -> None:
    # rev1 ran; rev2's rollout was interrupted by the edit to rev3 (one rev2 replica
    # up, not yet available); rev3 then misses its deadline: back to rev1, never to
    # rev2, which was never fully available.
    o0, o1, o2 = old3()
    p = run(stack(pod(revision=R2)), observed(o0, o1, o2), templates={R1: template()})
    led = Ledger(rollouts={KEY: p.steps[0].record})  # type: ignore[union-attr]
    mid = container("web", 0, revision=R2, started_at=1950.0)
    desired = stack(pod(revision=R3, readiness=True))
    p = run(desired, observed(o0, o1, o2, mid), led)
    rec3 = p.steps[0].record  # type: ignore[union-attr]
    assert (rec3.revision, rec3.from_revision) == (R3, R1)
    assert [a.revision for a in rec3.available] == [R1]
    n0 = container("web", 0, revision=R3, started_at=1960.0)
    obs = observed(o1, o2, mid, n0)
    health = {c.id: ContainerHealth(started=True, ready=True) for c in (o1, o2, mid)}
    health[n0.id] = ContainerHealth(started=True, ready=False)
    late = NOW + 600.0
    p = run(desired, obs, Ledger(rollouts={KEY: rec3}), health, now=late)
    lines = p.render().splitlines()
    assert lines[1].startswith(
        "[1] -> #2 rollout:shop/web, RecordRollout, RolledBack: rolled back to revision rev1aa"
    )
    # Slot 0 now holds two old revisions: the failed one goes, the ready rev2 serves
    # until a rev1 replica is available in its place.
    assert lines[2:] == [
        "[] -> #3 container:shop-web-0-rev3cc, RemoveContainer,"
        " superseded mid-rollout (revision rev3cc)",
        "[] -> #4 pod:shop/web/0, RunContainer, rollout override (revision rev1aa); surge",
    ]
    assert p.rollouts[0].revision == R1


def test_planner_and_router_agree_on_an_old_revision_without_probes() -> None:
    # rev1 had no probes; the file's rev2 adds a readiness probe. The prober records
    # rev1's replicas as ready (probed with their own template: none), and both the
    # planner and the routing tables read that one entry: they stay ready and routed,
    # rather than being judged by a probe they never had.
    svc = DesiredService(stack="shop", name="web", pod="web", target_port=8080, port=18080)
    desired = msgspec.structs.replace(stack(pod(revision=R2, readiness=True)), services=(svc,))
    obs = observed(*old3())
    seeded = {
        c.id: ContainerHealth(started=True, ready=True, started_at=c.started_at)
        for c in obs.containers
    }
    p = run(desired, obs, rolling(), seeded)
    assert p.render() == (
        "[] -> #1 pod:shop/web/0, RunContainer, template changed (revision rev2bb); surge"
    )
    planner_ready = {s.container_id for s in p.status if s.ready}
    tables = routing_tables([desired], to_backends(p.status), seeded)
    routed = {e.key for e in tables["shop/web"]}
    assert routed == planner_ready == {c.id for c in obs.containers}
