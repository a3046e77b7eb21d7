"""Issue: Health probes. User stories against the real engine, driven through the CLI.

Every check here is one a user can make: `podctl get pods -o json`,
`podctl describe pod -o json`, `podctl events -o json`, plus `docker events`
for the signals a stop sends. Probes run every second with small thresholds
so each story takes seconds.

Containers that should stop promptly run their server under a shell that
exits on SIGTERM: a process that is PID 1 in its container ignores SIGTERM
unless it installs a handler (busybox httpd does not), and the liveness
bound below does not include a stop grace.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Podctl, docker, stack_containers, wait_for, write_stack

pytestmark = pytest.mark.docker

# Probe settings of the liveness stories, and the bound the issue sets for them.
PERIOD_S = 1.0
FAILURE_THRESHOLD = 2
TIMEOUT_S = 1.0
LIVENESS_BOUND_S = PERIOD_S * FAILURE_THRESHOLD + TIMEOUT_S + 2.0

# A long-running shell that exits at once on SIGTERM (PID 1 has no default handler).
POLITE_IDLE = 'trap "exit 0" TERM; while :; do sleep 0.1; done'


def sh(script: str) -> str:
    """A YAML flow list running `script` under sh (double quotes inside are escaped)."""
    return json.dumps(["sh", "-c", script])


def replica(pc: Podctl, stack: str, pod: str, index: int = 0) -> dict[str, Any] | None:
    """The replica `pod-index` as `get pods -o json` shows it (None while absent)."""
    for p in pc.pods(stack):
        if p["pod"] == pod and p.get("replica", 0) == index:
            return p
    return None


def wait_replica(
    pc: Podctl, stack: str, pod: str, what: str, cond: Any, timeout: float = 30.0
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        p = replica(pc, stack, pod)
        return p if p is not None and cond(p) else None

    return wait_for(f"{pod}: {what}", check, timeout, every=0.1)


def describe(pc: Podctl, name: str) -> dict[str, Any]:
    out = pc.cli("describe", "pod", name, "-o", "json", check=True).stdout
    data: dict[str, Any] = json.loads(out)
    return data


def events(pc: Podctl, stack: str) -> list[dict[str, Any]]:
    out = pc.cli("events", stack, "-o", "json", check=True).stdout
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def _uptime_offset() -> float:
    """Wall clock minus the host's uptime, which containers read unchanged."""
    with open("/proc/uptime") as f:
        up = float(f.read().split()[0])
    return time.time() - up


def exec_at(pc: Podctl, name: str, *command: str) -> float:
    """`podctl exec NAME -- COMMAND`, returning when COMMAND finished (epoch seconds).

    The CLI takes a moment to start and reach the engine, more under load; the
    container's own /proc/uptime (the host's) says when the command really ran.
    """
    script = " ".join(command) + " && cat /proc/uptime"
    out = pc.cli("exec", name, "--", "sh", "-c", script, check=True).stdout
    return _uptime_offset() + float(out.split()[0])


class EngineEvents:
    """The engine's kill/die/start events of a stack, recorded live from now on.

    `docker events` streams them as they happen; reading them back later with
    --since/--until is not reliable, the engine replays only a short buffer that
    other stacks' events (exec probes make three each) soon push out.
    """

    def __init__(self, stack: str, out: Path) -> None:
        self.out = out
        self._file = out.open("wb")
        self.proc = subprocess.Popen(
            [
                "docker",
                "events",
                "--since",
                f"{time.time() - 0.5:.3f}",
                "--filter",
                "type=container",
                "--filter",
                f"label=io.podctl.stack={stack}",
                *("--filter", "event=kill", "--filter", "event=die", "--filter", "event=start"),
                "--format",
                "{{json .}}",
            ],
            stdout=self._file,
            stderr=subprocess.DEVNULL,
        )

    def rows(self, settle: float = 0.5) -> list[tuple[str, float, str]]:
        """(pod, time, action) so far; a kill's action names its signal ("kill 15")."""
        time.sleep(settle)  # the last events are a moment behind
        rows = []
        for line in self.out.read_text().splitlines():
            ev = json.loads(line)
            attrs = ev.get("Actor", {}).get("Attributes", {})
            action = ev.get("Action") or ev.get("status")
            if action == "kill":
                action = f"kill {attrs.get('signal')}"
            rows.append((attrs.get("io.podctl.pod", ""), ev["timeNano"] / 1e9, action))
        return rows

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._file.close()


