"""Golden plan tests: desired + observed literals in, rendered plan text out."""

from __future__ import annotations

import msgspec

from podctl.health.model import ContainerHealth
from podctl.reconcile.ledger import Ledger, PullFailure, RestartRecord
from podctl.reconcile.plan import BusyKind, plan, plan_teardown, rollout_budget
from podctl.spec.model import RolloutSpec
from tests.unit.planbuild import container, observed, pod, rolling, stack

NOW = 2000.0


def render(desired, obs, health=None, ledger=None, now=NOW) -> str:
    return plan([desired], obs, health or {}, ledger or Ledger(), now).render()


def test_fresh_stack_creates_network_then_replicas() -> None:
    # A container's spec names the network's gateway (in-stack discovery), so the
    # replicas wait one pass for the network.
    desired = stack(pod(replicas=2))
    first = plan([desired], observed(network=False), {}, Ledger(), NOW)
    assert first.render() == "[] -> #1 network:podctl_shop, CreateNetwork, not found"
    assert [s.reason for s in first.status] == ["NetworkCreating", "NetworkCreating"]
    assert render(desired, observed()) == (
        "[] -> #1 pod:shop/web/0, RunContainer, missing\n"
        "[] -> #2 pod:shop/web/1, RunContainer, missing"
    )


def test_converged_stack_plans_nothing() -> None:
    obs = observed(container("web", 0), container("web", 1), container("web", 2))
    assert render(stack(pod()), obs) == ""


def test_scale_up_creates_only_missing_replicas() -> None:
    obs = observed(container("web", 0))
    assert render(stack(pod(replicas=3)), obs) == (
        "[] -> #1 pod:shop/web/1, RunContainer, missing\n"
        "[] -> #2 pod:shop/web/2, RunContainer, missing"
    )


def test_scale_down_removes_highest_replicas() -> None:
    obs = observed(container("web", 0), container("web", 1), container("web", 2))
    assert render(stack(pod(replicas=1)), obs) == (
        "[] -> #1 container:shop-web-1-rev1aa, RemoveContainer, scaled down to 1\n"
        "[] -> #2 container:shop-web-2-rev1aa, RemoveContainer, scaled down to 1"
    )


def test_pod_removed_from_file_is_removed() -> None:
    obs = observed(container("web", 0), container("old", 0))
    assert render(stack(pod(replicas=1)), obs) == (
        "[] -> #1 container:shop-old-0-rev1aa, RemoveContainer, pod no longer in the stack file"
    )


def test_other_stacks_and_unlabelled_containers_are_untouched() -> None:
    foreign = container("web", 0, stack="other")
    obs = observed(container("web", 0), foreign)
    assert render(stack(pod(replicas=1)), obs) == ""


def test_missing_image_is_pulled_before_containers() -> None:
    text = render(stack(pod(replicas=1)), observed(images=()))
    assert text == (
        "[] -> #1 image:busybox:1.36, PullImage, image not present\n"
        "[1] -> #2 pod:shop/web/0, RunContainer, missing"
    )


def test_failed_pull_waits_with_backoff_and_shows_reason() -> None:
    ledger = Ledger(
        pull_failures={
            "busybox:1.36": PullFailure(attempts=1, last_at=NOW - 1, message="no such image")
        }
    )
    p = plan([stack(pod(replicas=1))], observed(images=()), {}, ledger, NOW)
    assert p.render() == ""
    assert p.status[0].phase == "Pending"
    assert p.status[0].reason == "ImagePullError: no such image"
    assert p.requeue_after == 1.0  # first retry 2 s after the failure
    later = plan([stack(pod(replicas=1))], observed(images=()), {}, ledger, NOW + 1.5)
    assert "PullImage, image not present (retry 2)" in later.render()


def test_changed_template_rolls_one_slot_at_a_time_with_surge() -> None:
    obs = observed(container("web", 0), container("web", 1), container("web", 2))
    desired = stack(pod(revision="rev2bbbbbbbb"))
    assert render(desired, obs) == (
        "[] -> #1 rollout:shop/web, RecordRollout,"
        " RolloutStarted: rolling out revision rev2bb (from rev1aa)\n"
        "[] -> #2 pod:shop/web/0, RunContainer, template changed (revision rev2bb); surge"
    )
    # The rollout is recorded: the next pass goes on without starting it again.
    assert render(desired, obs, ledger=rolling()) == (
        "[] -> #1 pod:shop/web/0, RunContainer, template changed (revision rev2bb); surge"
    )


