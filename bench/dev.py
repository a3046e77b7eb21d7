"""Dev-mode benchmark: save -> new content served by every replica through the proxy.

One command: `python -m bench.dev [--saves 10] [--replicas 2] [--idle-files 10000]`.

The workload is the integration test's: a `build:` pod (FROM busybox:1.36, COPY
site /www, httpd) with N replicas behind a podctl service, a `sync` rule on
`./app/site` -> `/www`, run by `podctl dev` (the venv's podctl).

1. Save latency, `--saves` times: t0 just before the file is written (a new
   content each time); done when the proxy has answered the new content on
   4 x N consecutive requests (its round robin alternates the replicas, so every
   replica is in that run; 5 ms between requests); the figure is the start of the
   first request of that run (the moment the last replica served the new content),
   minus t0. podctl's
   own meter (the `Synced` event's "in X ms", from the last file event of the
   batch) is reported beside it.
2. Rebuild and roll, `--rebuilds` times: a Dockerfile edit (a new `RUN echo`
   line) until every replica serves the new image's marker through the proxy
   and only the new revision is left, with requests through the proxy all along
   (failed ones counted). Then the same edits with `docker-compose up -d
   --build` of a copy of the context (one replica on a host port: Compose v1
   cannot balance two behind one), requests through that port all along.
3. Idle CPU of the `podctl dev` process with a watch tree of `--idle-files`
   files and nothing changing, over `--idle-s` seconds (from /proc, user+system),
   next to `podctl run` of the same stack, alternated, lowest of 2 windows each.

Results go to bench/results/dev.md. Everything is removed afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_MD = ROOT / "bench" / "results" / "dev.md"
PODCTL = str(Path(sys.executable).parent / "podctl")
POLL_GAP_S = 0.005

DOCKERFILE = """FROM busybox:1.36
COPY site /www
{extra}CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""

STACK = """name: {name}
pods:
  web:
    build: ./app
    replicas: {replicas}
    ports: {{http: 8080}}
    readiness: {{http: {{port: http, path: /index.html}}, period: 1s}}
    stop_grace: 1s
    develop:
      watch:
        - {{path: ./app/site, action: sync, target: /www}}
        - {{path: ./app/Dockerfile, action: rebuild}}
services:
  web: {{pod: web, port: {port}, target: http}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str) -> tuple[int, bytes]:
    """One HTTP/1.0 request (a fresh connection, as the proxy balances connections)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, body


