"""Routing tables follow readiness straight from the probes (podctl.net.endpoints)."""

from __future__ import annotations

import msgspec

from podctl.health.model import ContainerHealth
from podctl.net.endpoints import Backend, routing_tables
from podctl.net.endpoints import backends as to_backends
from podctl.net.proxyset import ProxySet
from podctl.net.services import ServiceRouter
from podctl.reconcile.steps import ReplicaStatus
from podctl.spec.model import DesiredService
from tests.unit.planbuild import pod, stack


def shop(readiness: bool = True):  # type: ignore[no-untyped-def]
    st = stack(pod(replicas=3, readiness=readiness))
    svc = DesiredService(stack="shop", name="web", pod="web", target_port=8080, port=18080)
    return msgspec.structs.replace(st, services=(svc,))


def backends(n: int = 3) -> list[Backend]:
    return [
        Backend(
            stack="shop",
            pod="web",
            name=f"shop-web-{i}",
            container_id=f"c{i}",
            ip=f"10.0.0.{i + 2}",
            started_at=100.0,
        )
        for i in range(n)
    ]


def status(b: Backend, phase: str = "Running") -> ReplicaStatus:
    """The planner's row for a backend's container."""
    return ReplicaStatus(
        stack=b.stack,
        pod=b.pod,
        replica=int(b.container_id[1:]),
        name=b.name,
        container_id=b.container_id,
        phase=phase,  # type: ignore[arg-type]
        ready=True,
        restarts=0,
        revision="rev1aaaaaaaa",
        image="busybox:1.36",
        ip=b.ip,
        started_at=b.started_at,
    )


def test_only_running_replicas_with_an_address_are_backends() -> None:
    rows = [status(b) for b in backends()]
    rows[1] = msgspec.structs.replace(rows[1], phase="Terminating")
    rows[2] = msgspec.structs.replace(rows[2], ip=None)
    assert [b.container_id for b in to_backends(rows)] == ["c0"]


def healthy(ready: bool = True) -> ContainerHealth:
    return ContainerHealth(started=True, ready=ready, started_at=100.0)


def keys(tables: dict[str, tuple]) -> list[str]:  # type: ignore[type-arg]
    return [e.key for e in tables["shop/web"]]


def test_only_ready_replicas_are_routed_in_name_order() -> None:
    health = {"c0": healthy(), "c1": healthy(False), "c2": healthy()}
    tables = routing_tables([shop()], reversed(backends()), health)
    assert keys(tables) == ["c0", "c2"]
    assert [(e.host, e.port) for e in tables["shop/web"]] == [
        ("10.0.0.2", 8080),
        ("10.0.0.4", 8080),
    ]


def test_a_gated_replica_without_results_is_not_ready_and_an_ungated_one_is() -> None:
    assert keys(routing_tables([shop(readiness=True)], backends(), {})) == []
    assert keys(routing_tables([shop(readiness=False)], backends(), {})) == ["c0", "c1", "c2"]


def test_results_of_an_earlier_run_do_not_count() -> None:
    stale = ContainerHealth(started=True, ready=True, started_at=50.0)
    assert keys(routing_tables([shop()], backends(1), {"c0": stale})) == []


def test_a_replica_the_engine_said_died_gets_no_new_connections() -> None:
    health = {f"c{i}": healthy() for i in range(3)}
    assert keys(routing_tables([shop()], backends(), health, gone={"c1"})) == ["c0", "c2"]


def test_a_liveness_kill_takes_the_replica_out() -> None:
    dying = ContainerHealth(
        started=True, ready=True, restart_reason="LivenessFailed", started_at=100.0
    )
    health = {"c0": healthy(), "c1": dying, "c2": healthy()}
    assert keys(routing_tables([shop()], backends(), health)) == ["c0", "c2"]


def test_router_reroutes_on_a_probe_result_without_a_new_snapshot() -> None:
    """The engine may be frozen: a readiness change alone must reach the proxy."""
    health = {f"c{i}": healthy() for i in range(3)}
    proxies = ProxySet()
    router = ServiceRouter(proxies, lambda: health)
    router.observe([shop()], [status(b) for b in backends()], ())
    assert [e.key for e in proxies._endpoints["shop/web"]] == ["c0", "c1", "c2"]
    health["c1"] = healthy(False)  # a probe result; no observe() follows
    router.health_changed("shop")
    assert [e.key for e in proxies._endpoints["shop/web"]] == ["c0", "c2"]
    router.died("c0")
    assert [e.key for e in proxies._endpoints["shop/web"]] == ["c2"]
    # A later snapshot that shows c0 restarted (a new run) routes it again once ready.
    restarted = [
        msgspec.structs.replace(b, started_at=200.0) if b.container_id == "c0" else b
        for b in backends()
    ]
    health["c0"] = ContainerHealth(started=True, ready=True, started_at=200.0)
    router.observe([shop()], [status(b) for b in restarted], ())
    assert [e.key for e in proxies._endpoints["shop/web"]] == ["c0", "c2"]
