"""The per-container probe state machine, driven with explicit times."""

from __future__ import annotations

from podctl.health.model import ProbeResult
from podctl.health.state import HealthState
from podctl.spec.model import ExecProbe, HttpProbe, ProbeKind, ProbeSpec, TcpProbe

T0 = 1_000.0  # the container's start time


def spec(
    *,
    delay: float = 0.0,
    period: float = 1.0,
    success: int = 1,
    failure: int = 3,
) -> ProbeSpec:
    return ProbeSpec(
        check=TcpProbe(port=80),
        initial_delay_s=delay,
        period_s=period,
        success_threshold=success,
        failure_threshold=failure,
    )


def ok(kind: ProbeKind, at: float) -> ProbeResult:
    return ProbeResult(probe=kind, ok=True, at=at, message="HTTP 200")


def fail(kind: ProbeKind, at: float, message: str = "HTTP 503") -> ProbeResult:
    return ProbeResult(probe=kind, ok=False, at=at, message=message)


def test_no_probes_means_started_and_ready() -> None:
    h = HealthState(started_at=T0).health
    assert (h.started, h.ready, h.restart_reason, h.message) == (True, True, None, "")


def test_liveness_only_is_ready_at_once() -> None:
    s = HealthState(started_at=T0, liveness=spec())
    assert s.health.started and s.health.ready


def test_readiness_starts_not_ready_and_needs_success_threshold() -> None:
    s = HealthState(started_at=T0, readiness=spec(success=2))
    assert s.health.started and not s.health.ready
    assert s.health.message == "waiting for readiness probe"
    s.observe(ok("readiness", T0 + 1))
    assert not s.health.ready
    s.observe(ok("readiness", T0 + 2))
    assert s.health.ready and s.health.message == ""


def test_readiness_success_run_must_be_consecutive() -> None:
    s = HealthState(started_at=T0, readiness=spec(success=2))
    for at, result in [(1, ok), (2, fail), (3, ok)]:
        s.observe(result("readiness", T0 + at))
    assert not s.health.ready
    s.observe(ok("readiness", T0 + 4))
    assert s.health.ready


def test_never_ready_before_initial_delay() -> None:
    s = HealthState(started_at=T0, readiness=spec(delay=5))
    assert not s.accepts("readiness", T0 + 4.9)
    s.observe(ok("readiness", T0 + 1))
    s.observe(ok("readiness", T0 + 4.9))
    assert not s.health.ready
    assert s.health.last == ()  # results before the delay are not even recorded
    s.observe(ok("readiness", T0 + 5))
    assert s.health.ready


def test_initial_delay_counts_from_container_start_not_from_startup() -> None:
    s = HealthState(started_at=T0, startup=spec(failure=30), readiness=spec(delay=3))
    s.observe(ok("startup", T0 + 10))
    assert s.accepts("readiness", T0 + 10)  # 10 s since start > 3 s delay


def test_readiness_flapping_needs_a_full_failure_run() -> None:
    s = HealthState(started_at=T0, readiness=spec(failure=3))
    s.observe(ok("readiness", T0 + 1))
    assert s.health.ready
    # fail, fail, ok, fail, fail: never three in a row, so it stays ready
    t = T0 + 2
    for result in (fail, fail, ok, fail, fail):
        s.observe(result("readiness", t))
        t += 1
        assert s.health.ready
    s.observe(fail("readiness", t))
    assert not s.health.ready
    assert s.health.message == "Readiness probe failed: HTTP 503"
    # one success brings it back (success_threshold 1)
    s.observe(ok("readiness", t + 1))
    assert s.health.ready


def test_failing_readiness_never_restarts() -> None:
    s = HealthState(started_at=T0, readiness=spec(failure=1))
    for i in range(100):
        s.observe(fail("readiness", T0 + i))
    assert s.health.restart_reason is None
    assert not s.health.ready
    assert s.wants("readiness")


