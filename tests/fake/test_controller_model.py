"""A model-based test of the controller: random edits, scales, kills, readiness
flips, the proxy's connect failures (with min_ready), engine outages and podctl
restarts against `FakeRuntime`, with the invariants checked after every pass
(Hypothesis `RuleBasedStateMachine`).

Everything is driven by hand: passes run with `reconcile_once()` (no loop, so
long steps run inline), the clock is a number the rules advance, and health is
a fake prober whose answers the rules decide. Nothing waits on wall-clock time,
so a failure replays exactly from the example Hypothesis prints.

Invariants:

- SURGE_EVERY_PASS: after every pass, the containers of a pod that podctl
  keeps number at most `replicas + max_surge`. Containers it is removing (a
  RemoveContainer step of the pass named them: scaled away, replaced, not
  ready) are Terminating and do not count, as in Kubernetes: with the real loop
  their stop runs in the background while the planner already treats them as
  gone, and here a removal the engine refused leaves them behind.
- SURGE_CLEAN_PASS: after a pass in which every step succeeded, a pod has at
  most `replicas + max_surge` containers, counting every one in any state.
- AVAILABILITY_EVERY_PASS: a pass never makes fewer replica slots available
  (running and ready) than `min(available before, replicas - max_unavailable)`:
  crashes and failed probes may lower availability, podctl's removals may not.
- BYSTANDERS: containers without podctl's stack label and another stack's
  containers are never touched (no call names them; their state is unchanged).
- CONVERGENCE: once faults stop, within CONVERGE_PASSES passes (clock advanced
  past back-offs, probes run after each pass) a pass plans nothing and every
  pod has exactly one container per replica slot, running, at the current
  revision, ready in the health view; nothing else of the stack is left.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import ExitStack
from typing import Any

import anyio
import anyio.from_thread
import msgspec
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from podctl import labels
from podctl.health.model import ContainerHealth, HealthView, ProbeTarget
from podctl.reconcile.controller import Controller
from podctl.reconcile.events import Event
from podctl.reconcile.plan import rollout_budget
from podctl.reconcile.steps import RemoveContainer
from podctl.runtime.errors import Conflict, EngineUnavailable
from podctl.runtime.fake import FakeContainer, FakeRuntime
from podctl.spec.model import DesiredPod, DesiredStack, RolloutSpec
from podctl.spec.normalise import pod_revision
from tests.unit.planbuild import pod, stack

STACK = "shop"
OTHER = "other"
PODS = ("web", "api")  # web has a readiness probe, api has none
CONVERGE_PASSES = 20
# The rules jump the clock by up to 700 s, past any realistic progress deadline:
# this model checks the surge ceiling, the ready floor and convergence to the
# file's revision, so its rollouts never hit their deadline. Deadlines, failures
# and automatic rollbacks have golden tests of their own (tests/unit/test_rollout.py).
NO_DEADLINE = 1e12
ROLLOUTS = (
    RolloutSpec(progress_deadline_s=NO_DEADLINE),  # surge 1, unavailable 0
    RolloutSpec(max_surge=0, max_unavailable=1, progress_deadline_s=NO_DEADLINE),
    RolloutSpec(max_surge=2, max_unavailable=1, progress_deadline_s=NO_DEADLINE),
    RolloutSpec(max_surge="25%", max_unavailable="25%", progress_deadline_s=NO_DEADLINE),
    RolloutSpec(max_surge="50%", max_unavailable=0, progress_deadline_s=NO_DEADLINE),
    # min_ready: the proxy's connect failures (rule `proxy_fails`) start it over.
    RolloutSpec(min_ready_s=5.0, progress_deadline_s=NO_DEADLINE),
)
FAULTY_METHODS = (
    "create_container",
    "start_container",
    "stop_container",
    "remove_container",
    "list_containers",
    "create_network",
)


class World:
    """The applications' own health, which outlives any podctl process."""

    def __init__(self) -> None:
        self.unready: set[str] = set()  # container ids whose readiness probe fails
        self.liveness_failed: dict[str, float | None] = {}  # id -> the run that fails
        self.proxy_failures: dict[str, float] = {}  # id -> the proxy's latest failure to it