@pytest.fixture
def engine_events(tmp_path: Path) -> Iterator[Callable[[str], EngineEvents]]:
    started: list[EngineEvents] = []

    def start(stack: str) -> EngineEvents:
        rec = EngineEvents(stack, tmp_path / f"engine-events-{len(started)}.jsonl")
        started.append(rec)
        return rec

    try:
        yield start
    finally:
        for rec in started:
            rec.close()


# -- liveness ------------------------------------------------------------------------

HTTPD = "httpd -f -p 8080 -h /www"
# httpd serving /www/index.html that exits on SIGTERM.
HTTPD_POLITE = f'mkdir -p /www; echo ok > /www/index.html; trap "exit 0" TERM; {HTTPD} & wait'
LIVENESS_VARIANTS = {
    # probe (YAML flow), command run at every start (re-creates the health file),
    # and what the user runs to break it.
    "exec": (
        f"{{exec: [test, -f, /tmp/healthy], period: 1s, timeout: 1s, failure_threshold: "
        f"{FAILURE_THRESHOLD}}}",
        f'mkdir -p /www; touch /tmp/healthy; trap "exit 0" TERM; {HTTPD} & wait',
        ["rm", "/tmp/healthy"],
    ),
    "http": (
        f"{{http: {{port: http, path: /health.html}}, period: 1s, timeout: 1s, "
        f"failure_threshold: {FAILURE_THRESHOLD}}}",
        f'mkdir -p /www; echo ok > /www/health.html; trap "exit 0" TERM; {HTTPD} & wait',
        ["rm", "/www/health.html"],
    ),
}


@pytest.mark.parametrize("variant", sorted(LIVENESS_VARIANTS))
def test_liveness_failure_restarts_within_bound_and_counts(
    pc: Podctl, tmp_path: Path, stack_name: str, variant: str
) -> None:
    probe, script, breaker = LIVENESS_VARIANTS[variant]
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          web:
            image: busybox:1.36
            command: {sh(script)}
            ports: {{http: 8080}}
            stop_grace: 5s
            liveness: {probe}
        """,
    )
    pc.start(path)
    (first,) = pc.wait_ready(stack_name, 1)
    name = first["name"]
    reasons: list[str] = []

    def restarted(count: int, after: float) -> Any:
        def cond(p: dict[str, Any]) -> bool:
            if p["reason"]:
                reasons.append(str(p["reason"]))
            return bool(p["restarts"] == count and p["ready"] and (p["started_at"] or 0.0) > after)

        return cond

    broken_at = exec_at(pc, name, *breaker)
    p = wait_replica(pc, stack_name, "web", "restarted once", restarted(1, broken_at), 20)
    took = p["started_at"] - broken_at
    assert took <= LIVENESS_BOUND_S, f"restarted after {took:.2f}s (bound {LIVENESS_BOUND_S}s)"
    # Restarted in place, as the kubelet restarts a container: same container, new start.
    assert p["container_id"] == first["container_id"]
    assert p["phase"] == "Running"
    assert any("LivenessFailed" in r for r in reasons), reasons

    desc = describe(pc, name)
    killing = [e for e in desc["events"] if e["reason"] == "Killing"]
    assert killing and "liveness probe failed" in killing[-1]["message"].lower(), desc["events"]
    assert "liveness" in desc["probes"]
    evs = events(pc, stack_name)
    assert any(e["reason"] == "Killing" for e in evs), evs
    assert any(e["reason"] == "Restarted" and "LivenessFailed" in e["message"] for e in evs), evs

    # Broken again: the count grows (the second restart waits its 2 s back-off).
    broken_again = exec_at(pc, name, *breaker)
    p = wait_replica(pc, stack_name, "web", "restarted twice", restarted(2, broken_again), 20)
    assert p["started_at"] - broken_again <= LIVENESS_BOUND_S + 2.0
    assert p["container_id"] == first["container_id"]


def test_crash_looping_liveness_shows_backoff_event(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          doomed:
            image: busybox:1.36
            command: {sh(POLITE_IDLE)}
            stop_grace: 1s
            liveness: {{exec: ["false"], period: 1s, failure_threshold: 1}}
        """,
    )
    pc.start(path)
    p = wait_replica(
        pc, stack_name, "doomed", "backing off", lambda p: p["phase"] == "CrashLoopBackOff", 20
    )
    assert "LivenessFailed" in str(p["reason"]), p
    wait_for(
        "a BackOff event",
        lambda: any(e["reason"] == "BackOff" for e in events(pc, stack_name)),
        10,
    )


