"""HealthStore: snapshots, change notification, results and events for describe."""

from __future__ import annotations

import msgspec

from podctl.health.model import ContainerHealth, ProbeResult, RestartReason
from podctl.health.store import EVENT_HISTORY, RESULT_HISTORY, HealthEvent, HealthStore


def health(
    started: bool = True,
    ready: bool = False,
    reason: RestartReason | None = None,
    message: str = "",
) -> ContainerHealth:
    return ContainerHealth(started=started, ready=ready, restart_reason=reason, message=message)


def test_first_entry_does_not_notify_a_decision_change_does() -> None:
    calls: list[str] = []
    store = HealthStore(calls.append)
    assert store.set("c1", "shop", health(ready=False)) is False
    assert calls == []
    assert store.set("c1", "shop", health(ready=True)) is True
    assert calls == ["shop"]
    assert store.set("c1", "shop", health(ready=True, reason="LivenessFailed")) is True
    assert store.set("c1", "shop", health(started=True, ready=True, reason=None)) is True
    assert calls == ["shop"] * 3


def test_message_and_results_alone_do_not_notify() -> None:
    calls: list[str] = []
    store = HealthStore(calls.append)
    store.set("c1", "shop", health(ready=False, message="waiting"))
    store.set("c1", "shop", health(ready=False, message="Readiness probe failed: HTTP 503"))
    store.record_result("c1", "shop", ProbeResult(probe="readiness", ok=False, at=1.0))
    assert calls == []
    assert store.get("c1") == health(ready=False, message="Readiness probe failed: HTTP 503")


def test_a_probes_first_result_notifies_once() -> None:
    # Until the planner sees it, `reason` says "waiting for readiness probe"
    # while the probe is failing: the first result is worth a look.
    calls: list[str] = []
    store = HealthStore(calls.append)
    first = ProbeResult(probe="readiness", ok=False, at=1.0, message="HTTP 404")
    again = ProbeResult(probe="readiness", ok=False, at=2.0, message="connection refused")
    store.set("c1", "shop", health(ready=False, message="waiting for readiness probe"))
    store.set("c1", "shop", msgspec.structs.replace(health(ready=False), last=(first,)))
    assert calls == ["shop"]
    store.set("c1", "shop", msgspec.structs.replace(health(ready=False), last=(again,)))
    assert calls == ["shop"]


def test_view_is_a_snapshot() -> None:
    store = HealthStore()
    store.set("c1", "shop", health(ready=False))
    view = store.view()
    store.set("c1", "shop", health(ready=True))
    store.set("c2", "shop", health(ready=True))
    assert view == {"c1": health(ready=False)}
    assert set(store.view()) == {"c1", "c2"}


def test_forget_drops_health_results_and_events() -> None:
    calls: list[str] = []
    store = HealthStore(calls.append)
    store.set("c1", "shop", health())
    store.record_result("c1", "shop", ProbeResult(probe="liveness", ok=True, at=1.0))
    store.record_event("c1", "Killing", "liveness failed", 2.0)
    store.forget("c1")
    store.forget("never-seen")
    assert "c1" not in store
    assert store.view() == {} and store.results("c1") == [] and store.events("c1") == []
    assert calls == []


def test_results_are_bounded_and_oldest_first() -> None:
    store = HealthStore()
    for i in range(RESULT_HISTORY + 5):
        store.record_result("c1", "shop", ProbeResult(probe="liveness", ok=True, at=float(i)))
    ats = [r.at for r in store.results("c1")]
    assert ats == [float(i) for i in range(5, RESULT_HISTORY + 5)]


def test_repeated_events_fold_into_a_count() -> None:
    seen: list[HealthEvent] = []
    store = HealthStore(on_event=seen.append)
    store.set("c1", "shop", health())
    for t in (1.0, 2.0, 3.0):
        store.record_event("c1", "Unhealthy", "Liveness probe failed: HTTP 503", t)
    store.record_event("c1", "Killing", "Container failed liveness probe, will be restarted", 4.0)
    events = store.events("c1")
    assert [(e.kind, e.count, e.first_at, e.at, e.stack) for e in events] == [
        ("Unhealthy", 3, 1.0, 3.0, "shop"),
        ("Killing", 1, 4.0, 4.0, "shop"),
    ]
    assert len(seen) == 4 and seen[2].count == 3


def test_events_are_bounded() -> None:
    store = HealthStore()
    for i in range(EVENT_HISTORY + 3):
        store.record_event("c1", "Unhealthy", f"failure {i}", float(i), stack="shop")
    events = store.events("c1")
    assert len(events) == EVENT_HISTORY
    assert events[0].message == "failure 3"