class FakeProber:
    """Results exist only for targets probed at least once in their current run:
    a fresh container (or a fresh podctl) is not ready until `probe()` runs."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.targets: dict[str, ProbeTarget] = {}
        self.probed: dict[str, float | None] = {}  # id -> started_at when probed

    def sync(self, targets: Iterable[ProbeTarget]) -> None:
        self.targets = {t.container_id: t for t in targets}

    def probe(self) -> None:
        for t in self.targets.values():
            self.probed[t.container_id] = t.started_at

    def view(self) -> HealthView:
        out: dict[str, ContainerHealth] = {}
        for cid, t in self.targets.items():
            if cid not in self.probed or self.probed[cid] != t.started_at:
                continue
            live_fail = cid in self.world.liveness_failed and (
                self.world.liveness_failed[cid] == t.started_at
            )
            ready = cid not in self.world.unready
            out[cid] = ContainerHealth(
                started=True,
                ready=ready,
                restart_reason="LivenessFailed" if live_fail else None,
                message="" if ready and not live_fail else "exit code 1",
                started_at=t.started_at,
            )
        return out


def make_pod(name: str, replicas: int, env: str, rollout: RolloutSpec) -> DesiredPod:
    base = pod(name, stack=STACK, replicas=replicas, readiness=name == "web", rollout=rollout)
    template = msgspec.structs.replace(base.template, env=(("VERSION", env),))
    return msgspec.structs.replace(base, template=template, revision=pod_revision(template, ()))


class ControllerModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._exit = ExitStack()
        self.portal = self._exit.enter_context(anyio.from_thread.start_blocking_portal("asyncio"))
        self.now = 1_000_000.0
        self.world = World()
        self.replicas = {"web": 2, "api": 1}
        self.env = {"web": "a", "api": "a"}
        self.rollout = {"web": ROLLOUTS[0], "api": ROLLOUTS[0]}
        self.events: Any = None
        self.runtime: FakeRuntime = self.portal.call(self._new_runtime)
        self.prober = FakeProber(self.world)
        self.controller = self._new_controller()
        self.bystanders: dict[str, tuple[str, float | None]] = {}
        self.other_network: set[str] = set()

    def teardown(self) -> None:
        try:
            if self.bystanders:  # initialised: finish with the convergence check
                self.faults_stop_and_converge()
        finally:
            self._exit.close()

    # -- helpers --------------------------------------------------------------

    def clock(self) -> float:
        return self.now

    def _new_runtime(self) -> FakeRuntime:
        return FakeRuntime(clock=self.clock, call_timeout_s=0.05)

    def _new_controller(self) -> Controller:
        def make() -> Controller:
            return Controller(
                self.runtime,
                self.desired(),
                prober=self.prober,
                clock=self.clock,
                backend_failures=lambda: self.world.proxy_failures,
            )

        c = self.portal.call(make)
        self.events = self.portal.call(c.events.subscribe)
        return c

    def desired(self) -> list[DesiredStack]:
        pods = tuple(
            make_pod(name, self.replicas[name], self.env[name], self.rollout[name]) for name in PODS
        )
        return [stack(*pods, name=STACK)]

    def desired_pod(self, name: str) -> DesiredPod:
        found = self.desired()[0].pod(name)
        assert found is not None
        return found

    def shop_containers(self, pod_name: str | None = None) -> list[FakeContainer]:
        return [
            c
            for c in self.runtime.containers.values()
            if c.labels.get(labels.STACK) == STACK
            and (pod_name is None or c.labels.get(labels.POD) == pod_name)
        ]

    def running_shop(self, pod_name: str | None = None) -> list[FakeContainer]:
        return [c for c in self.shop_containers(pod_name) if c.state == "running"]

    def drain_events(self) -> list[Event]:
        out = []
        while True:
            try:
                out.append(self.events.receive_nowait())
            except anyio.WouldBlock:
                return out

    def available(self, name: str) -> int:
        """Replica slots with a running container that is ready, as the planner sees it."""
        p = self.desired_pod(name)
        view = self.prober.view()
        probed = p.template.readiness is not None
        slots = set()
        for c in self.running_shop(name):
            h = view.get(c.id)
            ok = (
                h is not None and h.ready and h.started and h.restart_reason is None
                if probed
                else True
            )
            slot = int(c.labels[labels.REPLICA])
            if ok and slot < p.replicas:
                slots.add(slot)
        return len(slots)

    def one_pass(self) -> bool:
        """One reconcile pass with the surge and availability checks; True when it
        planned nothing."""
        self.drain_events()
        available = {name: self.available(name) for name in PODS}
        plan_before = self.controller.last_plan
        self.portal.call(self.controller.reconcile_once)
        if self.controller.last_plan is plan_before:
            return False  # the snapshot failed (engine down): nothing was planned or done
        failed = [e for e in self.drain_events() if e.reason == "Failed"]
        removing = {
            s.container_id
            for s in self.controller.last_plan.steps
            if isinstance(s, RemoveContainer)
        }
        for name in PODS:
            p = self.desired_pod(name)
            surge, unavailable = rollout_budget(p.rollout, p.replicas)
            budget = p.replicas + surge
            containers = self.shop_containers(name)
            count = len(containers)
            kept = len([c for c in containers if c.id not in removing])
            detail = self.describe(name)
            # SURGE_EVERY_PASS
            assert kept <= budget, (
                f"pod {name} keeps {kept} containers after a pass, "
                f"past its budget replicas+max_surge={budget}: {detail}"
            )
            if self.controller.engine_ok and not failed:
                # SURGE_CLEAN_PASS
                assert count <= budget, (
                    f"pod {name} has {count} containers after a clean pass, "
                    f"budget replicas+max_surge={budget}: {detail}"
                )
            # AVAILABILITY_EVERY_PASS
            floor = min(available[name], p.replicas - unavailable)
            assert self.available(name) >= floor, (
                f"pod {name}: {self.available(name)} of {p.replicas} replicas available after "
                f"a pass, {available[name]} before, max_unavailable={unavailable}: {detail}"
            )
        return self.controller.engine_ok and not self.controller.last_plan.steps

    def describe(self, name: str) -> str:
        return ", ".join(
            f"{c.name}[{c.state}]" for c in sorted(self.shop_containers(name), key=lambda c: c.name)
        )

    def pick(self, candidates: list[FakeContainer], i: int) -> FakeContainer:
        return sorted(candidates, key=lambda c: c.name)[i % len(candidates)]

    # -- setup --------------------------------------------------------------

    @initialize()
    def bystanders_exist(self) -> None:
        """A container without labels, one with podctl-like labels but no stack,
        and another stack run by another controller."""
        rt = self.runtime
        rt.add_foreign_container("bystander")
        rt.add_foreign_container("lookalike", labels={labels.POD: "web", labels.REPLICA: "0"})
        rt.add_foreign_container("stopped", state="exited")
        other_stack = stack(pod("web", stack=OTHER, replicas=2), name=OTHER)
        other = self.portal.call(lambda: Controller(rt, [other_stack]))
        for _ in range(3):
            self.portal.call(other.reconcile_once)
        assert len(rt.running(OTHER)) == 2
        self.bystanders = {
            c.id: (c.state, c.started_at)
            for c in rt.containers.values()
            if c.labels.get(labels.STACK) != STACK
        }
        self.other_network = set(rt.networks)
        rt.clear_calls()
        self.faults_stop_and_converge()

    # -- desired-state changes ------------------------------------------------

    @rule(name=st.sampled_from(PODS), env=st.sampled_from("abc"))
    def edit(self, name: str, env: str) -> None:
        """A template change: a new revision (or back to an earlier one)."""
        self.env[name] = env
        self.controller.set_stacks(self.desired())

    @rule(name=st.sampled_from(PODS), replicas=st.integers(0, 5))
    def scale(self, name: str, replicas: int) -> None:
        self.replicas[name] = replicas
        self.controller.set_stacks(self.desired())

    @rule(name=st.sampled_from(PODS), rollout=st.sampled_from(ROLLOUTS))
    def change_rollout(self, name: str, rollout: RolloutSpec) -> None:
        self.rollout[name] = rollout
        self.controller.set_stacks(self.desired())

    # -- the containers' own life -------------------------------------------------

    @precondition(lambda self: bool(self.running_shop()))
    @rule(i=st.integers(0, 9), code=st.sampled_from([0, 1, 137]), how=st.sampled_from("ckd"))
    def container_dies(self, i: int, code: int, how: str) -> None:
        """It crashes (exit code), is `docker kill`ed, or `docker rm -f`ed."""
        victim = self.pick(self.running_shop(), i)
        if how == "c":
            self.runtime.crash(victim.id, code)
        elif how == "k":
            self.runtime.kill(victim.id)
        else:
            self.runtime.delete(victim.id)

    @precondition(lambda self: bool(self.running_shop("web")))
    @rule(i=st.integers(0, 9))
    def readiness_flips(self, i: int) -> None:
        victim = self.pick(self.running_shop("web"), i)
        self.world.unready ^= {victim.id}

    @precondition(lambda self: bool(self.running_shop("web")))
    @rule(i=st.integers(0, 9))
    def liveness_fails(self, i: int) -> None:
        """This run of the container fails its liveness probe (from the next probe on)."""
        victim = self.pick(self.running_shop("web"), i)
        self.world.liveness_failed[victim.id] = victim.started_at

    @precondition(lambda self: bool(self.running_shop()))
    @rule(i=st.integers(0, 9))
    def proxy_fails(self, i: int) -> None:
        """The proxy could not connect to a replica (or it reset a connection) now."""
        victim = self.pick(self.running_shop(), i)
        self.world.proxy_failures[victim.id] = self.now

    @rule()
    def probes_run(self) -> None:
        self.prober.probe()

    @rule(seconds=st.sampled_from([0.5, 1.0, 4.0, 30.0, 301.0, 700.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    # -- faults ----------------------------------------------------------------

    @rule(
        kind=st.sampled_from(["down", "up", "call"]),
        method=st.sampled_from(FAULTY_METHODS),
        times=st.integers(1, 3),
        conflict=st.booleans(),
    )
    def engine_fault(self, kind: str, method: str, times: int, conflict: bool) -> None:
        """The engine goes away or comes back, or its next calls of `method` fail.
        (One rule for all three, so faults do not crowd out everything else.)"""
        if kind == "down":
            self.runtime.engine_down()
        elif kind == "up":
            self.runtime.engine_up()
        else:
            exc = (
                Conflict("model", "injected")
                if conflict
                else EngineUnavailable("model", "injected")
            )
            self.runtime.fail(method, exc, times=times)

    @rule()
    def podctl_restarts(self) -> None:
        """A new podctl process: fresh ledger, fresh prober, adoption by labels."""
        self.prober = FakeProber(self.world)
        self.controller = self._new_controller()

    # -- passes ----------------------------------------------------------------

    @rule(passes=st.integers(1, 4))
    def reconcile(self, passes: int) -> None:
        for _ in range(passes):
            self.one_pass()

    @rule(passes=st.integers(1, 4))
    def reconcile_and_probe(self, passes: int) -> None:
        """Passes with a probe round after each (readiness follows the world)."""
        for _ in range(passes):
            self.one_pass()
            self.prober.probe()

    @rule()
    def faults_stop_and_converge(self) -> None:
        """CONVERGENCE: faults stop, apps are healthy; bounded passes reach the goal."""
        self.runtime.clear_faults()
        self.runtime.engine_up()
        self.world.unready.clear()
        self.world.liveness_failed.clear()
        self.world.proxy_failures.clear()
        history: list[str] = []
        for n in range(1, CONVERGE_PASSES + 1):
            quiet = self.one_pass()
            history.append(
                f"pass {n}: "
                + "; ".join(
                    f"{s.target} {type(s).__name__}" for s in self.controller.last_plan.steps
                )
            )
            self.prober.probe()
            if quiet and not self.convergence_problems():
                event(f"converged in {n} passes")
                return
            self.now += 301.0  # past any crash-loop or pull back-off
        raise AssertionError(
            f"not converged after {CONVERGE_PASSES} passes: {self.convergence_problems()}\n"
            + "\n".join(history)
        )

    def convergence_problems(self) -> list[str]:
        problems = []
        view = self.prober.view()
        for name in PODS:
            p = self.desired_pod(name)
            cs = self.shop_containers(name)
            slots = sorted(int(c.labels[labels.REPLICA]) for c in cs)
            if slots != list(range(p.replicas)):
                problems.append(
                    f"{name}: slots {slots}, want 0..{p.replicas - 1}: {self.describe(name)}"
                )
            for c in cs:
                if c.state != "running":
                    problems.append(f"{c.name} is {c.state}")
                if c.labels.get(labels.REVISION) != p.revision:
                    problems.append(f"{c.name} is at an old revision")
                if p.template.readiness is not None and not (c.id in view and view[c.id].ready):
                    problems.append(f"{c.name} is not ready")
        ready = {s.name for s in self.controller.status() if s.ready}
        for c in self.shop_containers():
            if c.name not in ready:
                problems.append(f"status does not show {c.name} ready")
        if not any(n.name == self.desired()[0].network for n in self.runtime.networks.values()):
            problems.append("no network")
        return problems

    # -- invariants -------------------------------------------------------------

    @invariant()
    def bystanders_untouched(self) -> None:
        """BYSTANDERS."""
        rt = self.runtime
        assert rt.violations == []
        for cid, (state, started_at) in self.bystanders.items():
            c = rt.containers.get(cid)
            assert c is not None, f"container {cid[:12]} of another owner was removed"
            assert (c.state, c.started_at) == (state, started_at), f"{c.name} was changed"
        touched = [
            call
            for call in rt.calls
            if call.args and isinstance(call.args[0], str) and call.args[0] in self.bystanders
        ]
        assert touched == [], f"calls on others' containers: {touched}"
        assert all(
            call.args[0] == STACK
            for call in rt.calls
            if call.method in ("list_containers", "list_networks", "list_volumes")
        ), "podctl listed another stack's objects"
        assert self.other_network <= set(rt.networks)


# CI: the same 200 programs every run (derandomize), about 10 s. To hunt for new
# counterexamples, PODCTL_MODEL_EXAMPLES=5000 explores random programs instead.
_EXPLORE = int(os.environ.get("PODCTL_MODEL_EXAMPLES", "0"))
ControllerModel.TestCase.settings = settings(
    max_examples=_EXPLORE or 200,
    stateful_step_count=50,
    deadline=None,
    derandomize=not _EXPLORE,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
# Shrinking a counterexample can take minutes: let Hypothesis report it.
TestControllerModel = pytest.mark.timeout(900)(ControllerModel.TestCase)


@pytest.mark.anyio
async def test_scale_up_with_an_edit_stays_within_surge() -> None:
    """The model's minimal counterexample: 2 replicas -> 3 with a new template."""
    rt = FakeRuntime(clock=lambda: 1000.0)
    prober = FakeProber(World())
    desired = [stack(make_pod("web", 2, "a", RolloutSpec()))]
    c = Controller(rt, desired, prober=prober, clock=lambda: 1000.0)
    for _ in range(4):  # network, containers, probes, ready
        await c.reconcile_once()
        prober.probe()
    assert [s.ready for s in c.status()] == [True, True]
    c.set_stacks([stack(make_pod("web", 3, "b", RolloutSpec()))])
    await c.reconcile_once()
    names = sorted(x.name for x in rt.containers.values() if x.labels.get(labels.STACK) == STACK)
    assert len(names) <= 3 + 1, names