# -- readiness -----------------------------------------------------------------------


def test_failing_readiness_is_not_ready_and_never_restarted(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          api:
            image: busybox:1.36
            command: {sh("touch /tmp/ready; " + POLITE_IDLE)}
            replicas: 2
            stop_grace: 1s
            readiness: {{exec: [test, -f, /tmp/ready], period: 1s, failure_threshold: 2}}
        """,
    )
    pc.start(path)
    before = {p["name"]: p for p in pc.wait_ready(stack_name, 2)}
    victim = sorted(before)[0]
    pc.cli("exec", victim, "--", "rm", "/tmp/ready", check=True)

    def not_ready() -> dict[str, dict[str, Any]] | None:
        by_name = {p["name"]: p for p in pc.pods(stack_name)}
        return by_name if not by_name[victim]["ready"] else None

    by_name = wait_for("the replica to turn not-ready", not_ready, 10, every=0.1)
    assert "Readiness probe failed" in str(by_name[victim]["reason"]), by_name[victim]
    # Several failure thresholds later it is still the same, running, never-restarted container.
    time.sleep(4 * PERIOD_S * 2)
    by_name = {p["name"]: p for p in pc.pods(stack_name)}
    p = by_name[victim]
    assert (p["phase"], p["ready"], p["restarts"]) == ("Running", False, 0), p
    assert p["container_id"] == before[victim]["container_id"]
    assert p["started_at"] == before[victim]["started_at"]
    other = next(n for n in by_name if n != victim)
    assert by_name[other]["ready"] and by_name[other]["restarts"] == 0
    assert not any(e["reason"] == "Killing" for e in events(pc, stack_name))
    desc = describe(pc, victim)
    failed = [r for r in desc["probe_results"] if r["probe"] == "readiness" and not r["ok"]]
    assert failed and "exit code 1" in failed[-1]["message"], desc["probe_results"]
    assert all(isinstance(r["at"], float) for r in desc["probe_results"])

    # Fixed: ready again, still without a restart.
    pc.cli("exec", victim, "--", "touch", "/tmp/ready", check=True)
    pc.wait_ready(stack_name, 2, timeout=10)
    assert {p["name"]: p["restarts"] for p in pc.pods(stack_name)} == dict.fromkeys(before, 0)


def test_never_ready_replica_says_why(pc: Podctl, tmp_path: Path, stack_name: str) -> None:
    # No exec probes in this stack: nothing but the probe results can wake podctl.
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          web:
            image: busybox:1.36
            command: {sh(HTTPD_POLITE)}
            ports: {{http: 8080}}
            stop_grace: 1s
            readiness: {{http: {{port: http, path: /missing.html}}, period: 1s}}
        """,
    )
    pc.start(path)
    p = wait_replica(
        pc,
        stack_name,
        "web",
        "to say why it is not ready",
        lambda p: "HTTP 404" in str(p["reason"]),
        8,
    )
    assert (p["phase"], p["ready"], p["restarts"]) == ("Running", False, 0), p
    desc = describe(pc, p["name"])
    unhealthy = [e for e in desc["events"] if e["reason"] == "Unhealthy"]
    assert unhealthy and "Readiness probe failed: HTTP 404" in unhealthy[-1]["message"], desc


