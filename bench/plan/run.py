"""Planner cost per pass (issue 8): one `plan()` over a converged stack.

`python -m bench.plan` builds converged snapshots in memory (no engine): every
replica running at the desired revision, a readiness probe on every pod and a
health view that says all are ready, the stack network present, the image
present, host resources known (so admission runs), and every pod but the first
`depends_on` the first (so dependency checks run). It then times `plan()` over
each snapshot many times and reports the median per pass; the plan must be empty
(a converged stack needs no step). Writes bench/results/plan.md and prints it.

A converged pass is what the controller runs on every event and every resync, so
its cost is the planner's floor: it should grow with what changed, not with the
size of the stack.

`--baseline REF` times the planner of git revision REF too, in the same run: its
`podctl/` is exported (`git archive`) to a temporary directory and timed by a
child interpreter started without site hooks, so the editable install of this
checkout does not shadow it. Shapes alternate between the two.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from podctl import labels
from podctl.health.model import ContainerHealth
from podctl.reconcile.ledger import Ledger
from podctl.reconcile.observed import ObservedState
from podctl.reconcile.plan import container_name, plan
from podctl.runtime.protocol import ContainerInfo, HostInfo, NetworkInfo
from podctl.spec.model import (
    ContainerTemplate,
    DesiredPod,
    DesiredStack,
    HttpProbe,
    ProbeSpec,
    network_name,
)

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "plan.md"
STACK = "bench"
IMAGE = "busybox:1.36"
NOW = 1_800_000_000.0

# (pods, replicas per pod, target ms per pass or None)
SHAPES: tuple[tuple[int, int, float | None], ...] = (
    (1000, 1, 10.0),
    (100, 50, 20.0),
    (1, 1000, None),
)


@dataclass(frozen=True)
class Snapshot:
    desired: DesiredStack
    observed: ObservedState
    health: dict[str, ContainerHealth]

    @property
    def replicas(self) -> int:
        return len(self.observed.containers)


def build(pods: int, replicas: int) -> Snapshot:
    """A converged stack of `pods` pods with `replicas` replicas each."""
    probe = ProbeSpec(check=HttpProbe(port=8080, path="/"), period_s=1.0)
    desired: list[DesiredPod] = []
    containers: list[ContainerInfo] = []
    health: dict[str, ContainerHealth] = {}
    first = "p0000"
    for i in range(pods):
        name = f"p{i:04d}"
        revision = f"{i:08x}deadbeef"
        desired.append(
            DesiredPod(
                stack=STACK,
                name=name,
                replicas=replicas,
                template=ContainerTemplate(
                    image=IMAGE,
                    command=("httpd", "-f", "-p", "8080"),
                    ports=(("http", 8080),),
                    nano_cpus=1_000_000,
                    memory_bytes=1 << 20,
                    readiness=probe,
                ),
                revision=revision,
                depends_on=(first,) if name != first else (),
            )
        )
        for r in range(replicas):
            cid = f"{i:06d}{r:06d}".ljust(64, "0")
            started = NOW - 3600.0 + i + r / 1000.0
            containers.append(
                ContainerInfo(
                    id=cid,
                    name=container_name(STACK, name, r, revision),
                    labels={
                        labels.STACK: STACK,
                        labels.POD: name,
                        labels.REPLICA: str(r),
                        labels.REVISION: revision,
                        labels.CONTAINER: name,
                    },
                    state="running",
                    image=IMAGE,
                    exit_code=None,
                    started_at=started,
                    ip=f"10.{(len(containers) >> 16) & 255}.{(len(containers) >> 8) & 255}."
                    f"{len(containers) & 255}",
                )
            )
            health[cid] = ContainerHealth(started=True, ready=True, started_at=started)
    net = network_name(STACK)
    stack = DesiredStack(
        name=STACK, source=f"/stacks/{STACK}.yaml", network=net, pods=tuple(desired)
    )
    observed = ObservedState(
        containers=tuple(containers),
        networks=(NetworkInfo(id="n" * 64, name=net, labels={labels.STACK: STACK}),),
        images=frozenset({IMAGE}),
        host=HostInfo(ncpu=64, mem_bytes=1 << 40),
    )
    return Snapshot(desired=stack, observed=observed, health=health)


def time_passes(snap: Snapshot, min_passes: int, min_seconds: float) -> list[tuple[float, float]]:
    """(wall, CPU) seconds per pass, at least `min_passes` passes and `min_seconds` in all."""
    ledger = Ledger()
    result = plan([snap.desired], snap.observed, snap.health, ledger, NOW)
    if result.steps:
        raise SystemExit(f"snapshot is not converged: {result.render()[:500]}")
    if len(result.status) != snap.replicas or not all(s.ready for s in result.status):
        raise SystemExit("snapshot is not all ready")
    for _ in range(3):  # warm-up
        plan([snap.desired], snap.observed, snap.health, ledger, NOW)
    samples: list[tuple[float, float]] = []
    start = time.perf_counter()
    while len(samples) < min_passes or time.perf_counter() - start < min_seconds:
        t0, c0 = time.perf_counter(), time.thread_time()
        plan([snap.desired], snap.observed, snap.health, ledger, NOW)
        samples.append((time.perf_counter() - t0, time.thread_time() - c0))
    return samples


def git(*args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30, check=False
    )
    return out.stdout.strip()


def describe(ref: str = "HEAD") -> str:
    return git("log", "-1", "--format=%h %s", ref)[:72] or "?"


Samples = list[tuple[float, float]]  # (wall ms, CPU ms) per pass


def measure(pods: int, replicas: int, passes: int, seconds: float) -> Samples:
    return [
        (w * 1000.0, c * 1000.0) for w, c in time_passes(build(pods, replicas), passes, seconds)
    ]


class Baseline:
    """The planner of another revision, timed in a child interpreter."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        self.label = describe(ref)
        self.dir = Path(tempfile.mkdtemp(prefix="podctl-bench-plan-"))
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref, "podctl"],
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(self.dir)], input=archive, timeout=60, check=True)
        (self.dir / "bench" / "plan").mkdir(parents=True)
        shutil.copy(ROOT / "bench" / "__init__.py", self.dir / "bench")
        for name in ("__init__.py", "run.py"):
            shutil.copy(Path(__file__).parent / name, self.dir / "bench" / "plan")

    def measure(self, pods: int, replicas: int, passes: int, seconds: float) -> Samples:
        paths = [str(self.dir), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
        out = subprocess.run(
            [
                *(sys.executable, "-S", "-m", "bench.plan.run", "--child", f"{pods}x{replicas}"),
                *("--passes", str(passes), "--seconds", str(seconds)),
            ],
            cwd=self.dir,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if out.returncode != 0:
            raise SystemExit(f"baseline {self.ref} failed:\n{out.stderr[-2000:]}")
        return [(w, c) for w, c in json.loads(out.stdout)]

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def row(name: str, pods: int, replicas: int, target: float | None, samples: Samples) -> str:
    wall = sorted(w for w, _ in samples)
    cpu = statistics.median(c for _, c in samples)
    med = statistics.median(wall)
    p90 = wall[max(int(len(wall) * 0.9) - 1, 0)]
    per_replica_us = cpu * 1000.0 / (pods * replicas)
    verdict = "-" if target is None else ("yes" if med <= target else "**no**")
    return (
        f"| {pods} x {replicas} | {name} | **{med:.2f}** | {cpu:.2f} | {wall[0]:.2f} | {p90:.2f} "
        f"| {per_replica_us:.1f} | {len(wall)} | {'-' if target is None else f'{target:g}'} "
        f"| {verdict} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    ap.add_argument("--passes", type=int, default=30, help="at least this many passes per shape")
    ap.add_argument("--seconds", type=float, default=3.0, help="and at least this long per shape")
    ap.add_argument("--baseline", metavar="REF", help="also time the planner of git REF")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--child", metavar="PODSxREPLICAS", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        pods, replicas = (int(x) for x in args.child.split("x"))
        print(json.dumps(measure(pods, replicas, args.passes, args.seconds)))
        return

    baseline = Baseline(args.baseline) if args.baseline else None
    here = describe() + (" + uncommitted changes" if git("status", "--porcelain", "podctl") else "")
    rows = []
    try:
        for pods, replicas, target in SHAPES:
            if baseline is not None:
                ms = baseline.measure(pods, replicas, args.passes, args.seconds)
                rows.append(row(f"before: `{args.baseline}`", pods, replicas, target, ms))
                print(rows[-1], file=sys.stderr, flush=True)
            ms = measure(pods, replicas, args.passes, args.seconds)
            rows.append(row("this checkout" if baseline else "", pods, replicas, target, ms))
            print(rows[-1], file=sys.stderr, flush=True)
    finally:
        if baseline is not None:
            baseline.close()

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    code = f"this checkout `{here}`"
    if baseline is not None:
        code += f"; before = `{args.baseline}` (`{baseline.label}`)"
    text = "\n".join(
        [
            "# Planner: cost of one pass over a converged stack",
            "",
            f"`python -m bench.plan{' --baseline ' + args.baseline if baseline else ''}` "
            f"({time.strftime('%Y-%m-%d %H:%M')}); {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}; load average at the end {load}.",
            f"Code: {code}.",
            "",
            "Every replica running at the desired revision with a readiness probe and a "
            "ready health view; every pod but the first `depends_on` the first; host "
            "resources known (admission runs). The plan is checked to be empty. "
            "Times are for one `plan()` call (wall clock; CPU = the thread's CPU time, "
            "less disturbed by other work on the host), at least "
            f"{args.passes} passes and {args.seconds:g} s per shape after 3 warm-up passes.",
            "",
            "| pods x replicas | code | median ms/pass | median CPU ms | min ms | p90 ms "
            "| CPU µs per replica | passes | target ms | median within target |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
            *rows,
            "",
        ]
    )
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
