"""The engine's floor: create and start N containers straight through the API.

Run as its own process (`python -m bench.startup.floor ...`), so it pays the
same interpreter start-up a `podctl run` does. It sends the bodies podctl sends
for the benchmark's stack (same image, command, labels, network, limits), with
nothing podctl needs and a throwaway script does not: no snapshot, no image
check, no inspect after creating the network. Each container is created then
started with at most `--concurrency` containers in flight (podctl's
ENGINE_CONCURRENCY by default; 0 = unbounded). It prints one JSON line of wall
clock timestamps (time.time()) for the harness.
"""

from __future__ import annotations

import time

T_PROCESS = time.time()  # before the imports below: what they cost is reported

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

import aiodocker  # noqa: E402

# podctl's label names, spelled out: the floor does not import podctl.
STACK, POD, REPLICA, REVISION, CONTAINER, KIND = (
    "io.podctl.stack",
    "io.podctl.pod",
    "io.podctl.replica",
    "io.podctl.revision",
    "io.podctl.container",
    "io.podctl.kind",
)
REVISION_HASH = "f100r0000000"


def network_name(stack: str) -> str:
    return f"podctl_{stack}"


def container_body(
    stack: str, replica: int, image: str, command: list[str], extra_labels: dict[str, str]
) -> dict[str, Any]:
    """What podctl's engine_json.container_config sends for the bench stack's pod."""
    net = network_name(stack)
    return {
        "Image": image,
        "Cmd": command,
        "Labels": {
            **extra_labels,
            STACK: stack,
            POD: "web",
            REPLICA: str(replica),
            REVISION: REVISION_HASH,
            CONTAINER: "web",
        },
        "Env": [],
        "Tty": False,
        "OpenStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "StopTimeout": 0,
        "Hostname": f"web-{replica}",
        "HostConfig": {
            "RestartPolicy": {"Name": "no"},
            "NetworkMode": net,
            "Init": False,
            "ReadonlyRootfs": False,
            "PidsLimit": 1024,
            "SecurityOpt": ["no-new-privileges"],
        },
        "NetworkingConfig": {"EndpointsConfig": {net: {"Aliases": [f"web-{replica}"]}}},
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    t_imported = time.time()
    extra = dict(kv.split("=", 1) for kv in args.label)
    docker = aiodocker.Docker()
    create_s: list[float] = []
    start_s: list[float] = []
    try:
        await docker.networks.create(
            {
                "Name": network_name(args.stack),
                "Driver": "bridge",
                "Labels": {**extra, STACK: args.stack, KIND: "network"},
                "CheckDuplicate": True,
            }
        )
        t_network = time.time()
        sem = asyncio.Semaphore(args.concurrency if args.concurrency > 0 else args.n)

        async def one(replica: int) -> None:
            body = container_body(args.stack, replica, args.image, args.command, extra)
            async with sem:
                t = time.perf_counter()
                container = await docker.containers.create(
                    body, name=f"{args.stack}-web-{replica}-{REVISION_HASH[:6]}"
                )
                t2 = time.perf_counter()
                await container.start()
                create_s.append(t2 - t)
                start_s.append(time.perf_counter() - t2)

        async with asyncio.TaskGroup() as tg:
            for i in range(args.n):
                tg.create_task(one(i))
        t_started = time.time()
    finally:
        await docker.close()
    return {
        "process": T_PROCESS,
        "imported": t_imported,
        "network": t_network,
        "started": t_started,
        "cpu_s": time.process_time(),
        "create_median_s": statistics.median(create_s),
        "start_median_s": statistics.median(start_s),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--stack", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=8, help="0 = unbounded")
    p.add_argument("--image", default="busybox:1.36")
    p.add_argument("--label", action="append", default=[], help="extra label k=v")
    p.add_argument("command", nargs="*", default=["sleep", "3600"])
    args = p.parse_args()
    if not args.command:
        args.command = ["sleep", "3600"]
    print(json.dumps(asyncio.run(run(args))), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