def test_old_replica_removed_once_replacement_is_ready() -> None:
    obs = observed(
        container("web", 0),
        container("web", 0, revision="rev2bbbbbbbb", started_at=1500.0),
        container("web", 1),
        container("web", 2),
    )
    desired = stack(pod(revision="rev2bbbbbbbb"))
    assert render(desired, obs, ledger=rolling()) == (
        "[] -> #1 container:shop-web-0-rev1aa, RemoveContainer, replaced by shop-web-0-rev2bb"
        " (revision rev2bb)"
    )


def test_old_replica_kept_while_replacement_not_ready() -> None:
    new = container("web", 0, revision="rev2bbbbbbbb", started_at=1500.0)
    obs = observed(container("web", 0), new, container("web", 1), container("web", 2))
    desired = stack(pod(revision="rev2bbbbbbbb", readiness=True))
    health = {c.id: ContainerHealth(started=True, ready=True) for c in obs.containers}
    health[new.id] = ContainerHealth(started=True, ready=False, message="HTTP 503")
    assert render(desired, obs, health, ledger=rolling()) == ""


def test_max_unavailable_allows_in_place_replacement() -> None:
    obs = observed(container("web", 0), container("web", 1), container("web", 2))
    desired = stack(
        pod(revision="rev2bbbbbbbb", rollout=RolloutSpec(max_surge=0, max_unavailable=1))
    )
    assert render(desired, obs, ledger=rolling()) == (
        "[] -> #1 container:shop-web-0-rev1aa, RemoveContainer,"
        " template changed (revision rev2bb)\n"
        "[1] -> #2 pod:shop/web/0, RunContainer, template changed (revision rev2bb)"
    )


def test_rollout_budget_rounds_like_kubernetes() -> None:
    assert rollout_budget(RolloutSpec(max_surge="25%", max_unavailable="25%"), 10) == (3, 2)
    assert rollout_budget(RolloutSpec(max_surge=0, max_unavailable=0), 3) == (1, 0)


def test_crashed_container_restarts_after_first_backoff() -> None:
    dead = container("web", 0, state="exited", exit_code=1, started_at=1990.0, finished_at=1999.5)
    desired = stack(pod(replicas=1))
    waiting = plan([desired], observed(dead), {}, Ledger(), NOW)
    assert waiting.render() == ""
    assert waiting.status[0].phase == "CrashLoopBackOff"
    assert waiting.status[0].reason == "back-off 1s restarting failed container (exit code 1)"
    assert waiting.requeue_after == 0.5
    due = plan([desired], observed(dead), {}, Ledger(), 2000.5)
    assert due.render() == (
        "[] -> #1 pod:shop/web/0, StartContainer, exit code 1; restart after back-off 1s"
    )