def test_liveness_restarts_after_failure_threshold_in_a_row() -> None:
    s = HealthState(started_at=T0, liveness=spec(failure=3))
    s.observe(fail("liveness", T0 + 1))
    s.observe(fail("liveness", T0 + 2))
    s.observe(ok("liveness", T0 + 3))  # resets the run
    s.observe(fail("liveness", T0 + 4))
    s.observe(fail("liveness", T0 + 5))
    assert s.health.restart_reason is None and s.health.ready
    h = s.observe(fail("liveness", T0 + 6, "exit code 1: gone"))
    assert h.restart_reason == "LivenessFailed"
    assert not h.ready  # about to be killed: no more traffic
    assert h.message == "Liveness probe failed 3 times: exit code 1: gone"
    # on hold until the container restarts: further results change nothing
    assert not s.wants("liveness")
    assert s.observe(ok("liveness", T0 + 7)) is h


def test_timeout_counts_as_failure() -> None:
    s = HealthState(started_at=T0, liveness=spec(failure=2))
    s.observe(fail("liveness", T0 + 1, "timeout after 1s"))
    h = s.observe(fail("liveness", T0 + 2, "timeout after 1s"))
    assert h.restart_reason == "LivenessFailed"
    assert h.message.endswith("timeout after 1s")


def test_startup_gates_liveness_and_readiness() -> None:
    s = HealthState(
        started_at=T0, startup=spec(failure=10), liveness=spec(failure=1), readiness=spec()
    )
    assert not s.health.started and not s.health.ready
    assert s.health.message == "waiting for startup probe"
    assert s.wants("startup")
    assert not s.wants("liveness") and not s.wants("readiness")
    # a liveness failure while starting is ignored: a slow starter is not killed
    s.observe(fail("liveness", T0 + 1))
    s.observe(ok("readiness", T0 + 1))
    s.observe(fail("startup", T0 + 1, "connection refused"))
    assert s.health.restart_reason is None and not s.health.ready
    assert s.health.message == "Startup probe failed: connection refused"

    s.observe(ok("startup", T0 + 2))
    assert s.health.started and not s.health.ready  # readiness still has to pass
    assert not s.wants("startup")  # startup runs no more once it has passed
    assert s.wants("liveness") and s.wants("readiness")
    s.observe(ok("readiness", T0 + 3))
    assert s.health.ready


def test_startup_without_readiness_is_ready_when_started() -> None:
    s = HealthState(started_at=T0, startup=spec())
    assert not s.health.ready
    s.observe(ok("startup", T0 + 1))
    assert s.health.started and s.health.ready


def test_startup_failing_threshold_times_restarts() -> None:
    s = HealthState(started_at=T0, startup=spec(failure=3), liveness=spec())
    for i in range(2):
        s.observe(fail("startup", T0 + i))
    assert s.health.restart_reason is None
    h = s.observe(fail("startup", T0 + 3))
    assert h.restart_reason == "StartupFailed" and not h.started
    assert not s.wants("startup") and not s.wants("liveness")


def test_last_holds_the_latest_result_of_each_probe() -> None:
    s = HealthState(started_at=T0, liveness=spec(), readiness=spec())
    s.observe(ok("readiness", T0 + 1))
    s.observe(fail("liveness", T0 + 2))
    s.observe(fail("readiness", T0 + 3))
    assert [(r.probe, r.ok, r.at) for r in s.health.last] == [
        ("liveness", False, T0 + 2),
        ("readiness", False, T0 + 3),
    ]


def test_health_is_unchanged_object_for_ignored_results() -> None:
    s = HealthState(started_at=T0, readiness=spec())
    before = s.health
    assert s.observe(ok("liveness", T0 + 1)) is before  # no liveness probe at all
    assert s.observe(ProbeResult(probe="bogus", ok=True, at=T0 + 1)) is before


def test_probe_kinds_in_gating_order() -> None:
    s = HealthState(
        started_at=T0,
        readiness=ProbeSpec(check=HttpProbe(port=80)),
        startup=ProbeSpec(check=ExecProbe(command=("true",))),
    )
    assert s.kinds == ("startup", "readiness")
    assert s.active_after("readiness") == T0


def test_health_names_the_run_it_belongs_to() -> None:
    # The planner ignores health whose started_at is not the container's current start.
    s = HealthState(started_at=T0, liveness=spec())
    assert s.health.started_at == T0
    s.observe(ok("liveness", T0 + 1))
    assert s.health.started_at == T0
