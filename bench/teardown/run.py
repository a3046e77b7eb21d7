"""Teardown benchmark: Ctrl-C on N replicas that ignore SIGTERM, podctl vs `docker-compose down`.

One command (`python -m bench.teardown`), both tools in one run, interleaved:
each round runs every method once, in an order rotated per round, so machine
noise (and the other tenants of this engine) hits all alike. Reported: medians
over the rounds, and the ratio podctl / compose.

The workload: N busybox `httpd -f -p 8080` containers (image busybox:1.36). As
PID 1 with no handler, httpd ignores SIGTERM, so each stop waits out the whole
default grace (10 s) and ends in SIGKILL: the figure is how well the graces
overlap, plus each tool's own overhead.

Methods (set-up untimed; t0 = `time.time()` just before the timed action):

- compose:  `docker-compose up -d --scale web=N` from a generated file (no
            stop_grace_period: compose's default 10 s), then timed:
            `docker-compose down`, done when it exits (it removes the containers
            and the network first).
- podctl:   `podctl run FILE --no-watch` (the venv's podctl) on the equivalent
            stack (no probes, default stop_grace 10s); once N run, timed: SIGINT
            to the process (Ctrl-C), done when it has exited *and* the engine has
            destroyed all N containers.
- podctl-before (with `--before-src DIR`): the same, running the podctl package
            found in DIR (e.g. `git archive main | tar -x -C DIR`) with this venv's
            interpreter and dependencies.

"All N running" and "destroyed" are read from the engine's event stream (times
are the engine's), confirmed by a container list. Everything a sample creates
is removed after it, even on failure (bounded concurrency; networks last).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.startup.engine import Engine, Event, event_time
from podctl.defaults import ENGINE_CONCURRENCY

ROOT = Path(__file__).resolve().parents[2]
RESULTS_MD = ROOT / "bench" / "results" / "teardown.md"
PY = sys.executable
PODCTL = str(Path(sys.executable).parent / "podctl")
COMPOSE = "/usr/bin/docker-compose"
IMAGE = "busybox:1.36"
COMMAND = ["httpd", "-f", "-p", "8080"]
LABEL = "bench.podctl.teardown"
PREFIX = "btear-"
UP_TIMEOUT_S = 300.0
DOWN_TIMEOUT_S = 200.0
SETTLE_S = 2.0  # after N run: let the tool finish its pass before the timed action
TITLES = {
    "compose": "`docker-compose down`",
    "podctl": "podctl (Ctrl-C)",
    "podctl-before": "podctl before (Ctrl-C)",
}


@dataclass
class Sample:
    method: str
    round: int
    name: str
    seconds: float | None = None
    error: str | None = None
    phases: dict[str, float] = field(default_factory=dict)
    others_running: int = 0


def stack_yaml(name: str, n: int) -> str:
    return (
        f"name: {name}\n"
        "pods:\n"
        "  web:\n"
        f"    image: {IMAGE}\n"
        f"    command: {json.dumps(COMMAND)}\n"
        f"    replicas: {n}\n"
        f"    labels: {{{LABEL}: {name}}}\n"
    )


def compose_yaml(name: str) -> str:
    return (
        'version: "2.4"\n'
        "services:\n"
        "  web:\n"
        f"    image: {IMAGE}\n"
        f"    command: {json.dumps(COMMAND)}\n"
        f"    labels: {{{LABEL}: {name}}}\n"
    )


def podctl_env(d: Path, src: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PODCTL_SOCKET=str(d / "podctl.sock"),
        PODCTL_STATE_DIR=str(d / "state"),
        PODCTL_RUNTIME_DIR=str(d / "run"),
    )
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def die_phases(events: list[Event], t0: float) -> dict[str, float]:
    """When the containers died (SIGKILL after the grace) and were destroyed."""
    out: dict[str, float] = {}
    for action in ("die", "destroy"):
        times = sorted(
            {str(ev["id"]): event_time(ev) for ev in events if ev.get("Action") == action}.values()
        )
        if times:
            out[f"first {action}"] = times[0] - t0
            out[f"last {action}"] = times[-1] - t0
    return out


class Bench:
    def __init__(self, engine: Engine, run_id: str, tmp: Path, n: int, before: Path | None):
        self.engine = engine
        self.run_id = run_id
        self.tmp = tmp
        self.n = n
        self.before = before
        self.procs: list[asyncio.subprocess.Process] = []
        self.problems: list[str] = []

    def name(self, method: str, rnd: int) -> str:
        short = {"compose": "dc", "podctl": "pc", "podctl-before": "pb"}[method]
        return f"{PREFIX}{self.run_id}-{short}r{rnd}"

    async def spawn(
        self, *args: str, log: Path, env: dict[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=ROOT,
            )
        self.procs.append(proc)
        return proc

    async def others_running(self) -> int:
        rows = await self.engine.docker._query_json("containers/json")
        return sum(1 for c in rows if LABEL not in (c.get("Labels") or {}))

    async def confirm(self, name: str, running: int, total: int | None = None) -> None:
        rows = await self.engine.containers(f"{LABEL}={name}")
        up = sum(1 for c in rows if c.get("State") == "running")
        if up != running or (total is not None and len(rows) != total):
            raise RuntimeError(
                f"{name}: expected {running} running ({total} in all), "
                f"the engine lists {up} running of {len(rows)}"
            )

    async def sample(self, method: str, name: str) -> tuple[float, dict[str, float]]:
        d = self.tmp / name
        d.mkdir()
        if method == "compose":
            return await self.compose(name, d)
        return await self.podctl(name, d, self.before if method == "podctl-before" else None)

    async def compose(self, name: str, d: Path) -> tuple[float, dict[str, float]]:
        f = d / "docker-compose.yml"
        f.write_text(compose_yaml(name))
        base = [COMPOSE, "-p", name, "-f", str(f)]
        up = await self.spawn(*base, "up", "-d", "--scale", f"web={self.n}", log=d / "up.log")
        await asyncio.wait_for(up.wait(), UP_TIMEOUT_S)
        if up.returncode != 0:
            raise RuntimeError(f"compose up failed: {(d / 'up.log').read_text()[-800:]}")
        await self.confirm(name, self.n)
        await asyncio.sleep(SETTLE_S)
        async with self.engine.watch(label=[f"{LABEL}={name}"], event=["die", "destroy"]) as w:
            t0 = time.time()
            down = await self.spawn(*base, "down", log=d / "down.log")
            await asyncio.wait_for(down.wait(), DOWN_TIMEOUT_S)
            t_exit = time.time()
            await self.nth_destroy(w, name)
        await self.confirm(name, 0, 0)
        if down.returncode != 0:
            text = (d / "down.log").read_text(errors="replace")
            errors = [ln for ln in text.splitlines() if "ERROR" in ln or "rror while" in ln]
            self.network_left(name, "compose", errors[-1] if errors else text[-300:])
        phases = {**die_phases(w.events, t0), "process exited": t_exit - t0}
        return max(t_exit - t0, phases["last destroy"]), phases

    async def nth_destroy(self, w: Any, name: str) -> list[float]:
        def check(events: list[Event]) -> list[float] | None:
            ids = {str(ev["id"]) for ev in events if ev.get("Action") == "destroy"}
            return [1.0] if len(ids) >= self.n else None

        result: list[float] = await w.wait(f"{self.n} destroyed ({name})", check, DOWN_TIMEOUT_S)
        return result

    async def podctl(self, name: str, d: Path, src: Path | None) -> tuple[float, dict[str, float]]:
        stack = d / "stack.yaml"
        stack.write_text(stack_yaml(name, self.n))
        cmd = [PODCTL] if src is None else [PY, "-P", "-m", "podctl"]  # -P: not the cwd's podctl
        env = podctl_env(d, src)
        log = d / "podctl.log"
        async with self.engine.watch(label=[f"{LABEL}={name}"], event=["start"]) as w:
            proc = await self.spawn(*cmd, "run", str(stack), "--no-watch", log=log, env=env)
            waiter = asyncio.ensure_future(w.nth_start(self.n, UP_TIMEOUT_S))
            exited = asyncio.ensure_future(proc.wait())
            await asyncio.wait({waiter, exited}, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
                raise RuntimeError(
                    f"podctl run exited with {proc.returncode}: {log.read_text()[-800:]}"
                )
            exited.cancel()
            waiter.result()
        await self.confirm(name, self.n)
        await asyncio.sleep(SETTLE_S)
        async with self.engine.watch(label=[f"{LABEL}={name}"], event=["die", "destroy"]) as w:
            t0 = time.time()
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), DOWN_TIMEOUT_S)
            t_exit = time.time()
            await self.nth_destroy(w, name)
        if proc.returncode != 0:
            raise RuntimeError(f"podctl exited with {proc.returncode}: {log.read_text()[-800:]}")
        await self.confirm(name, 0, 0)
        if await self.engine.network_names(f"podctl_{name}"):
            errors = [ln for ln in log.read_text().splitlines() if " ERROR " in ln]
            self.network_left(name, "podctl", errors[-1][24:] if errors else "no error logged")
        phases = {**die_phases(w.events, t0), "process exited": t_exit - t0}
        return max(t_exit - t0, phases["last destroy"]), phases

    def network_left(self, name: str, tool: str, why: str) -> None:
        """The containers are gone but the network is not: the Debian 20.10 engine
        sometimes keeps a stale endpoint (moby#42119-like) and refuses to remove the
        network until dockerd restarts. The sample still counts (its containers are
        gone); the problem is reported."""
        self.problems.append(f"{tool} ({name}) left its network: {why.strip()[:300]}")
        print(f"  {tool} left its network: {why.strip()[:200]}", flush=True)

    async def cleanup(self, name: str) -> None:
        """Remove what a sample made, even after a failure. Never raises."""
        try:
            for proc in [p for p in self.procs if p.returncode is None]:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            self.procs = []
            await self.engine.remove_containers(f"{LABEL}={name}", ENGINE_CONCURRENCY)
            await self.engine.remove_networks({f"{name}_default", f"podctl_{name}"})
        except Exception as exc:
            self.problems.append(f"cleanup of {name}: {exc}")
            print(f"  cleanup of {name} failed: {exc}", file=sys.stderr, flush=True)
        log = self.tmp / name / "podctl.log"
        if log.exists():
            for line in log.read_text(errors="replace").splitlines():
                if " ERROR " in line or " WARNING " in line:
                    self.problems.append(f"podctl ({name}): {line[24:].strip()[:300]}")


def fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def report(
    samples: list[Sample], args: argparse.Namespace, bench: Bench, meta: dict[str, Any]
) -> str:
    methods = [m for m in args.methods]
    med = {
        m: median([s.seconds for s in samples if s.method == m and s.seconds is not None])
        for m in methods
    }
    lines = [
        "# Teardown: Ctrl-C on N SIGTERM-ignoring replicas, podctl vs `docker-compose down`",
        "",
        f"`python -m bench.teardown` ({meta['date']}; {args.rounds} interleaved rounds, medians).",
        f"N = {args.n} containers of `{IMAGE}` running `{' '.join(COMMAND)}` (PID 1 ignores",
        "SIGTERM, so every stop waits out the default 10 s grace, then SIGKILL).",
        f"Engine {meta['engine']}, {meta['cpus']} CPUs, {meta['python']};",
        f"podctl ENGINE_CONCURRENCY = {ENGINE_CONCURRENCY}.",
        "",
        "| method | median (s) | rounds (s) | vs compose |",
        "|---|---:|---|---:|",
    ]
    base = med.get("compose")
    for m in methods:
        per = [fmt(s.seconds) if s.error is None else "failed" for s in samples if s.method == m]
        ratio = f"{med[m] / base:.2f}x" if med[m] is not None and base else "—"
        lines.append(f"| {TITLES[m]} | {fmt(med[m])} | {', '.join(per)} | {ratio} |")
    lines += [
        "",
        "Timed: compose from spawning `docker-compose down` to its exit; podctl from",
        "SIGINT to the process's exit and the engine's last `destroy` event (whichever",
        "is later; podctl removes its network before it exits). Set-up (up, N running,",
        f"{SETTLE_S:g} s settle) is not timed.",
        "",
        "Milestones (median, seconds after t0, engine event times):",
        "",
        "| method | first die | last die | last destroy | process exited |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in methods:
        ok = [s for s in samples if s.method == m and s.error is None]

        def ph(key: str, ok: list[Sample] = ok) -> str:
            return fmt(median([s.phases[key] for s in ok if key in s.phases]))

        cells = [ph(k) for k in ("first die", "last die", "last destroy", "process exited")]
        lines.append(f"| {TITLES[m]} | {' | '.join(cells)} |")
    others = [s.others_running for s in samples]
    lines += [
        "",
        "Other tenants' containers running on the engine during samples: "
        f"{min(others)} to {max(others)}.",
    ]
    errors = [f"{s.name} ({s.method}): {s.error}" for s in samples if s.error]
    if errors or bench.problems:
        lines += ["", "Problems:", ""] + [f"- {e}" for e in errors + bench.problems]
    if args.note:
        lines += ["", args.note]
    return "\n".join(lines) + "\n"


async def amain(args: argparse.Namespace) -> int:
    engine = Engine()
    run_id = secrets.token_hex(3)
    samples: list[Sample] = []
    info = await engine.docker._query_json("version")
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "engine": f"Docker {info.get('Version')}",
        "cpus": os.cpu_count(),
        "python": f"Python {platform.python_version()}",
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench-teardown-") as tmpdir:
            bench = Bench(engine, run_id, Path(tmpdir), args.n, args.before_src)
            for rnd in range(1, args.rounds + 1):
                k = (rnd - 1) % len(args.methods)
                order = args.methods[k:] + args.methods[:k]
                for method in order:
                    name = bench.name(method, rnd)
                    s = Sample(method, rnd, name, others_running=await bench.others_running())
                    print(f"round {rnd}: {method} ({name}) ...", end=" ", flush=True)
                    try:
                        s.seconds, s.phases = await bench.sample(method, name)
                        shown = {k: round(v, 2) for k, v in s.phases.items()}
                        print(f"{s.seconds:.2f}s  {json.dumps(shown)}", flush=True)
                    except Exception as exc:
                        s.error = f"{type(exc).__name__}: {exc}"[:600]
                        print(f"FAILED: {s.error}", flush=True)
                    finally:
                        await bench.cleanup(name)
                    samples.append(s)
            text = report(samples, args, bench, meta)
    finally:
        await engine.close()
    print()
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        print(f"written to {args.out}")
    return 0 if all(s.error is None for s in samples) else 1


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.teardown", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=50, help="replicas (default 50)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--only", default="", help="comma-separated methods: compose,podctl,podctl-before"
    )
    p.add_argument(
        "--before-src",
        type=Path,
        default=None,
        help="a source tree of podctl to measure as 'before'",
    )
    p.add_argument("--out", default=str(RESULTS_MD), help="markdown report ('' for none)")
    p.add_argument("--note", default="", help="a line appended to the report")
    args = p.parse_args()
    methods = ["compose", "podctl"] + (["podctl-before"] if args.before_src else [])
    if args.only:
        methods = [m for m in args.only.split(",") if m in TITLES]
    args.methods = methods
    sys.exit(asyncio.run(amain(args)))
