"""Rollout benchmark: an env change under load, podctl's rolling update vs `docker-compose up -d`.

One command (`python -m bench.rollout`), both tools in one run, interleaved: each
round runs both, in an order rotated per round, so machine noise hits both alike.
Reported: medians over the rounds (3 by default), and every sample.

The workload: busybox httpd (image busybox:1.36) serving a page that holds the
value of its env REV, stopping on SIGTERM (a `trap`, as busybox httpd as PID 1
ignores it), stop grace 2 s. CLIENTS threads each make one HTTP GET per
connection, back to back (10 s timeout), the whole time. The change: REV v0 -> v1.

- podctl:  `podctl run FILE` (watched) with 5 replicas behind a service on a host
           port, readiness `http /index.html` every 1 s, `rollout: {max_surge: 1,
           max_unavailable: 0}`. Timed from saving the edited file to the
           `RolloutComplete` event (its own time stamp).
- compose: `docker-compose up -d` (Debian's docker-compose 1.29) of the same image
           and command, the container port published on a host port. Compose can
           publish one host port from one container only (scaling a service with a
           fixed published port fails: "port is already allocated"), so it runs one
           replica, as a Compose user without an extra load balancer does. Timed
           from starting `docker-compose up -d` with the edited file to its exit.

For each: failed requests (any error, or a status other than 200) among all made
from the edit until 3 s after the change completed, and the longest gap with no
successful response in that window (from the edit, or the last success before
it, to the first success after). Each sample's objects are removed after it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import itertools
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_MD = ROOT / "bench" / "results" / "rollout.md"
PODCTL = str(Path(sys.executable).parent / "podctl")
COMPOSE = "/usr/bin/docker-compose"
IMAGE = "busybox:1.36"
REPLICAS = 5
CLIENTS = 20
TAIL_S = 3.0  # load kept on after the change completed
STEADY_S = 2.0  # load before the edit whose longest gap is the baseline
PREFIX = "broll-"
SERVE = (
    'mkdir -p /www; echo "$${REV}" > /www/index.html; trap "exit 0" TERM;'
    " httpd -f -p 8080 -h /www & wait"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, timeout: float = 10.0) -> str | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace").strip()
        return body if resp.status == 200 else None
    except Exception:
        return None
    finally:
        conn.close()


@dataclass
class Load:
    """CLIENTS threads making one GET per connection, back to back."""

    port: int
    # (start, end, body or None), times on time.time()
    results: list[tuple[float, float, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def client(self) -> None:
        while not self.stop.is_set():
            t0 = time.time()
            body = get(self.port)
            with self.lock:
                self.results.append((t0, time.time(), body))

    def start(self) -> None:
        for _ in range(CLIENTS):
            t = threading.Thread(target=self.client, daemon=True)
            t.start()
            self.threads.append(t)

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)

    def window(self, t_edit: float, t_end: float) -> tuple[int, int, float]:
        """(requests, failed, longest gap without a success) from the edit to t_end."""
        with self.lock:
            rs = list(self.results)
        inside = [r for r in rs if r[0] >= t_edit and r[0] <= t_end]
        failed = sum(1 for r in inside if r[2] is None)
        return len(inside), failed, self.longest_gap(t_edit, t_end)

    def longest_gap(self, t_from: float, t_to: float) -> float:
        """The longest time in [t_from, t_to] with no successful response completing
        (from the last success before t_from)."""
        with self.lock:
            ok_ends = sorted(r[1] for r in self.results if r[2] is not None)
        before = [e for e in ok_ends if e <= t_from]
        marks = [before[-1] if before else t_from]
        marks += [e for e in ok_ends if t_from < e <= t_to]
        marks.append(t_to)
        return max(b - a for a, b in itertools.pairwise(marks))


@dataclass
class Sample:
    method: str
    round: int
    seconds: float | None = None
    requests: int = 0
    failed: int = 0
    gap_s: float = 0.0
    steady_gap_s: float = 0.0  # the same measure over the 2 s of load before the edit
    error: str | None = None


def wait_for(what: str, fn, timeout: float, every: float = 0.25):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = fn()
        except Exception:
            v = None
        if v:
            return v
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


# -- podctl --------------------------------------------------------------------------


def stack_yaml(name: str, port: int, rev: str) -> str:
    return (
        f"name: {name}\n"
        "pods:\n"
        "  web:\n"
        f"    image: {IMAGE}\n"
        f"    command: {json.dumps(['sh', '-c', SERVE])}\n"
        f"    env: {{REV: {rev}}}\n"
        f"    replicas: {REPLICAS}\n"
        "    ports: {http: 8080}\n"
        "    readiness: {http: {port: http, path: /index.html}, period: 1s}\n"
        "    stop_grace: 2s\n"
        "    rollout: {max_surge: 1, max_unavailable: 0}\n"
        "services:\n"
        f"  web: {{pod: web, port: {port}, target: http}}\n"
    )


def save(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def podctl_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PODCTL, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def run_podctl(rnd: int, tmp: Path) -> Sample:
    name = f"{PREFIX}{secrets.token_hex(3)}-pc{rnd}"
    d = tmp / name
    d.mkdir()
    env = dict(os.environ)
    env.update(
        PODCTL_SOCKET=str(d / "podctl.sock"),
        PODCTL_STATE_DIR=str(d / "state"),
        PODCTL_RUNTIME_DIR=str(d / "run"),
    )
    port = free_port()
    path = d / "stack.yaml"
    save(path, stack_yaml(name, port, "v0"))
    log = (d / "podctl.log").open("wb")
    proc = subprocess.Popen(
        [PODCTL, "run", str(path)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    sample = Sample("podctl", rnd)
    load = Load(port)
    try:

        def all_ready() -> bool:
            out = podctl_cli(env, "get", "pods", name, "-o", "json")
            pods = json.loads(out.stdout) if out.returncode == 0 else []
            return sum(1 for p in pods if p["ready"]) == REPLICAS and get(port) == "v0"

        wait_for(f"{REPLICAS} ready replicas", all_ready, 180)
        load.start()
        time.sleep(STEADY_S + 1.0)
        # One follower of the event stream rather than a CLI call every half second:
        # each call is a Python start-up, CPU taken from podctl on a small machine.
        follower = subprocess.Popen(
            [PODCTL, "events", name, "-f"], env=env, stdout=subprocess.PIPE, text=True
        )
        ended = threading.Event()
        verdict: list[str] = []

        def read() -> None:
            assert follower.stdout is not None
            for line in follower.stdout:
                for reason in ("RolloutComplete", "RolloutFailed", "RolledBack"):
                    if f" {reason} " in line:
                        verdict.append(reason)
                        ended.set()
            ended.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(1.0)  # the follower is connected (its history shows no rollout yet)
        t_edit = time.time()
        save(path, stack_yaml(name, port, "v1"))
        try:
            if not ended.wait(300):
                raise TimeoutError("no RolloutComplete within 300 s")
        finally:
            follower.terminate()
            follower.wait(10)
        if verdict[:1] != ["RolloutComplete"]:
            raise RuntimeError(f"the rollout ended with {verdict or 'nothing'}")
        out = podctl_cli(env, "events", name, "-o", "json")
        t_done = max(
            float(e["time"])
            for e in json.loads(out.stdout)
            if e["reason"] == "RolloutComplete" and e["time"] >= t_edit
        )
        time.sleep(TAIL_S)
        load.finish()
        sample.seconds = t_done - t_edit
        sample.requests, sample.failed, sample.gap_s = load.window(t_edit, t_done + TAIL_S)
        sample.steady_gap_s = load.longest_gap(t_edit - STEADY_S, t_edit)
    except Exception as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
    finally:
        load.finish()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        leftover = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=io.podctl.stack={name}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if leftover:
            subprocess.run(["docker", "rm", "-f", *leftover], capture_output=True, check=False)
            subprocess.run(["docker", "network", "rm", f"podctl_{name}"], capture_output=True)
    return sample


# -- docker-compose ---------------------------------------------------------------------


def compose_yaml(port: int, rev: str) -> str:
    return (
        'version: "2.4"\n'
        "services:\n"
        "  web:\n"
        f"    image: {IMAGE}\n"
        f"    command: {json.dumps(['sh', '-c', SERVE])}\n"
        f"    environment: {{REV: {rev}}}\n"
        f'    ports: ["127.0.0.1:{port}:8080"]\n'
        "    stop_grace_period: 2s\n"
    )


def run_compose(rnd: int, tmp: Path) -> Sample:
    project = f"{PREFIX}{secrets.token_hex(3)}-dc{rnd}"
    d = tmp / project
    d.mkdir()
    port = free_port()
    path = d / "docker-compose.yml"
    base = [COMPOSE, "-p", project, "-f", str(path)]
    sample = Sample("compose", rnd)
    load = Load(port)
    try:
        save(path, compose_yaml(port, "v0"))
        subprocess.run([*base, "up", "-d"], capture_output=True, timeout=300, check=True)
        wait_for("compose's web to answer", lambda: get(port) == "v0", 120)
        load.start()
        time.sleep(STEADY_S + 1.0)
        save(path, compose_yaml(port, "v1"))
        t_edit = time.time()
        subprocess.run([*base, "up", "-d"], capture_output=True, timeout=300, check=True)
        t_done = time.time()
        wait_for("an answer from v1", lambda: get(port, 2.0) == "v1", 60, every=0.05)
        time.sleep(TAIL_S)
        load.finish()
        sample.seconds = t_done - t_edit
        sample.requests, sample.failed, sample.gap_s = load.window(t_edit, t_done + TAIL_S)
        sample.steady_gap_s = load.longest_gap(t_edit - STEADY_S, t_edit)
    except Exception as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
    finally:
        load.finish()
        subprocess.run([*base, "down", "-t", "2"], capture_output=True, timeout=300, check=False)
    return sample


# -- report ----------------------------------------------------------------------------


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def report(samples: list[Sample], rounds: int) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Rollout under load: podctl vs `docker-compose up -d`",
        "",
        f"Generated by `.venv/bin/python -m bench.rollout` ({rounds} rounds, interleaved),"
        f" {now}, {platform.node()} ({os.cpu_count()} CPUs), Docker engine shared with other"
        " work. The env value REV changes v0 -> v1 while "
        f"{CLIENTS} client threads make one HTTP GET per connection, back to back.",
        "",
        "| | replicas | time to complete (s) | requests | failed requests |"
        " longest gap without a success (s) | same, steady state (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    titles = {
        "podctl": f"podctl rolling update (surge 1, unavailable 0), {REPLICAS} replicas",
        "compose": "`docker-compose up -d` (1.29), published port",
    }
    for method in ("podctl", "compose"):
        ok = [s for s in samples if s.method == method and s.error is None]
        secs = median([s.seconds for s in ok if s.seconds is not None])
        req = median([float(s.requests) for s in ok])
        fail = median([float(s.failed) for s in ok])
        gap = median([s.gap_s for s in ok])
        steady = median([s.steady_gap_s for s in ok])
        reps = REPLICAS if method == "podctl" else 1
        lines.append(
            f"| {titles[method]} | {reps} | {_f(secs)} | {_f(req, 0)} | {_f(fail, 0)} |"
            f" {_f(gap, 2)} | {_f(steady, 2)} |"
        )
    lines += [
        "",
        "Medians over the rounds. Time to complete: podctl, from saving the file to"
        " `RolloutComplete` (every replica of v1 ready, every v0 replica drained and"
        " stopped); compose, `docker-compose up -d` from start to exit. Failed requests"
        " and the gap are counted from the edit until 3 s after completion; the steady-state"
        " gap is the same measure over the 2 s of load before the edit (what the clients"
        " see when nothing changes). Compose's failed requests are refusals, which come"
        " back at once, so its clients make many more attempts while it is down: the"
        " gap is the figure to compare.",
        "",
        "Compose publishes a host port from one container only, so it runs one replica"
        " (the usual Compose set-up without an extra load balancer); it stops the old"
        " container before it creates the new one, and the clients are refused for that"
        " long. podctl keeps the old replicas serving until each new one is ready, and"
        " drains an old one (out of every routing table, then its connections finish)"
        " before it stops it.",
        "",
        "Every sample:",
        "",
        "| method | round | time (s) | requests | failed | longest gap (s) | steady gap (s) |"
        " error |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in samples:
        lines.append(
            f"| {s.method} | {s.round} | {_f(s.seconds)} | {s.requests} | {s.failed} |"
            f" {s.gap_s:.2f} | {s.steady_gap_s:.2f} | {s.error or ''} |"
        )
    return "\n".join(lines) + "\n"


def _f(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    samples: list[Sample] = []
    methods = [run_podctl, run_compose]
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as t:
        tmp = Path(t)
        for rnd in range(1, args.rounds + 1):
            order = methods if rnd % 2 else methods[::-1]
            for fn in order:
                s = fn(rnd, tmp)
                samples.append(s)
                print(
                    f"round {rnd} {s.method}: {_f(s.seconds)} s, {s.failed}/{s.requests} failed,"
                    f" longest gap {s.gap_s:.2f} s {s.error or ''}",
                    flush=True,
                )
    text = report(samples, args.rounds)
    print(text)
    if not args.no_write:
        RESULTS_MD.write_text(text)


if __name__ == "__main__":
    main()