def test_podctl_events_shows_unhealthy(pc: Podctl, tmp_path: Path, stack_name: str) -> None:
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          web:
            image: busybox:1.36
            command: {sh(HTTPD_POLITE)}
            ports: {{http: 8080}}
            stop_grace: 1s
            readiness: {{http: {{port: http, path: /missing.html}}, period: 1s}}
        """,
    )
    pc.start(path)
    wait_for(
        "an Unhealthy event in `podctl events`",
        lambda: any(
            e["reason"] == "Unhealthy" and "HTTP 404" in e["message"]
            for e in events(pc, stack_name)
        ),
        8,
    )


# -- startup -------------------------------------------------------------------------


def test_startup_probe_shields_a_slow_starter_from_liveness(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    slow = "sleep 4; touch /tmp/started; " + POLITE_IDLE
    strict = "{exec: [test, -f, /tmp/started], period: 1s, failure_threshold: 1}"
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          guarded:
            image: busybox:1.36
            command: {sh(slow)}
            stop_grace: 1s
            startup: {{exec: [test, -f, /tmp/started], period: 1s, failure_threshold: 10}}
            liveness: {strict}
          # The same slow starter without a startup probe: liveness kills it.
          unguarded:
            image: busybox:1.36
            command: {sh(slow)}
            stop_grace: 1s
            liveness: {strict}
        """,
    )
    pc.start(path)
    starting = wait_replica(pc, stack_name, "guarded", "running", lambda p: p["container_id"])
    seen = wait_replica(
        pc, stack_name, "guarded", "ready", lambda p: p["ready"] or p["restarts"], 20
    )
    assert seen["ready"] and seen["restarts"] == 0, seen
    assert seen["container_id"] == starting["container_id"]
    ready_after = time.time() - seen["started_at"]
    assert ready_after >= 3.5, f"ready {ready_after:.1f}s after start, before the file existed"
    # Liveness now runs and passes: still the first run a few periods later.
    time.sleep(3 * PERIOD_S)
    p = replica(pc, stack_name, "guarded")
    assert p is not None
    assert (p["ready"], p["restarts"], p["started_at"]) == (True, 0, seen["started_at"]), p
    evs = events(pc, stack_name)
    assert not [e for e in evs if e["reason"] == "Killing" and "/guarded/" in e["object"]], evs
    # The control group: liveness alone killed the same program before it could start.
    assert [e for e in evs if e["reason"] == "Killing" and "/unguarded/" in e["object"]], evs
    u = replica(pc, stack_name, "unguarded")
    assert u is not None and (u["restarts"] >= 1 or "LivenessFailed" in str(u["reason"])), u


# -- depends_on ----------------------------------------------------------------------


