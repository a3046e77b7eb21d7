"""Startup benchmark: time from start to N running replicas, podctl vs the engine's floor.

One command (`python -m bench.startup`), every method in one run, interleaved:
for each N, each round runs every method once, in an order rotated per round,
so machine noise (and the other tenants of this engine) hits all alike.
Reported: medians over the rounds, and ratios to the floor.

Methods (all launched as a fresh process; t0 = `time.time()` just before the
spawn, so each pays its own interpreter start-up):

- floor:     `python -m bench.startup.floor`: aiodocker, one bridge network, then N
             create+start with podctl's ENGINE_CONCURRENCY in flight; podctl's bodies.
- floor-inf: the same, unbounded (all N in flight).
- compose:   `docker-compose up -d --scale web=N`; done when it returns *and* N run.
- podctl:    `podctl run FILE --no-watch`; done when N containers of its stack run.

"Running" is read from the engine's event stream (the `start` event of the Nth
distinct container, whose timeNano is the engine's clock), then confirmed with a
container list. No tool's CLI is asked anything, so none pays for its reporting.

Kill-to-replaced: podctl runs 3 replicas; one is SIGKILLed, through the API
(`docker kill`) or by its host PID (a crash); time until that slot's container
starts again. Reference: Docker's own `--restart always` for the same crash (the
engine does not restart a container stopped through `docker kill`, so only the
PID kill applies there).

Everything a round creates is removed after it, even on failure: podctl by
SIGTERM then `podctl down`, compose by `docker-compose down`, then a sweep by
label with bounded concurrency; networks only once their containers are gone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import json
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.startup import floor
from bench.startup.engine import Engine, Event, event_labels, event_time
from podctl.defaults import BACKOFF_INITIAL_S, ENGINE_CONCURRENCY

ROOT = Path(__file__).resolve().parents[2]
RESULTS_MD = ROOT / "bench" / "results" / "startup.md"
RESULTS_JSON = ROOT / "bench" / "results" / "startup.json"
PY = sys.executable
PODCTL = str(Path(sys.executable).parent / "podctl")
COMPOSE = "/usr/bin/docker-compose"
IMAGE = "busybox:1.36"
COMMAND = ["sleep", "3600"]
# Every container the benchmark makes carries this label (value: the sample's name),
# so a sweep finds them whatever made them. podctl reserves `io.podctl.*`.
LABEL = "bench.podctl.startup"
PREFIX = "bstart-"
TEARDOWN_CONCURRENCY = ENGINE_CONCURRENCY
WATCHED = ["create", "start"]
STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 150.0

METHODS = ("floor", "floor-inf", "compose", "podctl")
# floor-inf is opt-in: on this engine it is no faster than 8 in flight (the engine
# serialises starts), and each N=50 sample costs ~30 s with its teardown.
DEFAULT_METHODS = ("floor", "compose", "podctl")
TITLES = {
    "floor": f"floor ({ENGINE_CONCURRENCY} in flight)",
    "floor-inf": "floor (unbounded)",
    "compose": "docker-compose",
    "podctl": "podctl",
}


@dataclass
class Sample:
    method: str
    n: int
    round: int
    name: str
    seconds: float | None = None  # start to N running (the figure)
    error: str | None = None
    # Milestones, seconds after t0 (engine_phases, plus what each method can see).
    phases: dict[str, float] = field(default_factory=dict)
    others_running: int = 0  # containers of other tenants running on the engine


@dataclass
class KillSample:
    method: str  # podctl-api, podctl-pid, docker-restart
    index: int
    seconds: float | None = None  # kill to the slot's container running again
    die_s: float | None = None  # kill to the engine's `die` event
    error: str | None = None


# -- the methods ----------------------------------------------------------------


def podctl_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PODCTL_SOCKET=str(tmp / "podctl.sock"),
        PODCTL_STATE_DIR=str(tmp / "state"),
        PODCTL_RUNTIME_DIR=str(tmp / "run"),
    )
    return env


def stack_yaml(name: str, replicas: int) -> str:
    return (
        f"name: {name}\n"
        "pods:\n"
        "  web:\n"
        f"    image: {IMAGE}\n"
        f"    command: {json.dumps(COMMAND)}\n"
        f"    replicas: {replicas}\n"
        "    restart: always\n"
        # busybox sleep as PID 1 ignores SIGTERM: no grace keeps teardown short.
        "    stop_grace: 0s\n"
        f"    labels: {{{LABEL}: {name}}}\n"
    )


def compose_yaml(name: str) -> str:
    # Format 2.4 for pids_limit: the same limits podctl sets on its containers.
    return (
        'version: "2.4"\n'
        "services:\n"
        "  web:\n"
        f"    image: {IMAGE}\n"
        f"    command: {json.dumps(COMMAND)}\n"
        "    stop_grace_period: 0s\n"
        "    pids_limit: 1024\n"
        "    security_opt: [no-new-privileges]\n"
        f"    labels: {{{LABEL}: {name}}}\n"
    )


def parse_log_time(line: str) -> float | None:
    """The asctime of a podctl log line (local time, milliseconds) as epoch seconds."""
    try:
        return dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


def podctl_log_phases(log: str, t0: float) -> dict[str, float]:
    """Milestones from podctl's own INFO lines (no -v needed)."""
    out: dict[str, float] = {}
    for line in log.splitlines():
        t = parse_log_time(line)
        if t is None:
            continue
        if "podctl: running stacks:" in line:
            out.setdefault("log: running stacks", t - t0)
        elif "network created" in line:
            out.setdefault("log: network created", t - t0)
        elif " Started: " in line:
            out.setdefault("log: first Started", t - t0)
            out["log: last Started"] = t - t0
    return out


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a live process, from /proc (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def dockerd_pid() -> int | None:
    try:
        return int(Path("/var/run/docker.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def engine_phases(events: list[Event], t0: float) -> dict[str, float]:
    """Milestones from the engine's own events: when the tool's first create arrived
    (its start-up cost), first and Nth start, and how long a container waited
    between its create and its start (per-container latency, median)."""
    created: dict[str, float] = {}
    started: dict[str, float] = {}
    for ev in events:
        table = {"create": created, "start": started}.get(str(ev.get("Action")))
        if table is not None:
            table.setdefault(str(ev["id"]), event_time(ev))
    out: dict[str, float] = {}
    if created:
        out["first create"] = min(created.values()) - t0
    if started:
        out["first start"] = min(started.values()) - t0
        out["Nth start"] = max(started.values()) - t0
    gaps = [started[c] - created[c] for c in started if c in created]
    if gaps:
        out["create->start (median)"] = statistics.median(gaps)
    return out


class Bench:
    def __init__(self, engine: Engine, run_id: str, tmp: Path, verbose_podctl: bool) -> None:
        self.engine = engine
        self.run_id = run_id
        self.tmp = tmp
        self.verbose_podctl = verbose_podctl
        self.procs: list[asyncio.subprocess.Process] = []
        self.dockerd = dockerd_pid()
        self.problems: list[str] = []
        self.stopping = False  # set by SIGINT/SIGTERM: finish cleaning up, start nothing new
        self.cpu: dict[str, float] = {}

    def name(self, method: str, n: int, rnd: int) -> str:
        short = {"floor": "fl", "floor-inf": "fi", "compose": "dc", "podctl": "pc"}[method]
        return f"{PREFIX}{self.run_id}-{short}{n}r{rnd}"

    async def others_running(self) -> int:
        rows = await self.engine.docker._query_json("containers/json")
        return sum(1 for c in rows if LABEL not in (c.get("Labels") or {}))

    async def spawn(
        self, *args: str, env: dict[str, str] | None = None, log: Path | None = None
    ) -> asyncio.subprocess.Process:
        out: Any = log.open("ab") if log is not None else subprocess.PIPE
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdout=out,
                stderr=subprocess.STDOUT if log is not None else subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=ROOT,
            )
        finally:
            if log is not None:
                out.close()
        self.procs.append(proc)
        return proc

    async def confirm_running(self, name: str, n: int) -> None:
        running = await self.engine.running(f"{LABEL}={name}")
        if running != n:
            raise RuntimeError(f"{name}: {n} should run, the engine lists {running} running")

    # Each returns (seconds, phases); teardown is the caller's `cleanup(...)`.

    async def startup(self, method: str, name: str, n: int) -> tuple[float, dict[str, float]]:
        if method == "floor":
            return await self.floor(name, n, ENGINE_CONCURRENCY)
        if method == "floor-inf":
            return await self.floor(name, n, 0)
        if method == "compose":
            return await self.compose(name, n)
        return await self.podctl(name, n)

    async def floor(self, name: str, n: int, concurrency: int) -> tuple[float, dict[str, float]]:
        async with self.engine.watch(label=[f"{LABEL}={name}"], event=WATCHED) as watch:
            cpu0 = cpu_seconds(self.dockerd)
            t0 = time.time()
            proc = await self.spawn(
                PY,
                "-m",
                "bench.startup.floor",
                "--stack",
                name,
                "--n",
                str(n),
                "--concurrency",
                str(concurrency),
                "--label",
                f"{LABEL}={name}",
                *COMMAND,
            )
            out, err = await asyncio.wait_for(proc.communicate(), STARTUP_TIMEOUT_S)
            t_exit = time.time()
            if proc.returncode != 0:
                msg = err.decode(errors="replace")[-800:]
                raise RuntimeError(f"floor script failed ({proc.returncode}): {msg}")
            starts = await watch.nth_start(n, STARTUP_TIMEOUT_S)
            cpu1 = cpu_seconds(self.dockerd)
        await self.confirm_running(name, n)
        info = json.loads(out.decode().strip().splitlines()[-1])
        phases = {
            "imports done": info["imported"] - t0,
            "network created": info["network"] - t0,
            **engine_phases(watch.events, t0),
            "all start calls returned": info["started"] - t0,
            "process exited": t_exit - t0,
            "tool CPU": info["cpu_s"],
            "dockerd CPU": cpu1 - cpu0,
            "create call (median)": info["create_median_s"],
            "start call (median)": info["start_median_s"],
        }
        return starts[-1] - t0, phases

    async def compose(self, name: str, n: int) -> tuple[float, dict[str, float]]:
        d = self.tmp / name
        d.mkdir()
        (d / "docker-compose.yml").write_text(compose_yaml(name))
        async with self.engine.watch(label=[f"{LABEL}={name}"], event=WATCHED) as watch:
            cpu0 = cpu_seconds(self.dockerd)
            t0 = time.time()
            proc = await self.spawn(
                COMPOSE,
                "-p",
                name,
                "-f",
                str(d / "docker-compose.yml"),
                "up",
                "-d",
                "--scale",
                f"web={n}",
                log=d / "compose.log",
            )
            await asyncio.wait_for(proc.wait(), STARTUP_TIMEOUT_S)
            t_exit = time.time()
            if proc.returncode != 0:
                log = (d / "compose.log").read_text(errors="replace")
                raise RuntimeError(f"docker-compose up failed ({proc.returncode}): {log[-800:]}")
            starts = await watch.nth_start(n, STARTUP_TIMEOUT_S)
            cpu1 = cpu_seconds(self.dockerd)
        await self.confirm_running(name, n)
        done = max(t_exit, starts[-1])
        phases = {
            **engine_phases(watch.events, t0),
            "process exited": t_exit - t0,
            "dockerd CPU": cpu1 - cpu0,
        }
        return done - t0, phases

    async def podctl_start(
        self, name: str, n: int, watch_filters: dict[str, list[str]]
    ) -> tuple[asyncio.subprocess.Process, Path, float, list[float], list[Event]]:
        d = self.tmp / name
        d.mkdir()
        stack = d / "stack.yaml"
        stack.write_text(stack_yaml(name, n))
        log = d / "podctl.log"
        args = [PODCTL, "run", str(stack), "--no-watch"]
        if self.verbose_podctl:
            args.append("-v")
        async with self.engine.watch(**watch_filters) as watch:
            cpu0 = cpu_seconds(self.dockerd)
            t0 = time.time()
            proc = await self.spawn(*args, env=podctl_env(d), log=log)
            waiter = asyncio.ensure_future(watch.nth_start(n, STARTUP_TIMEOUT_S))
            exited = asyncio.ensure_future(proc.wait())
            await asyncio.wait({waiter, exited}, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
                text = log.read_text(errors="replace")
                raise RuntimeError(f"podctl run exited with {proc.returncode}: {text[-800:]}")
            exited.cancel()
            starts = waiter.result()
            self.cpu = {
                "tool CPU": cpu_seconds(proc.pid),
                "dockerd CPU": cpu_seconds(self.dockerd) - cpu0,
            }
        return proc, log, t0, starts, watch.events

    async def podctl(self, name: str, n: int) -> tuple[float, dict[str, float]]:
        filters = {"label": [f"{LABEL}={name}"], "event": WATCHED}
        _proc, log, t0, starts, events = await self.podctl_start(name, n, filters)
        await self.confirm_running(name, n)
        phases = podctl_log_phases(log.read_text(errors="replace"), t0)
        phases.update(engine_phases(events, t0))
        phases.update(self.cpu)
        return starts[-1] - t0, phases

    # -- teardown ------------------------------------------------------------

    async def stop_podctl(self, name: str) -> None:
        d = self.tmp / name
        # self.procs holds only this sample's processes: its `podctl run`.
        for proc in [p for p in self.procs if p.returncode is None]:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if (d / "stack.yaml").exists():
            down = await self.spawn(PODCTL, "down", name, env=podctl_env(d), log=d / "down.log")
            try:
                await asyncio.wait_for(down.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                down.kill()
                await down.wait()

    async def kill_procs(self) -> None:
        for proc in [p for p in self.procs if p.returncode is None]:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        self.procs = []

    async def cleanup(self, method: str, name: str) -> None:
        """Remove what a sample made, even after a failure. Never raises."""
        try:
            if method.startswith("podctl"):
                await self.stop_podctl(name)
            elif method == "compose" and (self.tmp / name / "docker-compose.yml").exists():
                env = dict(os.environ, COMPOSE_PARALLEL_LIMIT=str(TEARDOWN_CONCURRENCY))
                d = self.tmp / name
                proc = await self.spawn(
                    COMPOSE,
                    "-p",
                    name,
                    "-f",
                    str(d / "docker-compose.yml"),
                    "down",
                    "-t",
                    "0",
                    env=env,
                    log=d / "down.log",
                )
                try:
                    await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            await self.kill_procs()
            await self.engine.remove_containers(f"{LABEL}={name}", TEARDOWN_CONCURRENCY)
            await self.engine.remove_networks(
                {floor.network_name(name), f"{name}_default", f"podctl_{name}"}
            )
        except Exception as exc:  # reported; the final sweep tries again
            self.problems.append(f"cleanup of {name}: {exc}")
            print(f"  cleanup of {name} failed: {exc}", file=sys.stderr, flush=True)
        if method.startswith("podctl"):
            # podctl's own teardown (on SIGTERM) reports what it could not remove.
            log = self.tmp / name / "podctl.log"
            text = log.read_text(errors="replace") if log.exists() else ""
            for line in text.splitlines():
                if " ERROR " in line or " WARNING " in line:
                    self.problems.append(f"podctl ({name}): {line[24:].strip()[:300]}")

    async def sweep(self, pattern: str, patience_s: float = 10.0) -> None:
        """Everything left by this run (or, at start-up, by an interrupted earlier one)."""
        rows = await self.engine.docker._query_json(
            "containers/json", params={"all": "1", "filters": json.dumps({"label": [LABEL]})}
        )
        if any(pattern in str((c.get("Labels") or {}).get(LABEL, "")) for c in rows):
            for value in {
                str(c["Labels"][LABEL]) for c in rows if pattern in str(c["Labels"][LABEL])
            }:
                await self.engine.remove_containers(f"{LABEL}={value}", TEARDOWN_CONCURRENCY)
        await self.engine.remove_networks(await self.engine.network_names(pattern), patience_s)

    # -- kill to replaced ------------------------------------------------------

    async def kill_session(
        self, method: str, name: str, slots: list[int]
    ) -> list[tuple[float, float | None]]:
        """3 replicas up, then each of `slots` killed once, one after the other.

        Each slot is killed only once: a second crash of the same container would
        wait out a longer back-off, and the figure is about the first one.
        """
        if method == "docker-restart":
            # Reference: the same 3 containers, with Docker's restart policy `always`.
            await self.engine.create_network(floor.network_name(name), {LABEL: name})
            for i in range(3):
                body = floor.container_body(name, i, IMAGE, COMMAND, {LABEL: name})
                body["HostConfig"]["RestartPolicy"] = {"Name": "always"}
                await self.engine.create_and_start(f"{name}-web-{i}", body)
            how = "pid"
        else:
            filters = {"label": [f"{LABEL}={name}"], "event": ["start"]}
            await self.podctl_start(name, 3, filters)
            how = method.split("-")[1]
        await self.confirm_running(name, 3)
        out = []
        for slot in slots:
            # Let the controller finish its pass and settle before the kill.
            await asyncio.sleep(1.0)
            out.append(await self._kill_and_wait(name, slot, "io.podctl.replica", how))
        return out

    async def _kill_and_wait(
        self, name: str, slot: int, slot_label: str, how: str
    ) -> tuple[float, float | None]:
        victim = next(
            c
            for c in await self.engine.containers(f"{LABEL}={name}")
            if (c.get("Labels") or {}).get(slot_label) == str(slot) and c["State"] == "running"
        )
        cid = str(victim["Id"])
        pid = int((await self.engine.inspect(cid))["State"]["Pid"])
        async with self.engine.watch(label=[f"{LABEL}={name}"], event=["start", "die"]) as watch:
            t0 = time.time()
            if how == "api":
                await self.engine.kill(cid)
            else:
                os.kill(pid, signal.SIGKILL)

            def back(events: list[dict[str, Any]]) -> float | None:
                for ev in events:
                    same_slot = event_labels(ev).get(slot_label) == str(slot)
                    if ev.get("Action") == "start" and same_slot and event_time(ev) >= t0:
                        return event_time(ev)
                return None

            t_back = await watch.wait(f"slot {slot} of {name} running again", back, 60.0)
            dies = [event_time(e) for e in watch.events if e.get("Action") == "die"]
        return t_back - t0, (min(dies) - t0 if dies else None)


# -- the run ------------------------------------------------------------------------


async def guarded(
    bench: Bench, method: str, name: str, body: Callable[[], Awaitable[Any]]
) -> tuple[Any, str | None]:
    try:
        return await body(), None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        await bench.cleanup(method, name)


async def startup_rounds(
    bench: Bench, sizes: list[int], rounds: int, methods: list[str]
) -> list[Sample]:
    samples: list[Sample] = []
    for n in sizes:
        for rnd in range(1, rounds + 1):
            k = (rnd - 1) % len(methods)
            for method in methods[k:] + methods[:k]:
                if bench.stopping:
                    return samples
                name = bench.name(method, n, rnd)
                s = Sample(method=method, n=n, round=rnd, name=name)
                s.others_running = await bench.others_running()

                t = time.monotonic()
                result, s.error = await guarded(
                    bench, method, name, functools.partial(bench.startup, method, name, n)
                )
                if result is not None:
                    s.seconds, s.phases = result
                shown = f"{s.seconds:6.2f}s" if s.seconds is not None else f"FAILED {s.error}"
                print(
                    f"  N={n:<3} round {rnd} {method:<10} {shown}"
                    f"   (with teardown {time.monotonic() - t:5.1f}s, "
                    f"other tenants' containers running: {s.others_running})",
                    flush=True,
                )
                samples.append(s)
    return samples


async def kill_rounds(bench: Bench, count: int) -> list[KillSample]:
    out: list[KillSample] = []
    methods = ["podctl-api", "podctl-pid", "docker-restart"]
    sessions = (count + 2) // 3
    for i in range(sessions):
        slots = list(range(min(3, count - 3 * i)))
        k = i % len(methods)
        for method in methods[k:] + methods[:k]:
            if bench.stopping:
                return out
            name = f"{PREFIX}{bench.run_id}-k{method.split('-')[-1][:3]}{i}"
            cleanup_as = "podctl" if method.startswith("podctl") else "floor"
            result, error = await guarded(
                bench, cleanup_as, name, functools.partial(bench.kill_session, method, name, slots)
            )
            for j, slot in enumerate(slots):
                s = KillSample(method=method, index=3 * i + slot, error=error)
                if result is not None:
                    s.seconds, s.die_s = result[j]
                shown = f"{s.seconds:6.2f}s" if s.seconds is not None else f"FAILED {s.error}"
                print(f"  kill {s.index + 1}/{count} {method:<15} {shown}", flush=True)
                out.append(s)
    return out


# -- report ---------------------------------------------------------------------------


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(x: float | None, unit: str = "") -> str:
    return "—" if x is None else f"{x:.2f}{unit}"


def median_of(samples: list[Sample], method: str, n: int) -> float | None:
    return med([s.seconds for s in samples if s.method == method and s.n == n and s.seconds])


def phase_median(samples: list[Sample], method: str, n: int, key: str) -> float | None:
    return med(
        [s.phases[key] for s in samples if s.method == method and s.n == n and key in s.phases]
    )


def paired_ratios(samples: list[Sample], sizes: list[int], methods: list[str]) -> list[str]:
    """Each round's ratio to the floor of the same round: slow drifts of the machine
    (other tenants' test runs) cancel within a round."""
    if not methods:
        return []
    out = ["Per-round ratios to the same round's floor:", ""]
    for m in methods:
        for n in sizes:
            floor_by_round = {
                s.round: s.seconds
                for s in samples
                if s.method == "floor" and s.n == n and s.seconds
            }
            ratios = [
                s.seconds / floor_by_round[s.round]
                for s in samples
                if s.method == m and s.n == n and s.seconds and s.round in floor_by_round
            ]
            if ratios:
                shown = ", ".join(f"{r:.2f}" for r in ratios)
                out.append(
                    f"- {TITLES[m]}, N={n}: {shown} (median {statistics.median(ratios):.2f})"
                )
    return [*out, ""]


def where_time_goes(samples: list[Sample], sizes: list[int], methods: list[str]) -> list[str]:
    """Start-up (spawn to the engine's first create) vs the container phase (first
    create to the Nth start), from the engine's events: fixed cost vs per-container cost."""
    out = [
        "## Where the time goes (medians, seconds)",
        "",
        "| N | tool | spawn → first create | first create → Nth start "
        "| create → start, per container | tool CPU | dockerd CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        for m in methods:
            runs = [s for s in samples if s.method == m and s.n == n and s.seconds is not None]
            if not runs:
                continue
            phase = [
                s.phases["Nth start"] - s.phases["first create"]
                for s in runs
                if "first create" in s.phases and "Nth start" in s.phases
            ]
            cells = [
                fmt(phase_median(samples, m, n, "first create")),
                fmt(med(phase)),
                fmt(phase_median(samples, m, n, "create->start (median)")),
                fmt(phase_median(samples, m, n, "tool CPU")),
                fmt(phase_median(samples, m, n, "dockerd CPU")),
            ]
            out.append(f"| {n} | {TITLES[m]} | " + " | ".join(cells) + " |")
    return [*out, ""]


def render(
    samples: list[Sample],
    kills: list[KillSample],
    sizes: list[int],
    methods: list[str],
    rounds: int,
    meta: dict[str, str],
    problems: list[str],
) -> str:
    lines = [
        "# Startup benchmark",
        "",
        f"`python -m bench.startup` on {meta['when']}: {meta['host']}; Docker {meta['engine']}; "
        f"docker-compose {meta['compose']}; image `{IMAGE}`, command `{' '.join(COMMAND)}`.",
        "",
        f"Time from spawning the tool to N containers running (the engine's `start` event "
        f"of the Nth container), median of {rounds} interleaved rounds, in seconds. "
        f"Ratio = median / floor median. Target (issue 2): podctl <= 1.1x the floor.",
        "",
    ]
    head = ["N", *(TITLES[m] for m in methods)]
    ratio_methods = [m for m in methods if m != "floor"] if "floor" in methods else []
    head += [f"{TITLES[m]} / floor" for m in ratio_methods]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in sizes:
        base = median_of(samples, "floor", n)
        row = [str(n)]
        for m in methods:
            x = median_of(samples, m, n)
            spread = [s.seconds for s in samples if s.method == m and s.n == n and s.seconds]
            rng = f" ({min(spread):.2f}-{max(spread):.2f})" if len(spread) > 1 else ""
            row.append(fmt(x) + rng)
        for m in ratio_methods:
            x = median_of(samples, m, n)
            row.append(f"{x / base:.2f}x" if x and base else "—")
        lines.append("| " + " | ".join(row) + " |")
    failures = [s for s in samples if s.error]
    lines += [
        "",
        "Cells: median (min-max). "
        f"floor = a plain aiodocker script sending podctl's create bodies, "
        f"{ENGINE_CONCURRENCY} containers in flight (podctl's ENGINE_CONCURRENCY), "
        "create then start each"
        + ("; unbounded = all N in flight" if "floor-inf" in methods else "")
        + ". compose counts until "
        "`up -d` returns *and* N run (its default parallelism, 64). podctl is "
        "`podctl run FILE --no-watch` (one pod, N replicas, no probes); every tool is a "
        "fresh process and pays its interpreter start-up.",
        "",
    ]
    if failures:
        lines += ["Failed samples:", ""]
        lines += [f"- {s.name}: {s.error}" for s in failures]
        lines.append("")

    lines += paired_ratios(samples, sizes, ratio_methods)
    lines += where_time_goes(samples, sizes, methods)
    # Every milestone recorded, medians per method and N.
    lines += ["## Milestones (medians, seconds after spawn)", ""]
    for n in sizes:
        for m in methods:
            ph: dict[str, list[float]] = {}
            for s in samples:
                if s.method == m and s.n == n and s.seconds is not None:
                    for k, v in s.phases.items():
                        ph.setdefault(k, []).append(v)
            if ph:
                parts = ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in ph.items())
                lines.append(f"- N={n} {TITLES[m]}: {parts}")
    others = max((s.others_running for s in samples), default=0)
    lines += [
        "",
        f"Other tenants' containers running on the engine at sample start: up to {others} "
        "(the engine is shared; interleaving spreads their load over all methods).",
        "",
    ]

    if kills:
        lines += [
            "## Kill to replaced",
            "",
            "3 replicas running; one SIGKILLed; time until that slot's container runs again "
            f"(its `start` event), median of {max(k.index for k in kills) + 1}.",
            "",
            "| method | kill → running again | kill → `die` event | samples |",
            "|---|---|---|---|",
        ]
        titles = {
            "podctl-api": "podctl, `docker kill` (API)",
            "podctl-pid": "podctl, `kill -9` of the container's PID",
            "docker-restart": "Docker `--restart always`, `kill -9` of the PID (reference)",
        }
        for m, title in titles.items():
            ks = [k for k in kills if k.method == m]
            if not ks:
                continue
            vals = [k.seconds for k in ks if k.seconds is not None]
            dies = [k.die_s for k in ks if k.die_s is not None]
            shown = ", ".join(f"{v:.2f}" for v in vals)
            lines.append(f"| {title} | {fmt(med(vals))} | {fmt(med(dies))} | {shown} |")
        lines += [
            "",
            f"podctl restarts a crashed container after its crash-loop back-off, whose first "
            f"step is {BACKOFF_INITIAL_S:g} s (defaults.BACKOFF_INITIAL_S) by design; Docker's "
            "restart manager waits 100 ms first. Docker does not restart a container stopped "
            "with `docker kill`, so its reference uses the PID kill; compose sets no restart "
            "policy and never replaces it.",
            "",
        ]
        kfail = [k for k in kills if k.error]
        lines += [f"- failed: {k.method} #{k.index}: {k.error}" for k in kfail]
    if problems:
        lines += [
            "## Teardown problems",
            "",
            "Reported by the tools' teardown or the harness's sweep (nothing here affects "
            "the figures above; a network left behind must be removed by hand):",
            "",
        ]
        lines += [f"- {p}" for p in problems]
    return "\n".join(lines).rstrip() + "\n"


def tool_version(*args: str) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.strip().splitlines()[0] if out.strip() else "?"


async def amain(args: argparse.Namespace) -> int:
    sizes = [int(x) for x in args.sizes.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"unknown methods: {', '.join(sorted(unknown))} (known: {METHODS})")
    if "compose" in methods and not os.access(COMPOSE, os.X_OK):
        raise SystemExit(f"{COMPOSE} not found: apt-get install docker-compose, or drop it")
    engine = Engine()
    run_id = secrets.token_hex(2)
    try:
        try:
            version = (await engine.docker.version())["Version"]
        except Exception as exc:
            msg = f"no Docker engine answers ({exc}); see scripts/ensure-engine"
            raise SystemExit(msg) from None
        if not await engine.image_exists(IMAGE):
            raise SystemExit(f"{IMAGE} is missing: run scripts/seed-image {IMAGE}")
        with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmpdir:
            bench = Bench(engine, run_id, Path(tmpdir), args.verbose_podctl)
            main_task = asyncio.current_task()

            def stop(signum: int) -> None:
                # Our own handlers: a shell's `cmd &` starts us with SIGINT ignored.
                if not bench.stopping and main_task is not None:
                    print(f"{signal.Signals(signum).name}: cleaning up", file=sys.stderr)
                    bench.stopping = True
                    main_task.cancel()

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop, sig)
            samples: list[Sample] = []
            kills: list[KillSample] = []
            t_start = time.monotonic()
            try:
                try:
                    # Leftovers of an interrupted earlier run; one attempt per network.
                    await bench.sweep(PREFIX, patience_s=0.0)
                except Exception as exc:  # e.g. a network the engine will not let go
                    bench.problems.append(f"left from earlier runs: {exc}")
                    print(f"left from earlier runs: {exc}", file=sys.stderr, flush=True)
                print(f"startup: N in {sizes}, {args.rounds} rounds, methods {methods}", flush=True)
                samples = await startup_rounds(bench, sizes, args.rounds, methods)
                if args.kills > 0:
                    print(f"kill to replaced: {args.kills} samples per method", flush=True)
                    kills = await kill_rounds(bench, args.kills)
            except asyncio.CancelledError:
                if not bench.stopping:
                    raise
            finally:
                await bench.kill_procs()
                if args.keep_logs:
                    dest = Path(args.keep_logs)
                    dest.mkdir(parents=True, exist_ok=True)
                    for log in Path(tmpdir).glob("*/*.log"):
                        (dest / f"{log.parent.name}-{log.name}").write_bytes(log.read_bytes())
                try:
                    await bench.sweep(f"{PREFIX}{run_id}")
                except Exception as exc:
                    bench.problems.append(f"final sweep: {exc}")
                    print(f"final sweep failed: {exc}", file=sys.stderr, flush=True)
            elapsed = time.monotonic() - t_start
    finally:
        await engine.close()
    if bench.stopping:
        print("interrupted: cleaned up, no results written", file=sys.stderr)
        return 130
    meta = {
        "when": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "host": f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "engine": version,
        "compose": tool_version(COMPOSE, "version", "--short"),
    }
    text = render(samples, kills, sizes, methods, args.rounds, meta, bench.problems)
    text += f"\nWhole run (with teardowns): {elapsed:.0f} s.\n"
    print()
    print(text)
    if not args.no_write:
        RESULTS_MD.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_MD.write_text(text)
        RESULTS_JSON.write_text(
            json.dumps(
                {
                    "meta": meta,
                    "samples": [asdict(s) for s in samples],
                    "kills": [asdict(k) for k in kills],
                },
                indent=1,
            )
            + "\n"
        )
        print(f"written: {RESULTS_MD.relative_to(ROOT)}, {RESULTS_JSON.relative_to(ROOT)}")
    return 1 if any(s.error for s in samples) or any(k.error for k in kills) else 0


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench.startup", description="podctl start-up vs the engine's floor"
    )
    p.add_argument("--sizes", default="1,10,50", help="replica counts N (default 1,10,50)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per N (default 3)")
    p.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated, of {','.join(METHODS)} (default {','.join(DEFAULT_METHODS)})",
    )
    p.add_argument("--kills", type=int, default=5, help="kill-to-replaced samples (0: skip)")
    p.add_argument("--verbose-podctl", action="store_true", help="run podctl with -v")
    p.add_argument("--keep-logs", metavar="DIR", help="copy podctl/compose logs to DIR")
    p.add_argument("--no-write", action="store_true", help="print only; leave bench/results")
    args = p.parse_args()
    sys.exit(asyncio.run(amain(args)))
