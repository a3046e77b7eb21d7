"""Resolving a rollout override's RunContainer: built from the override's template,
and, when that template cannot run in the stack any more, failed alone (with the
removal it was to follow) instead of holding up the whole plan."""

from __future__ import annotations

import anyio
import msgspec

from podctl import labels
from podctl.reconcile.apply import NoFiles
from podctl.reconcile.resolve import resolve_containers
from podctl.reconcile.steps import Plan, RemoveContainer, RunContainer
from podctl.spec.model import MountSpec
from tests.unit.planbuild import pod, stack, template

R1, R2 = "rev1aaaaaaaa", "rev2bbbbbbbb"


def run_step(
    step_id: int, replica: int, *, override: bool, deps: tuple[int, ...] = ()
) -> RunContainer:
    tpl = template("busybox:1.35")
    if override and replica == 1:
        mount = MountSpec(kind="config", source="gone.conf", target="/etc/gone.conf")
        tpl = msgspec.structs.replace(tpl, mounts=(mount,))
    return RunContainer(
        id=step_id,
        deps=deps,
        target=f"pod:shop/web/{replica}",
        cause="rollout override (revision rev1aa)",
        stack="shop",
        pod="web",
        replica=replica,
        name=f"shop-web-{replica}-rev1aa",
        revision=R1 if override else None,
        template=tpl if override else None,
    )


def resolve(the_plan: Plan) -> tuple[Plan, list[tuple[str, str]]]:
    desired = stack(pod(revision=R2, replicas=3))
    failures: list[tuple[str, str]] = []

    async def main() -> Plan:
        return await resolve_containers(
            the_plan,
            {"shop": desired},
            {},
            NoFiles(),
            on_failure=lambda step, why: failures.append((step.target, why)),
        )

    return anyio.run(main), failures


def test_an_override_step_runs_the_override_template_and_revision() -> None:
    resolved, failures = resolve(Plan(steps=(run_step(1, 0, override=True),)))
    assert failures == []
    (step,) = resolved.steps
    assert isinstance(step, RunContainer) and step.spec is not None
    assert step.spec.image == "busybox:1.35"
    assert step.spec.labels[labels.REVISION] == R1
    # The file's own steps keep the file's template.
    resolved, _ = resolve(Plan(steps=(run_step(1, 0, override=False),)))
    spec = resolved.steps[0].spec  # type: ignore[union-attr]
    assert (spec.image, spec.labels[labels.REVISION]) == ("busybox:1.36", R2)


def test_an_override_that_cannot_run_fails_alone_and_keeps_its_predecessor() -> None:
    remove = RemoveContainer(id=1, target="container:old", cause="c", container_id="old", grace_s=1)
    after = RemoveContainer(
        id=3, target="container:x", cause="c", container_id="x", grace_s=1, deps=(2,)
    )
    other = run_step(4, 0, override=True)
    the_plan = Plan(steps=(remove, run_step(2, 1, override=True, deps=(1,)), after, other))
    resolved, failures = resolve(the_plan)
    assert [s.id for s in resolved.steps] == [4]  # #1 (its predecessor's removal) and #3 go too
    ((target, why),) = failures
    assert target == "pod:shop/web/1"
    assert "cannot create shop-web-1-rev1aa" in why
    assert "config gone.conf is no longer in the stack" in why
