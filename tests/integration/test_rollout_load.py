"""Rollouts under load on the real engine, through podctl's service proxy.

Busybox httpd replicas serve a page holding their revision's env value; 20 client
threads in the test process make one request per connection through the service
port the whole time. What a user of a rolling update is promised: no failed request
while the env changes (three times, the later edits landing mid-rollout), every
answer from the newest revision once the rollout is complete, a crash-looping
revision rolled back by itself with traffic never interrupted, and a podctl killed
with SIGKILL mid-rollout that converges after a restart without duplicates and
without going below the ready floor.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.harness import docker, free_port, wait_for, write_stack

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.integration.harness import Podctl

pytestmark = pytest.mark.docker

CLIENTS = 20
# Writes its revision's value (env REV) as the page, then serves it; exits on SIGTERM
# (busybox httpd as PID 1 would ignore it). `$$` is a literal `$` in a stack file.
SERVE = (
    'mkdir -p /www; echo "$${REV}" > /www/index.html; trap "exit 0" TERM;'
    " httpd -f -p 8080 -h /www & wait"
)
CRASH = 'echo "revision $${REV} fails at once"; exit 1'


def stack_text(
    stack: str,
    port: int,
    rev: str,
    *,
    replicas: int = 3,
    script: str = SERVE,
    rollout: str = "{max_surge: 1, max_unavailable: 0, progress_deadline: 2m}",
    ready_path: str = "/index.html",
) -> str:
    return f"""
        name: {stack}
        pods:
          web:
            image: busybox:1.36
            command: {json.dumps(["sh", "-c", script])}
            env: {{REV: {rev}}}
            replicas: {replicas}
            ports: {{http: 8080}}
            readiness: {{http: {{port: http, path: {ready_path}}}, period: 1s}}
            stop_grace: 2s
            rollout: {rollout}
        services:
          web: {{pod: web, port: {port}, target: http}}
        """


def save(path: Path, text: str) -> None:
    """Save as an editor does: a whole new file renamed over the old one."""
    tmp = path.with_suffix(".tmp")
    write_stack(tmp.parent, text, tmp.name)
    os.replace(tmp, path)


@dataclass
class Load:
    """CLIENTS threads, each making one GET per connection until stopped."""

    port: int
    results: list[tuple[float, float, str | None, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _client(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            body: str | None = None
            error = ""
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", "/", headers={"Connection": "close"})
                resp = conn.getresponse()
                text = resp.read().decode(errors="replace").strip()
                if resp.status == 200:
                    body = text
                else:
                    error = f"HTTP {resp.status}"
            except Exception as exc:  # every kind of failure counts
                error = f"{type(exc).__name__}: {exc}"
            finally:
                conn.close()
            with self._lock:
                self.results.append((started, time.monotonic(), body, error))

    def __enter__(self) -> Load:
        for _ in range(CLIENTS):
            t = threading.Thread(target=self._client, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def snapshot(self) -> list[tuple[float, float, str | None, str]]:
        with self._lock:
            return list(self.results)

    def failures(self) -> list[str]:
        return [e for _, _, body, e in self.snapshot() if body is None]

    def seen(self, value: str) -> bool:
        return any(body == value for _, _, body, _ in self.snapshot()[-200:])

    def bodies_since(self, t: float) -> set[str | None]:
        return {body for started, _, body, _ in self.snapshot() if started >= t}


@pytest.fixture
def port() -> int:
    return free_port()


def serving(pc: Podctl, stack: str, port: int, value: str, n: int = 3) -> Any:
    """Every replica ready and the service answering with `value`."""
    pods = [p for p in pc.pods(stack) if p["ready"]]
    if len(pods) != n:
        return None
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read().decode().strip() == value
    finally:
        conn.close()


def events(pc: Podctl, stack: str) -> list[dict[str, Any]]:
    return list(json.loads(pc.cli("events", stack, "-o", "json", check=True).stdout))


def rollout_status(pc: Podctl, stack: str, timeout: str = "3m") -> int:
    proc = pc.cli("rollout", "status", f"{stack}/web", "--timeout", timeout, timeout=240)
    return proc.returncode


@dataclass(frozen=True)
class Replica:
    id: str
    state: str
    revision: str
    replica: str


def containers(stack: str) -> list[Replica]:
    """The stack's web containers as the engine has them (not as podctl says)."""
    fmt = (
        '{{.ID}} {{.State}} {{.Label "io.podctl.revision"}} {{.Label "io.podctl.replica"}}'
        ' {{.Label "io.podctl.pod"}}'
    )
    out = docker("ps", "-a", "--filter", f"label=io.podctl.stack={stack}", "--format", fmt)
    reps = []
    for line in out.splitlines():
        cid, state, rev, idx, pod = line.split()
        if pod == "web":
            reps.append(Replica(cid, state, rev, idx))
    return reps