def test_crash_backoff_doubles_and_caps() -> None:
    dead = container("web", 0, state="exited", exit_code=1, started_at=1990.0, finished_at=1999.0)
    desired = stack(pod(replicas=1))
    delays = []
    for level in range(0, 12):
        ledger = Ledger(restarts={dead.id: RestartRecord(restarts=level, backoff_level=level)})
        p = plan([desired], observed(dead), {}, ledger, 1999.0)
        delays.append(p.requeue_after)
    assert delays[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert delays[-1] == 300.0


def test_backoff_resets_after_ten_minutes_of_running() -> None:
    dead = container("web", 0, state="exited", exit_code=1, started_at=1000.0, finished_at=1700.0)
    ledger = Ledger(restarts={dead.id: RestartRecord(restarts=7, backoff_level=7)})
    p = plan([stack(pod(replicas=1))], observed(dead), {}, ledger, 1700.0)
    assert p.requeue_after == 1.0
    assert p.status[0].restarts == 7


def test_restart_policy_never_and_on_failure() -> None:
    ok = container("job", 0, state="exited", exit_code=0, finished_at=1500.0)
    p = plan([stack(pod("job", replicas=1, restart="on-failure"))], observed(ok), {}, Ledger(), NOW)
    assert p.render() == ""
    assert p.status[0].phase == "Succeeded"
    bad = container("job", 0, state="exited", exit_code=3, finished_at=1500.0)
    p = plan([stack(pod("job", replicas=1, restart="never"))], observed(bad), {}, Ledger(), NOW)
    assert p.render() == ""
    assert p.status[0].phase == "Failed"


def test_liveness_failure_kills_container() -> None:
    c = container("web", 0)
    health = {
        c.id: ContainerHealth(
            started=True,
            ready=False,
            restart_reason="LivenessFailed",
            message="HTTP 500",
            started_at=1000.0,
        )
    }
    p = plan([stack(pod(replicas=1))], observed(c), health, Ledger(), NOW)
    assert p.render() == "[] -> #1 pod:shop/web/0, KillContainer, liveness probe failed: HTTP 500"
    assert p.status[0].reason == "LivenessFailed"


def test_health_of_an_earlier_run_is_ignored() -> None:
    c = container("web", 0, started_at=1900.0)
    health = {
        c.id: ContainerHealth(
            started=True, ready=False, restart_reason="LivenessFailed", started_at=1000.0
        )
    }
    assert render(stack(pod(replicas=1)), observed(c), health) == ""


def test_dependency_not_ready_holds_creation() -> None:
    desired = stack(
        pod("db", replicas=1, readiness=True), pod("api", replicas=1, depends_on=("db",))
    )
    db = container("db", 0)
    p = plan(
        [desired], observed(db), {db.id: ContainerHealth(started=True, ready=False)}, Ledger(), NOW
    )
    assert p.render() == ""
    api = next(s for s in p.status if s.pod == "api")
    assert (api.phase, api.reason) == ("Pending", "WaitingFor db")
    p = plan(
        [desired], observed(db), {db.id: ContainerHealth(started=True, ready=True)}, Ledger(), NOW
    )
    assert p.render() == "[] -> #1 pod:shop/api/0, RunContainer, missing"


def test_admission_by_host_cpu() -> None:
    desired = stack(pod(replicas=3, cpus=0.75))
    p = plan([desired], observed(ncpu=2), {}, Ledger(), NOW)
    assert p.render().count("RunContainer") == 2
    pending = [s for s in p.status if s.reason == "Insufficient cpu"]
    assert len(pending) == 1 and pending[0].replica == 2


def test_adoption_of_running_containers_plans_nothing() -> None:
    # After a podctl restart the same containers are observed: nothing is recreated.
    obs = observed(container("web", 0), container("web", 1), container("web", 2))
    p = plan([stack(pod())], obs, {}, Ledger(), NOW)
    assert p.render() == ""
    assert {s.container_id for s in p.status} == {c.id for c in obs.containers}
    assert all(s.phase == "Running" and s.ready for s in p.status)


def test_duplicate_replicas_are_reduced_to_one() -> None:
    a = container("web", 0, cid="aaa", started_at=1000.0)
    b = container("web", 0, cid="bbb", started_at=1100.0)
    p = plan([stack(pod(replicas=1))], observed(a, b), {}, Ledger(), NOW)
    assert p.render() == "[] -> #1 container:shop-web-0-rev1aa, RemoveContainer, duplicate replica"
    assert p.steps[0].container_id == "aaa"  # type: ignore[union-attr]


def test_teardown_removes_network_after_containers() -> None:
    obs = observed(container("web", 0), container("web", 1))
    assert plan_teardown("shop", obs).render() == (
        "[] -> #1 container:shop-web-0-rev1aa, RemoveContainer, stack is going down\n"
        "[] -> #2 container:shop-web-1-rev1aa, RemoveContainer, stack is going down\n"
        "[1,2] -> #3 network:podctl_shop, RemoveNetwork, stack is going down"
    )


def test_long_steps_under_way_are_not_planned_again() -> None:
    old = container("web", 0)
    # Its removal (grace period) is still running: a replacement may be created.
    p = plan(
        [stack(pod(replicas=1, revision="rev2bbbbbbbb"))],
        observed(old),
        {},
        rolling(),
        NOW,
        busy={old.id: "removing"},
    )
    assert p.render() == "[] -> #1 pod:shop/web/0, RunContainer, missing"
    assert [s.phase for s in p.status if s.container_id == old.id] == ["Terminating"]
    # A liveness kill under way: no second kill, no restart yet.
    health = {old.id: ContainerHealth(started=True, ready=False, restart_reason="LivenessFailed")}
    p = plan(
        [stack(pod(replicas=1))], observed(old), health, Ledger(), NOW, busy={old.id: "killing"}
    )
    assert p.render() == ""
    # A pull under way: nothing pulls twice, the pod waits.
    p = plan(
        [stack(pod(replicas=1))],
        observed(images=()),
        {},
        Ledger(),
        NOW,
        busy={"image:busybox:1.36": "pulling"},
    )
    assert p.render() == ""
    assert p.status[0].reason == "Pulling image"
    # The pull holds up only the containers that need its image, not the stack's network.
    p = plan(
        [stack(pod(replicas=1))],
        observed(images=(), network=False),
        {},
        Ledger(),
        NOW,
        busy={"image:busybox:1.36": "pulling"},
    )
    assert p.render() == "[] -> #1 network:podctl_shop, CreateNetwork, not found"
    # Containers wait for the network first (their spec names its gateway).
    assert [(s.phase, s.reason) for s in p.status] == [("Pending", "NetworkCreating")]


def test_replica_recreated_while_its_namesake_is_removed_gets_a_free_name() -> None:
    # Scaled down to 2 and straight back to 3: shop-web-2-rev1aa is still being
    # stopped and removed, so its name is still taken; the new replica must not
    # be created under it (the engine would answer `Conflict: name already in use`).
    going = container("web", 2, cid="going")
    obs = observed(container("web", 0), container("web", 1), going)
    p = plan([stack(pod(replicas=3))], obs, {}, Ledger(), NOW, busy={"going": "removing"})
    assert p.render() == "[] -> #1 pod:shop/web/2, RunContainer, missing"
    assert p.steps[0].name == "shop-web-2-rev1aa-2"  # type: ignore[union-attr]
    assert [(s.name, s.phase) for s in p.status if s.replica == 2] == [
        ("shop-web-2-rev1aa", "Terminating"),
        ("shop-web-2-rev1aa-2", "Pending"),
    ]
    # Both names still taken (down and up twice in a row): the next free one, the
    # same for the same snapshot.
    also_going = container("web", 2, cid="going2")
    also_going = msgspec.structs.replace(also_going, name="shop-web-2-rev1aa-2")
    obs = observed(container("web", 0), container("web", 1), going, also_going)
    busy: dict[str, BusyKind] = {"going": "removing", "going2": "removing"}
    names = {
        plan([stack(pod(replicas=3))], obs, {}, Ledger(), NOW, busy=busy).steps[0].name  # type: ignore[union-attr]
        for _ in range(3)
    }
    assert names == {"shop-web-2-rev1aa-3"}


def test_fresh_replicas_keep_their_plain_names() -> None:
    p = plan([stack(pod(replicas=2))], observed(), {}, Ledger(), NOW)
    assert [s.name for s in p.steps] == ["shop-web-0-rev1aa", "shop-web-1-rev1aa"]  # type: ignore[union-attr]


def test_backoff_of_a_long_delay_reads_in_minutes_and_seconds() -> None:
    dead = container("web", 0, state="exited", exit_code=1, started_at=1990.0, finished_at=1999.0)
    ledger = Ledger(restarts={dead.id: RestartRecord(restarts=8, backoff_level=8)})
    p = plan([stack(pod(replicas=1))], observed(dead), {}, ledger, NOW)
    assert p.status[0].reason == "back-off 4m16s restarting failed container (exit code 1)"
    due = plan([stack(pod(replicas=1))], observed(dead), {}, ledger, 1999.0 + 256)
    assert due.render() == (
        "[] -> #1 pod:shop/web/0, StartContainer, exit code 1; restart after back-off 4m16s"
    )


def test_backoff_runs_from_the_restart_when_the_snapshot_shows_an_older_exit() -> None:
    # podctl restarted the container at 1009.5, after an 8 s back-off for the exit at
    # 1000 (level 3 -> 4). It crashed again at once, with the same exit code, and the
    # snapshot still shows the exit at 1000 (a lagging engine, or an inspect reused
    # because the list looked unchanged). The 16 s back-off runs from the restart:
    # not due 16 s after the old exit, i.e. some 6 s after the new crash.
    stale = container("web", 0, state="exited", exit_code=3, started_at=999.8, finished_at=1000.0)
    ledger = Ledger(
        restarts={
            stale.id: RestartRecord(
                restarts=4, backoff_level=4, last_restart_at=1009.5, last_exit_code=3
            )
        }
    )
    desired = stack(pod(replicas=1))
    early = plan([desired], observed(stale), {}, ledger, 1016.0)
    assert early.render() == ""
    assert early.status[0].phase == "CrashLoopBackOff"
    assert early.status[0].reason == "back-off 16s restarting failed container (exit code 3)"
    assert early.requeue_after == 9.5
    due = plan([desired], observed(stale), {}, ledger, 1025.5)
    assert due.render() == (
        "[] -> #1 pod:shop/web/0, StartContainer, exit code 3; restart after back-off 16s"
    )
    assert due.steps[0].backoff_level == 5  # type: ignore[union-attr]


def test_an_exit_after_the_last_restart_is_dated_by_the_engine() -> None:
    # The usual case: the snapshot's exit came after podctl's restart.
    dead = container("web", 0, state="exited", exit_code=3, started_at=1009.6, finished_at=1010.0)
    ledger = Ledger(
        restarts={dead.id: RestartRecord(restarts=4, backoff_level=4, last_restart_at=1009.5)}
    )
    p = plan([stack(pod(replicas=1))], observed(dead), {}, ledger, 1012.0)
    assert p.requeue_after == 14.0  # 1010 + 16 - 1012


def test_stale_exit_of_a_long_run_does_not_reset_the_backoff() -> None:
    # The old run lasted 20 min, but it is not the run that just ended (restarted
    # since): its length says nothing about the latest crash.
    stale = container("web", 0, state="exited", exit_code=1, started_at=0.0, finished_at=1200.0)
    ledger = Ledger(
        restarts={stale.id: RestartRecord(restarts=3, backoff_level=3, last_restart_at=1300.0)}
    )
    p = plan([stack(pod(replicas=1))], observed(stale), {}, ledger, 1301.0)
    assert p.status[0].reason == "back-off 8s restarting failed container (exit code 1)"
    assert p.requeue_after == 7.0


def test_a_container_the_engine_stopped_starts_again_at_once_and_does_not_count() -> None:
    # dockerd restarted between 1990 and 1998: it stopped the container (SIGTERM, 143).
    # podctl starts it again at once, with no back-off and no restart counted, even
    # though the Ledger remembers earlier crashes.
    dead = container("web", 0, state="exited", exit_code=143, started_at=1000.0, finished_at=1991.0)
    ledger = Ledger(restarts={dead.id: RestartRecord(restarts=2, backoff_level=3)})
    p = plan(
        [stack(pod(replicas=1))], observed(dead), {}, ledger, NOW, engine_outage=(1960.0, 1998.0)
    )
    assert p.render() == (
        "[] -> #1 pod:shop/web/0, StartContainer, stopped by the engine's restart "
        "(exit code 143); starting it again"
    )
    step = p.steps[0]
    assert step.counts is False and step.backoff_level == 3  # type: ignore[union-attr]
    assert p.status[0].restarts == 2
    # An exit after the outage is a crash again: back-off as usual.
    later = msgspec.structs.replace(dead, started_at=1998.5, finished_at=1999.0)
    p = plan(
        [stack(pod(replicas=1))], observed(later), {}, ledger, NOW, engine_outage=(1960.0, 1998.0)
    )
    assert p.status[0].phase == "CrashLoopBackOff"


def test_a_restart_podctl_made_while_the_engine_shut_down_is_taken_back() -> None:
    # dockerd stopped the container at 1985 with its API still up; podctl restarted it
    # at 1986 (counted: restarts 1, level 1); the engine then killed it again (1990)
    # and went away. Back at 1998: started again, and the restart at 1986 taken back.
    dead = container("web", 0, state="exited", exit_code=137, started_at=1986.0, finished_at=1990.0)
    ledger = Ledger(
        restarts={dead.id: RestartRecord(restarts=1, backoff_level=1, last_restart_at=1986.0)}
    )
    p = plan(
        [stack(pod(replicas=1))], observed(dead), {}, ledger, NOW, engine_outage=(1960.0, 1998.0)
    )
    (step,) = p.steps
    assert (step.counts, step.uncount, step.backoff_level) == (False, 1, 0)  # type: ignore[union-attr]
