"""The probe state machine of one container: results in, `ContainerHealth` out.

Pure: no I/O, no clock of its own; every result carries its time. It follows
the kubelet's prober workers (pkg/kubelet/prober/worker.go):

- a result changes the state only after a *run* of equal results: a success run
  of `success_threshold`, a failure run of `failure_threshold`; any other result
  starts a new run, so a flapping probe does not flip the state back and forth;
- the startup probe gates the others: until it succeeds, liveness and readiness
  results are ignored (their probers do not even run). Once it has succeeded it
  is not run again for this container;
- liveness or startup tripping sets `restart_reason`; it stays set ("on hold")
  until the container restarts, which the prober models as a new `HealthState`;
- readiness never restarts anything; it starts as not-ready, and a container
  without a readiness probe is ready as soon as it has started;
- `initial_delay` counts from the container's start time, for every probe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from podctl.health.model import ContainerHealth, ProbeResult, RestartReason

if TYPE_CHECKING:
    from podctl.spec.model import ProbeKind, ProbeSpec

PROBE_KINDS: Final[tuple[ProbeKind, ...]] = ("startup", "liveness", "readiness")


class _Run:
    """A run of equal results: the kubelet's lastResult/resultRun pair."""

    __slots__ = ("count", "ok")

    def __init__(self) -> None:
        self.ok: bool | None = None
        self.count = 0

    def add(self, ok: bool) -> int:
        if ok is self.ok:
            self.count += 1
        else:
            self.ok, self.count = ok, 1
        return self.count


class HealthState:
    """Probe state of one container, from its start until it restarts."""

    def __init__(
        self,
        *,
        started_at: float,
        startup: ProbeSpec | None = None,
        liveness: ProbeSpec | None = None,
        readiness: ProbeSpec | None = None,
    ) -> None:
        self.started_at = started_at
        self._specs: dict[ProbeKind, ProbeSpec | None] = {
            "startup": startup,
            "liveness": liveness,
            "readiness": readiness,
        }
        self._runs: dict[ProbeKind, _Run] = {k: _Run() for k in PROBE_KINDS}
        self._last: dict[ProbeKind, ProbeResult] = {}
        self._started = startup is None
        # The kubelet's initial readiness is Failure: traffic waits for a success.
        self._ready_probe_ok = False
        self._restart_reason: RestartReason | None = None
        self._trip_message = ""
        self._ready_since: float | None = None
        self._health = self._compute(started_at)

    # --- queries -----------------------------------------------------------

    def spec(self, kind: ProbeKind) -> ProbeSpec | None:
        return self._specs[kind]

    @property
    def kinds(self) -> tuple[ProbeKind, ...]:
        """The probes this container has, in gating order."""
        return tuple(k for k in PROBE_KINDS if self._specs[k] is not None)

    @property
    def health(self) -> ContainerHealth:
        return self._health

    @property
    def started(self) -> bool:
        return self._started

    @property
    def restart_reason(self) -> RestartReason | None:
        return self._restart_reason

    def active_after(self, kind: ProbeKind) -> float:
        """The earliest time `kind` may run (the container's start + initial_delay)."""
        spec = self._specs[kind]
        return self.started_at + (spec.initial_delay_s if spec is not None else 0.0)

    def wants(self, kind: ProbeKind) -> bool:
        """Whether a `kind` prober should keep running (ignoring the initial delay)."""
        if self._specs[kind] is None or self._restart_reason is not None:
            return False
        if kind == "startup":
            return not self._started
        return self._started

    def accepts(self, kind: ProbeKind, at: float) -> bool:
        """Whether a `kind` result taken at `at` counts; others are ignored."""
        return self.wants(kind) and at >= self.active_after(kind)

    # --- transitions -------------------------------------------------------

    def observe(self, result: ProbeResult) -> ContainerHealth:
        """Feed one probe result; returns the (possibly unchanged) health."""
        kind = _kind(result.probe)
        if kind is None or not self.accepts(kind, result.at):
            return self._health
        spec = self._specs[kind]
        assert spec is not None  # accepts() checked it
        self._last[kind] = result
        run = self._runs[kind].add(result.ok)
        if kind == "startup":
            if result.ok:
                # success_threshold is 1 for startup (a Kubernetes validation rule).
                self._started = True
            elif run >= spec.failure_threshold:
                self._trip("StartupFailed", "Startup", run, result.message)
        elif kind == "liveness":
            if not result.ok and run >= spec.failure_threshold:
                self._trip("LivenessFailed", "Liveness", run, result.message)
        elif result.ok and run >= spec.success_threshold:
            self._ready_probe_ok = True
        elif not result.ok and run >= spec.failure_threshold:
            self._ready_probe_ok = False
        self._health = self._compute(result.at)
        return self._health

    def _trip(self, reason: RestartReason, label: str, run: int, message: str) -> None:
        self._restart_reason = reason
        self._trip_message = f"{label} probe failed {run} times: {message}"

    def _compute(self, at: float) -> ContainerHealth:
        has_readiness = self._specs["readiness"] is not None
        ready = (
            self._started
            and self._restart_reason is None
            and (self._ready_probe_ok if has_readiness else True)
        )
        if not ready:
            self._ready_since = None
        elif self._ready_since is None:
            self._ready_since = at
        return ContainerHealth(
            started=self._started,
            ready=ready,
            restart_reason=self._restart_reason,
            message=self._message(ready),
            last=tuple(self._last[k] for k in PROBE_KINDS if k in self._last),
            # Lets the planner tell these results from those of another run.
            started_at=self.started_at,
            ready_since=self._ready_since,
        )

    def _message(self, ready: bool) -> str:
        # Why the container is not (yet) healthy: what `get pods` shows as `reason`.
        if self._restart_reason is not None:
            return self._trip_message
        if not self._started:
            return _failed("Startup", self._last.get("startup")) or "waiting for startup probe"
        if not ready:
            last = self._last.get("readiness")
            return _failed("Readiness", last) or "waiting for readiness probe"
        return ""


def _kind(probe: str) -> ProbeKind | None:
    for k in PROBE_KINDS:
        if k == probe:
            return k
    return None


def _failed(label: str, last: ProbeResult | None) -> str:
    if last is None or last.ok:
        return ""
    return f"{label} probe failed: {last.message}"