def test_dependent_pod_waits_for_its_database_to_be_ready(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    # The "database" opens its port 3 s after it starts; its readiness is a TCP probe.
    db_delay = 3.0
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          db:
            image: busybox:1.36
            command: {sh(f"sleep {db_delay:g}; exec nc -ll -p 5432 -e true")}
            ports: {{pg: 5432}}
            stop_grace: 1s
            readiness: {{tcp: {{port: pg}}, period: 1s}}
          app:
            image: busybox:1.36
            command: {sh(POLITE_IDLE)}
            stop_grace: 1s
            depends_on: [db]
        """,
    )
    pc.start(path)
    waiting: list[dict[str, Any]] = []

    def both_ready() -> dict[str, dict[str, Any]] | None:
        by_pod = {p["pod"]: p for p in pc.pods(stack_name)}
        db, app = by_pod.get("db"), by_pod.get("app")
        if db is None or app is None:
            return None
        if not db["ready"]:
            # Not a container of app may exist while db is not ready.
            assert app["container_id"] is None, (db, app)
            waiting.append(app)
        return by_pod if db["ready"] and app["ready"] else None

    by_pod = wait_for("db, then app, ready", both_ready, 30, every=0.1)
    assert waiting, "never saw app waiting"
    assert all((a["phase"], a["reason"]) == ("Pending", "WaitingFor db") for a in waiting), waiting
    # app's container was created only after db could have been ready: its port
    # opened `db_delay` after db started.
    created = docker("inspect", "-f", "{{.Created}}", by_pod["app"]["container_id"])
    created_at = _parse_engine_time(created)
    assert created_at >= by_pod["db"]["started_at"] + db_delay, (
        created,
        by_pod["db"]["started_at"],
    )


def _parse_engine_time(text: str) -> float:
    """The engine's RFC 3339 time with nanoseconds -> epoch seconds."""
    from datetime import datetime

    date, _, frac = text.strip().rstrip("Z").partition(".")
    whole = datetime.fromisoformat(date + "+00:00").timestamp()
    return whole + float("0." + (frac or "0"))


# -- hanging probes ------------------------------------------------------------------


def test_hanging_probes_fail_by_timeout_and_do_not_stall_other_pods(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          hang:
            image: busybox:1.36
            command: {sh(POLITE_IDLE)}
            stop_grace: 1s
            liveness: {{exec: [sleep, "30"], period: 1s, timeout: 1s, failure_threshold: 2}}
          silent:
            # Accepts connections and never answers.
            image: busybox:1.36
            command: ["nc", "-ll", "-p", "8080", "-e", "sleep", "300"]
            ports: {{http: 8080}}
            stop_grace: 1s
            readiness: {{http: {{port: http}}, period: 1s, timeout: 1s}}
          steady:
            image: busybox:1.36
            command: {sh(HTTPD_POLITE)}
            ports: {{http: 8080}}
            stop_grace: 1s
            readiness: {{http: {{port: http}}, period: 1s}}
        """,
    )
    pc.start(path)
    wait_replica(pc, stack_name, "steady", "ready", lambda p: p["ready"])

    # While `hang` is killed and restarted over and over, `steady` stays ready.
    deadline = time.monotonic() + 6.0
    while time.monotonic() < deadline:
        by_pod = {p["pod"]: p for p in pc.pods(stack_name)}
        assert by_pod["steady"]["ready"], by_pod["steady"]
        time.sleep(0.2)
    hang = wait_replica(pc, stack_name, "hang", "restarted", lambda p: p["restarts"] >= 1, 10)
    assert hang["restarts"] >= 1
    evs = events(pc, stack_name)
    killing = [e for e in evs if e["reason"] == "Killing" and "/hang/" in e["object"]]
    assert killing and "timeout after 1s" in killing[0]["message"], killing

    silent = replica(pc, stack_name, "silent")
    assert silent is not None
    assert (silent["phase"], silent["ready"], silent["restarts"]) == ("Running", False, 0)
    assert "timeout after 1s" in str(silent["reason"]), silent
    results = describe(pc, silent["name"])["probe_results"]
    assert results and all(not r["ok"] and "timeout" in r["message"] for r in results), results

    # A killed `steady` is replaced as promptly as in a stack without hanging probes.
    steady = by_pod["steady"]
    docker("kill", steady["container_id"])
    killed = time.monotonic()
    wait_replica(
        pc,
        stack_name,
        "steady",
        "back after docker kill",
        lambda p: p["ready"] and p["restarts"] == 1,
        8,
    )
    assert time.monotonic() - killed < 5.0


# -- stopping: SIGTERM, stop_grace, SIGKILL ------------------------------------------

STUBBORN = 'touch /tmp/alive; trap "echo ignoring TERM" TERM; while :; do sleep 0.1; done'


def _signals(seen: list[tuple[str, float, str]], pod: str) -> list[tuple[float, str]]:
    return [(at, a) for p, at, a in seen if p == pod]


def _term_to_kill(events_of_pod: list[tuple[float, str]]) -> float:
    """Seconds from the first SIGTERM to the SIGKILL that follows it."""
    term = next(at for at, a in events_of_pod if a == "kill 15")
    kill = next(at for at, a in events_of_pod if a == "kill 9" and at >= term)
    return kill - term


def test_stop_sends_sigterm_then_sigkill_after_stop_grace(
    pc: Podctl, tmp_path: Path, stack_name: str, engine_events: Callable[[str], EngineEvents]
) -> None:
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          stubborn:
            image: busybox:1.36
            command: {sh(STUBBORN)}
            stop_grace: 2s
            liveness: {{exec: [test, -f, /tmp/alive], period: 1s, failure_threshold: 1}}
          polite:
            image: busybox:1.36
            command: {sh(POLITE_IDLE)}
            stop_grace: 2s
        """,
    )
    pc.start(path)
    (stub, _) = sorted(pc.wait_ready(stack_name, 2), key=lambda p: p["pod"] != "stubborn")

    # A liveness kill: SIGTERM, the 2 s grace, then SIGKILL; then the restart.
    rec = engine_events(stack_name)
    pc.cli("exec", stub["name"], "--", "rm", "/tmp/alive", check=True)
    wait_replica(pc, stack_name, "stubborn", "restarted", lambda p: p["restarts"] == 1, 20)
    seen = _signals(rec.rows(), "stubborn")
    assert 1.8 <= _term_to_kill(seen) <= 3.0, seen
    kinds = [a for _, a in seen]
    assert kinds.index("kill 15") < kinds.index("kill 9") < kinds.index("die"), seen
    assert any(e["reason"] == "Killing" for e in describe(pc, stub["name"])["events"])

    # Stopping podctl: the same for every replica; one that obeys SIGTERM is not SIGKILLed.
    rec = engine_events(stack_name)
    assert pc.stop() == 0
    assert stack_containers(stack_name) == []
    seen_all = rec.rows()
    stub_sigs = _signals(seen_all, "stubborn")
    assert 1.8 <= _term_to_kill(stub_sigs) <= 3.0, stub_sigs
    polite = _signals(seen_all, "polite")
    assert [a for _, a in polite if a.startswith("kill")] == ["kill 15"], polite
    p_term = next(at for at, a in polite if a == "kill 15")
    p_die = next(at for at, a in polite if a == "die")
    assert p_die - p_term < 1.0, polite


def test_down_honours_stop_grace(
    pc: Podctl, tmp_path: Path, stack_name: str, engine_events: Callable[[str], EngineEvents]
) -> None:
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          stubborn:
            image: busybox:1.36
            command: {sh(STUBBORN)}
            stop_grace: 1s
        """,
    )
    pc.start(path)
    pc.wait_ready(stack_name, 1)
    rec = engine_events(stack_name)
    pc.cli("down", stack_name, check=True)
    seen = _signals(rec.rows(), "stubborn")
    assert _term_to_kill(seen) <= 2.0, seen


def test_each_pod_gets_its_own_stop_grace(
    pc: Podctl, tmp_path: Path, stack_name: str, engine_events: Callable[[str], EngineEvents]
) -> None:
    # Kubernetes honours each pod's terminationGracePeriodSeconds; a short grace
    # must not be stretched to another pod's longer one.
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          quick:
            image: busybox:1.36
            command: {sh(STUBBORN)}
            stop_grace: 1s
          slow:
            image: busybox:1.36
            command: {sh(POLITE_IDLE)}
            stop_grace: 8s
        """,
    )
    pc.start(path)
    pc.wait_ready(stack_name, 2)
    rec = engine_events(stack_name)
    assert pc.stop() == 0
    seen = _signals(rec.rows(), "quick")
    assert _term_to_kill(seen) <= 2.0, seen