@pytest.mark.anyio
async def test_scale_down_during_a_roll_stays_within_surge() -> None:
    """4 replicas rolling with max_surge 50% (2 pairs old+new), scaled to 2: the
    budget is 2 + 1, but both pairs in slots 0 and 1 are kept until the new
    containers are ready (for ever, if they never are). Found by reasoning about
    the model; the random search has not reached it (7 specific steps). Fixed: the
    surge over the new budget is given back, the not-yet-available new container first."""
    rollout = RolloutSpec(max_surge="50%", max_unavailable=0)
    rt = FakeRuntime(clock=lambda: 1000.0)
    prober = FakeProber(World())
    c = Controller(
        rt, [stack(make_pod("web", 4, "a", rollout))], prober=prober, clock=lambda: 1000.0
    )
    for _ in range(4):  # network, containers, probes, ready
        await c.reconcile_once()
        prober.probe()
    assert [s.ready for s in c.status()] == [True] * 4
    c.set_stacks([stack(make_pod("web", 4, "b", rollout))])
    await c.reconcile_once()  # slots 0 and 1 surge: 6 containers, budget 4 + 2
    c.set_stacks([stack(make_pod("web", 2, "b", rollout))])
    await c.reconcile_once()
    names = sorted(x.name for x in rt.containers.values() if x.labels.get(labels.STACK) == STACK)
    assert len(names) <= 2 + 1, names
