"""Property: one plan never takes a rolling pod above replicas + max_surge containers,
nor its ready replicas below replicas - max_unavailable (counting what the plan adds
and removes; from a state already past a bound, a plan never goes further).

One exception, by design: a replica slot with no container at all (lost) is
always recreated, even when another slot holds two (old and new) and the pod is
at its ceiling: keeping `replicas` running beats the surge bound. The ceiling is
then `before + missing slots`, and a surge never adds to it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from podctl.health.model import ContainerHealth
from podctl.reconcile.plan import plan
from podctl.reconcile.rollout import rollout_budget
from podctl.reconcile.steps import RemoveContainer, RunContainer
from podctl.spec.model import RolloutSpec
from tests.unit.planbuild import container, observed, pod, rolling, stack

REVS = ("rev0zzzzzzzz", "rev1aaaaaaaa", "rev2bbbbbbbb")  # older, old, new (the target)
amount = st.one_of(st.integers(0, 3), st.sampled_from(["0%", "10%", "25%", "50%", "100%"]))
# Per slot: which revisions have a container, and each one's (state, ready).
member = st.tuples(st.sampled_from(["running", "exited"]), st.booleans())
slot = st.fixed_dictionaries({}, optional={rev: member for rev in REVS})


@settings(max_examples=400, deadline=None)
@given(
    n=st.integers(1, 6),
    surge=amount,
    unavailable=amount,
    slots=st.lists(slot, min_size=0, max_size=8),
)
def test_one_plan_keeps_floor_and_ceiling(
    n: int, surge: int | str, unavailable: int | str, slots: list[dict[str, tuple[str, bool]]]
) -> None:
    spec = RolloutSpec(max_surge=surge, max_unavailable=unavailable)
    desired = stack(pod(replicas=n, revision=REVS[2], readiness=True, rollout=spec))
    containers, health = [], {}
    for idx, members in enumerate(slots):
        for rev, (state, ready) in members.items():
            c = container(
                "web",
                idx,
                revision=rev,
                state=state,
                exit_code=None if state == "running" else 1,
                finished_at=None if state == "running" else 1999.0,
                started_at=1000.0 + REVS.index(rev),
            )
            containers.append(c)
            health[c.id] = ContainerHealth(started=True, ready=ready)
    p = plan([desired], observed(*containers), health, rolling(), 2000.0)

    removed = {s.container_id for s in p.steps if isinstance(s, RemoveContainer)}
    created = sum(1 for s in p.steps if isinstance(s, RunContainer))
    s_count, u_count = rollout_budget(spec, n)

    def ready(c) -> bool:  # type: ignore[no-untyped-def]
        return c.state == "running" and health[c.id].ready

    def ready_slots(cs) -> int:  # type: ignore[no-untyped-def]
        return len({replica_index(c.labels) for c in cs if ready(c)} & set(range(n)))

    from podctl.reconcile.phase import replica_index

    before_total = len(containers)
    after_total = before_total - len(removed) + created
    missing = n - len({replica_index(c.labels) for c in containers} & set(range(n)))
    assert after_total <= max(n + s_count, before_total + missing)
    before_ready = ready_slots(containers)
    after_ready = ready_slots([c for c in containers if c.id not in removed])
    assert after_ready >= min(n - u_count, before_ready)