@pytest.fixture
def engine_watch(stack_name: str) -> Iterator[list[list[Replica]]]:
    """The stack's containers sampled from the engine every 0.2 s while a test runs."""
    samples: list[list[Replica]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                samples.append(containers(stack_name))
            except AssertionError:
                pass  # a docker CLI hiccup under load: the next sample counts
            stop.wait(0.2)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        yield samples
    finally:
        stop.set()
        t.join(70)


def test_env_changed_three_times_under_load_fails_no_request(
    pc: Podctl, tmp_path: Path, stack_name: str, port: int
) -> None:
    path = tmp_path / "stack.yaml"
    save(path, stack_text(stack_name, port, "v0"))
    pc.start(path, extra=())  # the file is watched: edits are hot reloads
    wait_for("3 ready replicas serving v0", lambda: serving(pc, stack_name, port, "v0"), 90)

    with Load(port) as load:
        wait_for("the clients to get answers", lambda: load.seen("v0"), 30)
        for rev in ("v1", "v2", "v3"):
            save(path, stack_text(stack_name, port, rev))
            # The next edit lands mid-rollout: once a replica of this one serves.
            wait_for(f"an answer from {rev}", lambda rev=rev: load.seen(rev), 120)
        assert rollout_status(pc, stack_name) == 0, pc.output()[-3000:]
        done = time.monotonic()
        pods = pc.pods(stack_name)
        wait_for("more answers after the rollout", lambda: len(load.bodies_since(done)) > 0, 30)
        time.sleep(1.0)  # a second of traffic after completion, from every client
    total = len(load.snapshot())
    assert load.failures() == [], f"{len(load.failures())} of {total} failed"
    assert total > 200, total
    assert load.bodies_since(done) == {"v3"}
    assert len(pods) == 3 and all(p["ready"] for p in pods), pods
    assert len({p["revision"] for p in pods}) == 1, pods
    reasons = [e["reason"] for e in events(pc, stack_name)]
    assert "RolloutStarted" in reasons and "RolloutComplete" in reasons, reasons


def test_a_crash_looping_revision_is_rolled_back_without_interrupting_traffic(
    pc: Podctl, tmp_path: Path, stack_name: str, port: int
) -> None:
    path = tmp_path / "stack.yaml"
    fast = "{max_surge: 1, max_unavailable: 0, progress_deadline: 15s}"
    save(path, stack_text(stack_name, port, "v0", rollout=fast))
    pc.start(path, extra=())
    wait_for("3 ready replicas serving v0", lambda: serving(pc, stack_name, port, "v0"), 90)

    with Load(port) as load:
        wait_for("the clients to get answers", lambda: load.seen("v0"), 30)
        started = time.monotonic()
        save(path, stack_text(stack_name, port, "v1", script=CRASH, rollout=fast))
        wait_for(
            "the rollout of the crashing revision",
            lambda: any(e["reason"] == "RolloutStarted" for e in events(pc, stack_name)),
            30,
        )
        assert rollout_status(pc, stack_name, "2m") == 1
        rolled = wait_for(
            "a RolledBack event",
            lambda: [e for e in events(pc, stack_name) if e["reason"] == "RolledBack"],
            60,
        )
        took = time.monotonic() - started
        wait_for("v0 serving on every replica", lambda: serving(pc, stack_name, port, "v0"), 60)
        after = time.monotonic()
        wait_for("more answers", lambda: len(load.bodies_since(after)) > 0, 30)
    assert took < 60, took
    assert "rolled back" in rolled[0]["message"], rolled
    assert "RolloutFailed" in [e["reason"] for e in events(pc, stack_name)]
    total = len(load.snapshot())
    assert load.failures() == [], f"{len(load.failures())} of {total} failed"
    assert {b for _, _, b, _ in load.snapshot()} == {"v0"}
    assert {r.revision for r in containers(stack_name)} == {p["revision"] for p in pc.pods()}


def test_kill9_mid_rollout_converges_without_duplicates_or_going_below_the_floor(
    pc: Podctl,
    tmp_path: Path,
    stack_name: str,
    port: int,
    engine_watch: list[list[Replica]],
) -> None:
    path = tmp_path / "stack.yaml"
    # min_ready keeps each step a few seconds long: room to kill podctl in the middle.
    slow = "{max_surge: 1, max_unavailable: 0, min_ready: 3s, progress_deadline: 3m}"
    save(path, stack_text(stack_name, port, "v0", rollout=slow))
    pc.start(path, extra=())
    wait_for("3 ready replicas serving v0", lambda: serving(pc, stack_name, port, "v0"), 90)
    (v0,) = {r.revision for r in containers(stack_name)}

    save(path, stack_text(stack_name, port, "v1", rollout=slow))

    def mid_rollout() -> bool:
        cs = containers(stack_name)
        new = [c for c in cs if c.revision != v0]
        old = [c for c in cs if c.revision == v0]
        # A new replica is up and an old one has gone: in the middle, not at the start.
        return len(new) >= 1 and 0 < len(old) < 3

    wait_for("the rollout to be under way", mid_rollout, 120, every=0.1)
    pc.kill9()
    mark = len(engine_watch)
    while_down = containers(stack_name)
    pc.start(path, extra=())
    wait_for("3 ready replicas serving v1", lambda: serving(pc, stack_name, port, "v1"), 180)
    assert rollout_status(pc, stack_name) == 0
    final = containers(stack_name)

    # Converged to the intended revision: three, all of it, all running.
    (v1,) = {r.revision for r in final}
    assert v1 != v0
    assert sorted(r.replica for r in final) == ["0", "1", "2"]
    assert all(r.state == "running" for r in final)
    # While podctl was dead nothing was lost: the ready floor held in the engine.
    assert sum(r.state == "running" for r in while_down) >= 3, while_down
    # The restarted podctl never went past the surge ceiling, below the floor of
    # running containers, or made a second container of one revision in one slot.
    after = [s for s in engine_watch[mark:] if s]
    assert after, "no sample of the engine after the restart"
    for sample in after:
        # replicas + max_surge, plus the one old replica being drained and stopped:
        # as in Kubernetes, a terminating replica no longer counts against the
        # surge (min_ready: 3s keeps the removals seconds apart, one at a time).
        assert len(sample) <= 3 + 1 + 1, sample
        assert sum(r.state == "running" for r in sample) >= 3, sample
        slots = [(r.replica, r.revision) for r in sample]
        assert len(slots) == len(set(slots)), f"duplicate replica: {sample}"


def test_old_replicas_keep_their_own_readiness_probe_mid_rollout(
    pc: Podctl, tmp_path: Path, stack_name: str, port: int
) -> None:
    # v1 moves the readiness probe to a page only v1 serves. Probed with v1's probe,
    # v0's replicas would all fail it within seconds and leave the service together;
    # probed with their own, they stay ready until each is replaced.
    path = tmp_path / "stack.yaml"
    slow = "{max_surge: 1, max_unavailable: 0, min_ready: 3s, progress_deadline: 3m}"
    save(path, stack_text(stack_name, port, "v0", rollout=slow))
    pc.start(path, extra=())
    wait_for("3 ready replicas serving v0", lambda: serving(pc, stack_name, port, "v0"), 90)
    v1_serves = SERVE.replace("; trap", "; touch /www/ready-v1.html; trap")
    ready_counts: list[int] = []
    with Load(port) as load:
        wait_for("the clients to get answers", lambda: load.seen("v0"), 30)
        save(
            path,
            stack_text(
                stack_name, port, "v1", rollout=slow, script=v1_serves, ready_path="/ready-v1.html"
            ),
        )

        def done() -> bool:
            pods = pc.pods(stack_name)
            ready_counts.append(sum(1 for p in pods if p["ready"]))
            return (
                load.seen("v1")
                and serving(pc, stack_name, port, "v1") is True
                and all(p["ready"] for p in pods)
                and len({p["revision"] for p in pods}) == 1
            )

        wait_for("the rollout to v1 to finish", done, 180, every=0.5)
        assert rollout_status(pc, stack_name) == 0
    total = len(load.snapshot())
    assert load.failures() == [], f"{len(load.failures())} of {total} failed"
    # The ready floor (replicas - max_unavailable = 3) held at every look.
    assert min(ready_counts) >= 3, ready_counts