def test_liveness_kill_waits_stop_grace_without_holding_up_other_pods(
    pc: Podctl, tmp_path: Path, stack_name: str, engine_events: Callable[[str], EngineEvents]
) -> None:
    # A hung program often ignores SIGTERM too: its kill takes the whole grace.
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          wedged:
            image: busybox:1.36
            command: {sh('sleep 2; trap "" TERM; while :; do sleep 0.1; done')}
            stop_grace: 6s
            liveness: {{exec: [sleep, "30"], initial_delay: 2s, period: 1s, timeout: 1s,
                        failure_threshold: 1}}
          steady:
            image: busybox:1.36
            command: {sh(POLITE_IDLE)}
            stop_grace: 1s
        """,
    )
    rec = engine_events(stack_name)
    pc.start(path)
    steady = wait_replica(pc, stack_name, "steady", "ready", lambda p: p["ready"])
    wait_for(
        "wedged's Killing event",
        lambda: any(e["reason"] == "Killing" for e in events(pc, stack_name)),
        15,
        every=0.1,
    )
    # While podctl waits out wedged's grace, steady dies: it must come back at once.
    docker("kill", steady["container_id"])
    killed = time.monotonic()
    wait_replica(
        pc,
        stack_name,
        "steady",
        "back after docker kill",
        lambda p: p["ready"] and p["restarts"] == 1,
        20,
    )
    took = time.monotonic() - killed
    assert took < 4.0, f"steady came back after {took:.1f}s, held up by wedged's stop grace"
    # Meanwhile wedged got its SIGTERM, its whole 6 s grace, then SIGKILL, and came back.
    wait_replica(pc, stack_name, "wedged", "restarted", lambda p: p["restarts"] >= 1, 20)
    wedged = _signals(rec.rows(), "wedged")
    assert 5.8 <= _term_to_kill(wedged) <= 7.5, wedged
