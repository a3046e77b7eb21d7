"""Health-probe figures (issue 3): liveness detection-to-restart, probe CPU overhead.

`python -m bench.health` drives `podctl run` as a user does (stack file, CLI with
`-o json`) against the local engine, writes bench/results/health.md and prints it.

1. Detection-to-restart. Replicas of a busybox httpd with a liveness probe
   (period 1s, timeout 1s, failure_threshold 3); per trial the health file of a
   fresh replica is removed (`podctl exec NAME -- sh -c 'rm F && cat /proc/uptime'`:
   the container reads the host's uptime, which dates the removal to 10 ms) and
   the replica's new engine StartedAt is read from `podctl get pods -o json`.
   The `Killing` event in `podctl events -o json` splits that time into detection
   and kill+restart. Each trial uses a replica that never restarted before, so
   every one pays the same (first) crash-loop back-off of 1 s. Median of 5 per
   probe kind, against the issue's bound `period x failure_threshold + timeout + 2 s`.
2. Probe CPU overhead. 50 replicas with one probe each (tcp, http or exec, every
   1 s) versus the same 50 replicas without probes, and exec again with 10
   replicas (50 exec probes a second need more engine CPU than a 2-CPU host
   has). CPU % of the `podctl run` process from /proc/PID/stat (utime+stime)
   over a 20 s window once all run; the engine side (dockerd, containerd and the
   stack's shims, children included) is shown too, since exec probes cost the
   engine far more than podctl.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "health.md"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PY = sys.executable
IMAGE = "busybox:1.36"
T = TypeVar("T")
LOG_DIR: Path | None = None  # --log-dir: keep each `podctl run` log there

# httpd as PID 1 ignores SIGTERM; under a shell that exits on it, a stop is immediate
# and the restart time measures podctl, not a stop grace.
HTTPD = (
    "mkdir -p /www; echo ok > /www/index.html; echo ok > /www/health.html; "
    "touch /tmp/healthy; "
    'trap "exit 0" TERM; httpd -f -p 8080 -h /www & wait'
)

# Liveness settings of the restart trials (Kubernetes' default threshold, 1 s period).
PERIOD_S, TIMEOUT_S, FAILURE_THRESHOLD = 1.0, 1.0, 3
BOUND_S = PERIOD_S * FAILURE_THRESHOLD + TIMEOUT_S + 2.0

LIVENESS = {
    "http": (
        "{http: {port: http, path: /health.html}, "
        f"period: {PERIOD_S:g}s, timeout: {TIMEOUT_S:g}s, failure_threshold: {FAILURE_THRESHOLD}}}",
        "rm /www/health.html",
    ),
    "exec": (
        "{exec: [test, -f, /tmp/healthy], "
        f"period: {PERIOD_S:g}s, timeout: {TIMEOUT_S:g}s, failure_threshold: {FAILURE_THRESHOLD}}}",
        "rm /tmp/healthy",
    ),
}

EXEC_PROBE = "{exec: [test, -f, /tmp/healthy], period: 1s}"
# name -> (readiness probe, module `podctl run` is started from)
CPU_PROBES = {
    "none": (None, "podctl"),
    "tcp": ("{tcp: {port: http}, period: 1s}", "podctl"),
    "http": ("{http: {port: http, path: /health.html}, period: 1s}", "podctl"),
    "exec": (EXEC_PROBE, "podctl"),
}
# Idle: a converged stack whose replicas are probed as a production stack would be.
IDLE_PROBE = "{tcp: {port: http}, period: 10s}"
IDLE_RESULTS = ROOT / "bench" / "results" / "idle.md"


# -- driving podctl ---------------------------------------------------------------


def wait_for(what: str, fn: Callable[[], T | None], timeout: float, every: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = fn()
        except (subprocess.SubprocessError, json.JSONDecodeError, KeyError) as exc:
            last = exc
        else:
            if result:
                return result
            last = result
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def docker(*args: str) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    return proc.stdout.strip()


def remove_stack(stack: str) -> None:
    sel = f"label=io.podctl.stack={stack}"
    ids = docker("ps", "-aq", "--filter", sel).split()
    if ids:
        docker("rm", "-f", *ids)
    nets = docker("network", "ls", "-q", "--filter", sel).split()
    if nets:
        docker("network", "rm", *nets)


class Podctl:
    """One `podctl run` with its own socket and state, and CLI calls against it."""

    def __init__(self, tmp: Path, stack: str, module: str = "podctl") -> None:
        self.tmp = tmp
        self.stack = stack
        self.module = module  # what `run` starts (the CLI calls are plain podctl)
        self.env = dict(os.environ)
        self.env.update(
            PODCTL_SOCKET=str(tmp / "podctl.sock"),
            PODCTL_STATE_DIR=str(tmp / "state"),
            PODCTL_RUNTIME_DIR=str(tmp / "run"),
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        proc = subprocess.run(
            [PY, "-m", "podctl", *args], capture_output=True, text=True, env=self.env, timeout=60
        )
        if proc.returncode != 0:
            raise subprocess.SubprocessError(f"podctl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "-o", "json"))

    def pods(self) -> list[dict[str, Any]]:
        return list(self.json("get", "pods", self.stack))

    def start(self, stack_file: Path) -> None:
        log = (self.tmp / "podctl-run.log").open("ab")
        self.proc = subprocess.Popen(
            [PY, "-m", self.module, "run", str(stack_file), "--no-watch"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )
        wait_for("the control socket", lambda: self.cli("get", "stacks") is not None, 30)

    def wait_ready(self, n: int, timeout: float = 300.0) -> list[dict[str, Any]]:
        def ready() -> list[dict[str, Any]] | None:
            pods = [p for p in self.pods() if p["ready"]]
            return pods if len(pods) >= n else None

        return wait_for(f"{n} ready replicas", ready, timeout, every=0.5)

    def wait_running(self, n: int, timeout: float = 300.0) -> list[dict[str, Any]]:
        def running() -> list[dict[str, Any]] | None:
            pods = [p for p in self.pods() if p["phase"] == "Running" and p["container_id"]]
            return pods if len(pods) >= n else None

        return wait_for(f"{n} running replicas", running, timeout, every=0.5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextlib.contextmanager
def running(stack_yaml: str, stack: str, module: str = "podctl") -> Iterator[Podctl]:
    with tempfile.TemporaryDirectory(prefix="podctl-bench-health-") as d:
        tmp = Path(d)
        path = tmp / "stack.yaml"
        path.write_text(textwrap.dedent(stack_yaml))
        pc = Podctl(tmp, stack, module)
        try:
            pc.start(path)
            yield pc
        except BaseException:
            log = tmp / "podctl-run.log"
            if log.exists():
                print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            pc.stop()
            remove_stack(stack)
            if LOG_DIR is not None:
                LOG_DIR.mkdir(parents=True, exist_ok=True)
                log = tmp / "podctl-run.log"
                if log.exists():
                    (LOG_DIR / f"{stack}.log").write_bytes(log.read_bytes())


def new_stack_name() -> str:
    return f"bh-{secrets.token_hex(3)}"


# -- 1. detection-to-restart ------------------------------------------------------


@dataclass
class Trial:
    kind: str
    total: float  # removal -> new StartedAt
    detect: float  # removal -> Killing event
    restart: float  # Killing event -> new StartedAt
    stop: float  # Killing event -> the engine's `die` (the engine's stop latency)
    restarted_before: int  # restarts of the replica before its trial (0: a clean trial)


class EngineEvents:
    """A stack's engine events, recorded live (`docker events` to a file).

    Reading them back later with --since/--until is not reliable: the engine
    replays only a short buffer, which exec probes (three events each) overrun.
    """

    def __init__(self, stack: str, path: Path, *only: str) -> None:
        self.path = path
        self._file = path.open("wb")
        filters = [f"label=io.podctl.stack={stack}", *(f"event={e}" for e in only)]
        self.proc = subprocess.Popen(
            [
                "docker",
                "events",
                "--since",
                f"{time.time() - 0.5:.3f}",
                *[a for f in filters for a in ("--filter", f)],
                "--format",
                "{{.ID}} {{.Action}} {{.TimeNano}}",
            ],
            stdout=self._file,
            stderr=subprocess.DEVNULL,
        )

    def rows(self) -> list[tuple[str, str, float]]:
        """(container id, action, time) recorded so far."""
        out = []
        for line in self.path.read_text().splitlines():
            cid, _, rest = line.partition(" ")
            action, _, nano = rest.rpartition(" ")
            out.append((cid, action.split(":")[0], int(nano) / 1e9))
        return out

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._file.close()


def uptime_offset() -> float:
    """Wall clock minus the host's uptime (containers read the host's /proc/uptime)."""
    up = float(Path("/proc/uptime").read_text().split()[0])
    return time.time() - up


def restart_trials(trials: int) -> list[Trial]:
    stack = new_stack_name()
    pods = "".join(
        f"""
          {kind}:
            image: {IMAGE}
            command: {json.dumps(["sh", "-c", HTTPD])}
            replicas: {trials}
            ports: {{http: 8080}}
            stop_grace: 5s
            liveness: {probe}"""
        for kind, (probe, _) in LIVENESS.items()
    )
    out: list[Trial] = []
    with (
        contextlib.ExitStack() as cleanup,
        running(
            f"""
        name: {stack}
        pods:{pods}
        """,
            stack,
        ) as pc,
    ):
        pc.wait_ready(trials * len(LIVENESS), timeout=120)
        rec = EngineEvents(stack, pc.tmp / "engine-events.log", "kill", "die", "start")
        cleanup.callback(rec.close)
        for kind, (_, breaker) in LIVENESS.items():
            for i in range(trials):
                (p,) = [x for x in pc.pods() if x["pod"] == kind and x["replica"] == i]
                up = pc.cli("exec", p["name"], "--", "sh", "-c", f"{breaker} && cat /proc/uptime")
                broken_at = uptime_offset() + float(up.split()[0])

                def restarted(kind: str = kind, i: int = i, t: float = broken_at) -> Any:
                    for x in pc.pods():
                        mine = x["pod"] == kind and x["replica"] == i
                        if mine and x["restarts"] >= 1 and x["ready"] and x["started_at"] > t:
                            return x
                    return None

                q = wait_for(f"{kind}-{i} restarted", restarted, 60, every=0.1)
                obj = f"pod:{stack}/{kind}/{i}"
                killing = [
                    e["time"]
                    for e in pc.json("events", stack)
                    if e["object"] == obj and e["reason"] == "Killing" and e["time"] > broken_at
                ]
                kill_at = min(killing) if killing else float("nan")
                started = float(q["started_at"])
                time.sleep(0.3)  # the recorder is a moment behind
                die = [
                    at
                    for cid, action, at in rec.rows()
                    if cid == p["container_id"] and action == "die" and at > broken_at
                ]
                trial = Trial(
                    kind=kind,
                    total=started - broken_at,
                    detect=kill_at - broken_at,
                    restart=started - kill_at,
                    stop=(min(die) if die else float("nan")) - kill_at,
                    restarted_before=int(p["restarts"]),
                )
                out.append(trial)
                print(
                    f"  liveness {kind} #{i + 1}: restarted {trial.total:.2f}s after the "
                    f"removal (Killing after {trial.detect:.2f}s, engine stop "
                    f"{trial.stop:.2f}s; restarts before: {trial.restarted_before})",
                    file=sys.stderr,
                )
                time.sleep(0.5)
    return out


# -- 2. probe CPU overhead ----------------------------------------------------------


def proc_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds of a process (utime+stime; + reaped children's when asked)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def pids_named(*names: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() in names:
                    out.append(int(d.name))
            except OSError:
                continue
    return out


def shim_pids(container_ids: set[str]) -> list[int]:
    """containerd shims of these containers (their runc children are reaped into them)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if not (d / "comm").read_text().startswith("containerd-shim"):
                continue
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"-id" in argv:
            cid = argv[argv.index(b"-id") + 1].decode()
            if cid in container_ids:
                out.append(int(d.name))
    return out