class Load:
    """Requests through `port`, one after the other, in a thread, for as long as it is
    entered; counts the failed ones (refused, reset, not 200)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.failures = 0
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, _ = http_get(self.port, "/index.html")
                self.failures += status != 200
            except OSError:
                self.failures += 1
            self.requests += 1

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


class Dev:
    def __init__(self, tmp: Path, replicas: int) -> None:
        self.tmp = tmp
        self.name = f"bdev-{secrets.token_hex(3)}"
        self.replicas = replicas
        self.port = free_port()
        self.app = tmp / "app"
        (self.app / "site").mkdir(parents=True)
        (self.app / "Dockerfile").write_text(DOCKERFILE.format(extra=""))
        (self.app / "site" / "index.html").write_text("v0\n")
        self.stack = tmp / "stack.yaml"
        self.stack.write_text(STACK.format(name=self.name, replicas=replicas, port=self.port))
        self.env = dict(os.environ)
        self.env.update(
            PODCTL_SOCKET=str(tmp / "podctl.sock"),
            PODCTL_STATE_DIR=str(tmp / "state"),
            PODCTL_RUNTIME_DIR=str(tmp / "run"),
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        return subprocess.run(
            [PODCTL, *args], env=self.env, capture_output=True, text=True, timeout=60, check=True
        ).stdout

    def start(self, verb: str = "dev") -> None:
        log = (self.tmp / "podctl.log").open("ab")
        self.proc = subprocess.Popen(
            [PODCTL, verb, str(self.stack)], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.wait("2 ready replicas", lambda: self.ready() == self.replicas, 300)

    def ready(self) -> int:
        try:
            pods = json.loads(self.cli("get", "pods", self.name, "-o", "json"))
        except subprocess.CalledProcessError:
            return -1
        return sum(1 for p in pods if p["ready"])

    def pods(self) -> list[dict[str, Any]]:
        return list(json.loads(self.cli("get", "pods", self.name, "-o", "json")))

    def events(self, reason: str) -> list[dict[str, Any]]:
        out = json.loads(self.cli("events", self.name, "-o", "json"))
        return [e for e in out if e["reason"] == reason]

    def wait(self, what: str, fn: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise SystemExit(f"podctl dev exited: see {self.tmp / 'podctl.log'}")
            if fn():
                return
            time.sleep(0.2)
        raise SystemExit(f"timed out waiting for {what}")

    def stop(self, *, remove_images: bool = True) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=io.podctl.stack={self.name}"],
            capture_output=True,
            check=False,
        )
        if not remove_images:
            return
        images = subprocess.run(
            ["docker", "images", "-q", f"podctl-build/{self.name}-web"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if images:
            subprocess.run(
                ["docker", "rmi", "-f", *sorted(set(images))], capture_output=True, check=False
            )

    # -- 1. save latency --------------------------------------------------------------

    def served_everywhere(self, path: str, body: bytes, t0: float, timeout: float) -> float:
        """Seconds from t0 until the proxy's run of 4 x replicas new answers began."""
        need = 4 * self.replicas
        run_start: float | None = None
        run = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = time.time()
            try:
                status, got = http_get(self.port, path)
            except OSError:
                status, got = 0, b""
            if status == 200 and got == body:
                if run == 0:
                    run_start = started
                run += 1
                if run >= need:
                    assert run_start is not None
                    return run_start - t0
            else:
                run = 0
            # A short gap: the poll itself must not be the proxy's (and the loop's) load.
            time.sleep(POLL_GAP_S)
        raise SystemExit(f"new content not served everywhere within {timeout}s")

    def floor(self, body: bytes) -> float:
        """The engine's own cost of the same write: one archive PUT of the file to every
        replica at once, straight through the engine API (no watching, no proxy)."""
        import anyio

        from podctl.dev.archive import tar_files
        from podctl.dev.changes import FileUpdate
        from podctl.runtime.docker import DockerRuntime

        ids = [p["container_id"] for p in self.pods() if p["ready"]]
        archive = tar_files([FileUpdate("/www/floor.html", body, 0o644)])

        async def go() -> float:
            async with DockerRuntime() as rt:
                t0 = time.monotonic()
                async with anyio.create_task_group() as tg:
                    for cid in ids:
                        tg.start_soon(rt.put_archive, cid, "/", archive)
                return time.monotonic() - t0

        return anyio.run(go)

    def save_latency(self, saves: int) -> tuple[list[float], list[float]]:
        index = self.app / "site" / "index.html"
        out: list[float] = []
        self.floors: list[float] = []
        for i in range(saves):
            body = f"save {i} {secrets.token_hex(4)}\n".encode()
            t0 = time.time()
            index.write_bytes(body)
            out.append(self.served_everywhere("/index.html", body, t0, 30))
            time.sleep(0.5)  # let the batch's event land before the next save
            self.floors.append(self.floor(body))
            time.sleep(0.2)
        meters = []
        for e in self.events("Synced"):
            words = e["message"].split()
            if words[-1] == "ms":
                meters.append(float(words[-2]) / 1000)
        return out, meters

    # -- 2. rebuild and roll ------------------------------------------------------------

    def rebuild(self, i: int) -> tuple[float, int, int]:
        before = {p["revision"] for p in self.pods()}
        with Load(self.port) as load:
            marker = f"rebuild {i} {secrets.token_hex(4)}"
            t0 = time.time()
            (self.app / "Dockerfile").write_text(
                DOCKERFILE.format(extra=f"RUN echo '{marker}' > /www/rev.txt\n")
            )

            def rolled() -> bool:
                pods = self.pods()
                return (
                    len(pods) == self.replicas
                    and all(p["ready"] for p in pods)
                    and not {p["revision"] for p in pods} & before
                )

            self.wait("the new revision", rolled, 300)
            took = self.served_everywhere("/rev.txt", (marker + "\n").encode(), t0, 60)
        return took, load.failures, load.requests

    # -- 4. the same rebuild with docker-compose ----------------------------------------

    def compose_rebuilds(self, rounds: int) -> list[tuple[float, int, int]]:
        """`docker-compose up -d --build` after the same Dockerfile edit, on a copy of
        the context: one replica publishing a host port (Compose v1 cannot put two
        replicas behind one port), requests through that port all along."""
        d = self.tmp / "compose"
        shutil.copytree(self.app, d / "app", ignore=shutil.ignore_patterns("tree"))
        (d / "app" / "Dockerfile").write_text(DOCKERFILE.format(extra=""))
        port = free_port()
        (d / "docker-compose.yml").write_text(
            'version: "2.4"\nservices:\n  web:\n    build: ./app\n'
            f'    ports: ["127.0.0.1:{port}:8080"]\n    stop_grace_period: 1s\n'
        )
        project = f"{self.name}c"
        cmd = ["docker-compose", "-p", project, "-f", str(d / "docker-compose.yml")]
        out: list[tuple[float, int, int]] = []
        try:
            subprocess.run([*cmd, "up", "-d", "--build"], capture_output=True, check=True)
            for i in range(rounds):
                with Load(port) as load:
                    marker = f"compose {i} {secrets.token_hex(4)}"
                    t0 = time.time()
                    (d / "app" / "Dockerfile").write_text(
                        DOCKERFILE.format(extra=f"RUN echo '{marker}' > /www/rev.txt\n")
                    )
                    subprocess.run([*cmd, "up", "-d", "--build"], capture_output=True, check=True)
                    saved, self.port = self.port, port
                    try:
                        took = self.served_everywhere("/rev.txt", (marker + "\n").encode(), t0, 120)
                    finally:
                        self.port = saved
                out.append((took, load.failures, load.requests))
        finally:
            subprocess.run(
                [*cmd, "down", "--rmi", "local", "-t", "1"], capture_output=True, check=False
            )
        return out

    # -- 3. idle CPU ---------------------------------------------------------------------

    def idle_cpu(self, files: int, seconds: float) -> dict[str, float]:
        """CPU of an idle `podctl dev` with `files` in its watch tree, next to `podctl run`
        of the same stack (probes, proxy, hot reload: the baseline the watcher adds to).
        The tree is made while nothing runs, so neither start syncs or rebuilds."""
        self.stop(remove_images=False)
        tree = self.app / "site" / "tree"
        for i in range(files):
            d = tree / f"d{i // 100}"
            if i % 100 == 0:
                d.mkdir(parents=True, exist_ok=True)
            (d / f"f{i}.txt").write_text(str(i))
        out: dict[str, float] = {}
        tick = os.sysconf("SC_CLK_TCK")
        for verb in ("dev", "run", "dev", "run"):
            self.start(verb)
            time.sleep(5.0)  # past start-up: the first probes, the first passes
            assert self.proc is not None
            stat = Path(f"/proc/{self.proc.pid}/stat")

            def cpu(stat: Path = stat) -> float:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / tick

            c0, t0 = cpu(), time.monotonic()
            time.sleep(seconds)
            share = 100 * (cpu() - c0) / (time.monotonic() - t0)
            out[verb] = min(out.get(verb, share), share)
            self.stop(remove_images=False)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--saves", type=int, default=10)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--rebuilds", type=int, default=3)
    ap.add_argument("--idle-files", type=int, default=10_000)
    ap.add_argument("--idle-s", type=float, default=20.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-dev-"))
    dev = Dev(tmp, args.replicas)
    floors: list[float] = []
    compose: list[tuple[float, int, int]] = []
    try:
        dev.start()
        saves, meters = dev.save_latency(args.saves)
        print("save -> served everywhere (s):", [round(s, 3) for s in saves], flush=True)
        print("engine floor (s):", [round(s, 3) for s in dev.floors], flush=True)
        floors = dev.floors
        rebuilds = [dev.rebuild(i) for i in range(args.rebuilds)]
        print("rebuild and roll:", rebuilds, flush=True)
        compose = dev.compose_rebuilds(args.rebuilds) if shutil.which("docker-compose") else []
        print("docker-compose up -d --build:", compose, flush=True)
        idle = dev.idle_cpu(args.idle_files, args.idle_s) if args.idle_files else None
        print("idle CPU % (lowest of 2 windows each):", idle, flush=True)
    finally:
        dev.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    write_results(args, saves, meters, floors, rebuilds, compose, idle)


def write_results(
    args: argparse.Namespace,
    saves: list[float],
    meters: list[float],
    floors: list[float],
    rebuilds: list[tuple[float, int, int]],
    compose: list[tuple[float, int, int]],
    idle: dict[str, float] | None,
) -> None:
    engine = subprocess.run(
        ["docker", "version", "-f", "{{.Server.Version}}"], capture_output=True, text=True
    ).stdout.strip()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    ms = [round(s * 1000) for s in saves]
    lines = [
        "# Dev mode: save -> new content served by every replica",
        "",
        f"`python -m bench.dev` ({now}); engine Docker {engine}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; {args.replicas} replicas of a `build:` busybox "
        "httpd pod behind the podctl proxy, a `sync` rule on its site.",
        "",
        "| figure | median | all samples |",
        "|---|---:|---|",
        f"| save -> served by every replica through the proxy | **{statistics.median(ms)} ms** "
        f"| {', '.join(map(str, ms))} ms |",
    ]
    if meters:
        m = [round(x * 1000) for x in meters]
        lines.append(
            f"| podctl's own `Synced` meter (last file event -> last replica written) "
            f"| {statistics.median(m)} ms | {', '.join(map(str, m))} ms |"
        )
    if floors:
        f = [round(x * 1000) for x in floors]
        lines.append(
            f"| engine floor: one archive PUT of the file to every replica at once, direct "
            f"| {statistics.median(f)} ms | {', '.join(map(str, f))} ms |"
        )
    if rebuilds:
        took = [round(r[0], 1) for r in rebuilds]
        failed = [f"{r[1]}/{r[2]}" for r in rebuilds]
        lines.append(
            f"| Dockerfile edit -> rebuilt and rolled, new image served everywhere "
            f"| {statistics.median(took)} s | {', '.join(map(str, took))} s "
            f"(failed requests under load: {', '.join(failed)}) |"
        )
    if compose:
        took = [round(r[0], 1) for r in compose]
        failed = [f"{r[1]}/{r[2]}" for r in compose]
        lines.append(
            f"| the same edit, `docker-compose up -d --build` (1 replica on a host port) "
            f"| {statistics.median(took)} s | {', '.join(map(str, took))} s "
            f"(failed requests under load: {', '.join(failed)}) |"
        )
    if idle is not None:
        lines.append(
            f"| CPU of `podctl dev` idle, {args.idle_files} files watched "
            f"| {idle['dev']:.2f} % | `podctl run` of the same stack: {idle['run']:.2f} % "
            f"(lowest of 2 windows of {args.idle_s:g} s each; both probe 2 replicas every 1 s) |"
        )
    lines += [
        "",
        "Save latency: t0 just before the write; done at the start of the first of "
        f"{4 * args.replicas} consecutive proxied requests answering the new content "
        "(the proxy's round robin alternates replicas). Compose's `develop.watch` waits "
        "a fixed 500 ms quiet period before it starts copying. The floor is measured "
        "after each save, interleaved, so both see the same engine load.",
        "",
        f"Load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
        "(the engine is shared with other users of this machine).",
        "",
    ]
    RESULTS_MD.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