@dataclass
class CpuRow:
    probe: str
    replicas: int
    podctl_pct: float
    engine_pct: float
    probe_period: float | None  # measured, median, one replica
    events_per_s: float  # engine events of the stack (exec probes make 3 each)
    rss_mib: float
    extra: dict[str, float] = field(default_factory=dict)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_run(
    probe_name: str, probe: str | None, module: str, replicas: int, window: float
) -> CpuRow:
    stack = new_stack_name()
    probe_line = f"readiness: {probe}" if probe else ""
    yaml = f"""
    name: {stack}
    pods:
      web:
        image: {IMAGE}
        command: {json.dumps(["sh", "-c", HTTPD])}
        replicas: {replicas}
        ports: {{http: 8080}}
        stop_grace: 2s
        {probe_line}
    """
    with running(yaml, stack, module) as pc:
        # Running, not ready: probes that cannot keep up (exec on a small host) are
        # part of what is measured, so all replicas being ready is not a precondition.
        pods = pc.wait_running(replicas, timeout=600)
        assert pc.proc is not None
        pid = pc.proc.pid
        with contextlib.suppress(RuntimeError):
            pc.wait_ready(replicas, timeout=30)
        time.sleep(5.0)  # let start-up work (first probes, listeners) settle
        ids = {p["container_id"] for p in pods}
        engine = pids_named("dockerd", "containerd")
        shims = shim_pids(ids)

        def engine_cpu() -> float:
            return sum(proc_cpu(p) for p in engine) + sum(proc_cpu(p, True) for p in shims)

        rec = EngineEvents(stack, pc.tmp / "engine-events.log")
        try:
            time.sleep(1.0)  # past the recorder's replay of the last half second
            t0, c0, e0 = time.time(), proc_cpu(pid), engine_cpu()
            time.sleep(window)
            t1, c1, e1 = time.time(), proc_cpu(pid), engine_cpu()
            time.sleep(0.5)
        finally:
            rec.close()
        events = sum(1 for _, _, at in rec.rows() if t0 <= at <= t1)
        rss = rss_mib(pid)
        period = None
        if probe:
            name = sorted(p["name"] for p in pods)[0]
            results = json.loads(pc.cli("describe", "pod", name, "-o", "json"))["probe_results"]
            ats = [r["at"] for r in results]
            if len(ats) >= 2:
                period = statistics.median(b - a for a, b in itertools.pairwise(ats))
        ready_now = sum(p["ready"] for p in pc.pods())
    dt = t1 - t0
    row = CpuRow(
        probe=probe_name,
        replicas=replicas,
        podctl_pct=100.0 * (c1 - c0) / dt,
        engine_pct=100.0 * (e1 - e0) / dt,
        probe_period=period,
        events_per_s=events / dt,
        rss_mib=rss,
    )
    row.extra["ready"] = ready_now
    print(
        f"  {replicas} replicas, probe {probe_name}: podctl {row.podctl_pct:.1f}% CPU, "
        f"engine {row.engine_pct:.1f}%, {row.events_per_s:.0f} engine events/s, "
        f"{ready_now} ready",
        file=sys.stderr,
    )
    return row


# -- report ------------------------------------------------------------------------


def host_line() -> str:
    cpus = os.cpu_count()
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    engine = docker("version", "--format", "{{.Server.Version}}")
    load = Path("/proc/loadavg").read_text().split()[:3]
    return (
        f"{cpus} CPUs ({model or 'unknown'}), Docker {engine}, Python "
        f"{sys.version.split()[0]}; load average at the end {' '.join(load)}"
    )


def report(trials: list[Trial], cpu: list[CpuRow], args: argparse.Namespace) -> str:
    lines = [
        "# Health probes: figures",
        "",
        f"`python -m bench.health` ({time.strftime('%Y-%m-%d %H:%M')}); {host_line()}.",
        "",
    ]
    if trials:
        lines += [
            "## Liveness: detection to restart",
            "",
            f"Liveness probe every {PERIOD_S:g}s, timeout {TIMEOUT_S:g}s, failure_threshold "
            f"{FAILURE_THRESHOLD}; bound = period x failure_threshold + timeout + 2 s = "
            f"**{BOUND_S:g} s**. Time from the health file's removal to the restarted "
            "container's StartedAt; each trial on a replica's first restart (back-off 1 s).",
            "",
            "| probe | median | min | max | detection (→ Killing), median | "
            "Killing → running, median | of which engine stop (Killing → die) | "
            "within bound |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for kind in LIVENESS:
            ts = [t for t in trials if t.kind == kind]
            if not ts:
                continue
            tot = [t.total for t in ts]
            lines.append(
                f"| {kind} | **{statistics.median(tot):.2f} s** | {min(tot):.2f} s | "
                f"{max(tot):.2f} s | {statistics.median(t.detect for t in ts):.2f} s | "
                f"{statistics.median(t.restart for t in ts):.2f} s | "
                f"{statistics.median(t.stop for t in ts):.2f} s | "
                f"{sum(x <= BOUND_S for x in tot)}/{len(tot)} |"
            )
        dirty = [t for t in trials if t.restarted_before]
        if dirty:
            lines += [
                "",
                f"{len(dirty)} trial(s) ran on a replica the probe had already restarted "
                "(a probe timing out under engine load), so they paid a longer back-off.",
            ]
        lines += [
            "",
            f"Detection is {FAILURE_THRESHOLD - 1} to {FAILURE_THRESHOLD} periods by construction "
            "(the first failing probe comes up to one period after the removal); the rest is "
            "the kill (SIGTERM, obeyed at once here), the 1 s crash-loop back-off podctl "
            "applies even to the first restart (the kubelet restarts the first time at once), "
            "and the engine's start.",
            "",
        ]
    if cpu:
        base = next((r for r in cpu if r.probe == "none"), None)
        lines += [
            "## Probe CPU overhead: one probe per replica every 1 s",
            "",
            f"CPU of the `podctl run` process (utime+stime from /proc/PID/stat) over "
            f"{args.window:g} s once all replicas run (and are ready, or 30 s passed); "
            "100 % = one core. "
            "*engine* = dockerd + containerd + the stack's containerd shims "
            "(with their reaped runc children). "
            "*events/s* = engine events labelled with the stack (an exec probe makes three; "
            "they do not wake the controller). *per probe* = CPU time per probe attempt, "
            "above the no-probe run.",
            "",
            "| probes | replicas | podctl CPU | overhead vs none | podctl per probe | "
            "engine CPU | engine per probe | measured probe period | engine events/s | "
            "ready at the end | podctl RSS |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in cpu:
            over = f"{r.podctl_pct - base.podctl_pct:+.1f} pts" if base and r is not base else "—"
            period = f"{r.probe_period:.2f} s" if r.probe_period else "—"
            per_probe = per_engine = "—"
            if base and r is not base and r.probe_period:
                # CPU % of one core = 10 ms per second; probes per second = replicas / period.
                rate = r.replicas / r.probe_period
                per_probe = f"{(r.podctl_pct - base.podctl_pct) * 10 / rate:.2f} ms"
                engine_ms = (r.engine_pct - base.engine_pct) * 10 / rate
                # Below half a millisecond it is the noise of a shared engine.
                per_engine = f"{engine_ms:.1f} ms" if engine_ms >= 0.5 else "≈ 0"
            lines.append(
                f"| {r.probe} | {r.replicas} | **{r.podctl_pct:.1f} %** | {over} | {per_probe} | "
                f"{r.engine_pct:.1f} % | {per_engine} | {period} | {r.events_per_s:.0f} | "
                f"{r.extra['ready']:.0f}/{r.replicas} | {r.rss_mib:.0f} MiB |"
            )
        short = [r for r in cpu if r.extra["ready"] < r.replicas]
        if short:
            lines += [
                "",
                "Not all ready: "
                + ", ".join(f"{r.probe} x{r.replicas}" for r in short)
                + ". Every exec probe is an exec through the engine (runc starts a process in "
                "the container); at this rate the engine needs more CPU than the host has, "
                "so probes miss their 1 s timeout and readiness flaps. podctl itself stays "
                "cheap; HTTP and TCP probes, which podctl dials directly, cost the engine "
                "nothing.",
            ]
        lines += [""]
    return "\n".join(lines)


def idle(replicas: int, window: float = 60.0) -> None:
    """Idle CPU of `podctl run` (issue 8: < 1 % of a core), median of 3 windows."""
    rows = [cpu_run("tcp every 10 s", IDLE_PROBE, "podctl", replicas, window) for _ in range(3)]
    pct = statistics.median(r.podctl_pct for r in rows)
    text = "\n".join(
        [
            "# Idle CPU of `podctl run`",
            "",
            f"`python -m bench.health --only idle` ({time.strftime('%Y-%m-%d %H:%M')}); "
            f"{host_line()}.",
            "",
            f"{replicas} busybox httpd replicas, a tcp readiness probe every 10 s each, "
            f"nothing changing; CPU of the `podctl run` process (utime+stime) over {window:g} s "
            "once all are ready, 3 runs. 100 % = one core.",
            "",
            "| run | podctl CPU | RSS |",
            "|---|---|---|",
            *[
                f"| {i + 1} | {r.podctl_pct:.2f} % | {r.rss_mib:.0f} MiB |"
                for i, r in enumerate(rows)
            ],
            "",
            f"Median: **{pct:.2f} % of one core**.",
            "",
        ]
    )
    IDLE_RESULTS.write_text(text)
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.health", description=__doc__)
    ap.add_argument("--trials", type=int, default=5, help="restart trials per probe kind")
    ap.add_argument("--replicas", type=int, default=50, help="replicas for the CPU figure")
    ap.add_argument("--window", type=float, default=20.0, help="CPU sampling window, seconds")
    ap.add_argument(
        "--only",
        choices=["restart", "cpu", "idle"],
        help="run one part only (still writes the file); idle: 50 replicas, tcp probes "
        "every 10 s, nothing changing, 60 s window -> bench/results/idle.md",
    )
    ap.add_argument(
        "--probes",
        default=",".join(CPU_PROBES),
        help=f"CPU configurations to run (comma-separated from {','.join(CPU_PROBES)})",
    )
    ap.add_argument(
        "--small",
        default="exec",
        help="also run with --small-replicas (50 exec probes/s saturate a 2-CPU host)",
    )
    ap.add_argument("--small-replicas", type=int, default=10)
    ap.add_argument("--log-dir", type=Path, help="keep each podctl run's log here")
    args = ap.parse_args()
    global LOG_DIR
    LOG_DIR = args.log_dir
    subprocess.run([str(ROOT / "scripts" / "seed-image"), IMAGE], check=True, capture_output=True)
    trials: list[Trial] = []
    cpu: list[CpuRow] = []
    if args.only == "idle":
        idle(args.replicas)
        return
    if args.only in (None, "restart"):
        print("liveness detection-to-restart:", file=sys.stderr)
        trials = restart_trials(args.trials)
    if args.only in (None, "cpu"):
        print("probe CPU overhead:", file=sys.stderr)
        configs = [(n, args.replicas) for n in args.probes.split(",") if n]
        configs += [(n, args.small_replicas) for n in args.small.split(",") if n]
        for name, replicas in configs:
            probe, module = CPU_PROBES[name]
            cpu.append(cpu_run(name, probe, module, replicas, args.window))
    text = report(trials, cpu, args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
