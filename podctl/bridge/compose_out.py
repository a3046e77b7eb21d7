"""`podctl export --to compose`: a compose file for `docker stack deploy` on a Swarm.

One compose service per pod (its DNS name in the stack), `deploy.replicas`,
`update_config` that mirrors the rollout (start-first when `max_unavailable` is
0, as podctl surges before it stops), `failure_action: rollback`, a healthcheck
from the readiness probe, secrets, configs, volumes and published ports.
Swarm has no equivalent for some podctl features; each loss is reported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from podctl import defaults
from podctl.bridge.report import FidelityEntry, Verdict
from podctl.spec import model
from podctl.spec.units import format_duration

if TYPE_CHECKING:
    from collections.abc import Mapping

    from podctl.spec.model import DesiredPod, DesiredStack, ProbeSpec

COMPOSE_VERSION = "3.8"  # `docker stack deploy` reads the 3.x format
_RESTART = {"always": "any", "on-failure": "on-failure", "never": "none"}


class _Out:
    def __init__(self) -> None:
        self.report: list[FidelityEntry] = []

    def note(self, stack: DesiredStack, doc: str, path: str, verdict: Verdict, why: str) -> None:
        self.report.append(
            FidelityEntry(
                file=stack.source,
                line=1,
                column=1,
                document=doc,
                path=path,
                verdict=verdict,
                reason=why,
            )
        )


def export_compose(
    stacks: list[DesiredStack], *, secret_sources: Mapping[str, Mapping[str, str]] | None = None
) -> tuple[str, list[FidelityEntry]]:
    """One compose file per stack, as YAML documents (deploy each with its stack name)."""
    out = _Out()
    texts = []
    for stack in stacks:
        data = _escape(_stack(out, stack, (secret_sources or {}).get(stack.name, {})))
        texts.append(
            f"# docker stack deploy -c FILE {stack.name}\n" + yaml.safe_dump(data, sort_keys=False)
        )
    return "---\n".join(texts), out.report


def _escape(value: Any) -> Any:
    """Every `$` as `$$`: compose interpolates `$VAR` and `${VAR}` in every string,
    and podctl's values are final (its own `${...}` were expanded on load), so a
    shell's `$(...)` in a command must reach the container as written."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value


def _stack(out: _Out, stack: DesiredStack, sources: Mapping[str, str]) -> dict[str, Any]:
    services: dict[str, Any] = {}
    for pod in stack.pods:
        services[pod.name] = _service(out, stack, pod)
    for svc in stack.services:
        target = services.get(svc.pod)
        if target is None:
            continue
        doc = f"service {svc.name}"
        in_stack = svc.port if svc.port is not None else svc.target_port
        if svc.name != svc.pod:
            aliases = target.setdefault("networks", {"default": {"aliases": []}})
            aliases["default"]["aliases"].append(svc.name)
        if in_stack != svc.target_port:
            out.note(
                stack,
                doc,
                "port",
                "approximated",
                f"in the swarm it answers at {svc.name}:{svc.target_port}",
            )
        if svc.port is not None:
            target.setdefault("ports", []).append(
                {
                    "target": svc.target_port,
                    "published": svc.port,
                    "protocol": "tcp",
                    "mode": "ingress",
                }
            )
            if svc.bind in ("127.0.0.1", "::1"):
                out.note(
                    stack,
                    doc,
                    "bind",
                    "approximated",
                    "the swarm publishes on every address, not only loopback",
                )
    for service in services.values():
        if "ports" not in service:
            # In-stack only: DNS round-robin over the running (healthy) tasks, as
            # podctl's in-stack names reach ready replicas only. It also needs no
            # IPVS virtual IP, which some kernels lack (the VIP then times out).
            # Published services keep the VIP: the routing mesh requires it.
            service.setdefault("deploy", {})["endpoint_mode"] = "dnsrr"
    data: dict[str, Any] = {"version": COMPOSE_VERSION, "services": services}
    if stack.configs:
        configs: dict[str, Any] = {}
        for config in stack.configs:
            if config.file is not None:
                configs[config.name] = {"file": config.file}
            else:
                # Swarm configs are not namespaced by stack when external: the
                # stack's name in front keeps two stacks' configs apart.
                name = f"{stack.name}_{config.name}"
                configs[config.name] = {"external": True, "name": name}
                out.note(
                    stack,
                    f"config {config.name}",
                    "data",
                    "approximated",
                    f"inline data: create it first with `docker config create {name} -`",
                )
        data["configs"] = configs
    if stack.secrets:
        secrets: dict[str, Any] = {}
        for secret in stack.secrets:
            if secret.file is not None:
                secrets[secret.name] = {"file": secret.file}
            else:
                name = f"{stack.name}_{secret.name}"
                secrets[secret.name] = {"external": True, "name": name}
                source = sources.get(secret.name, f"env {secret.env}")
                out.note(
                    stack,
                    f"secret {secret.name}",
                    "env",
                    "approximated",
                    f"from {source}: create it first with `docker secret create {name} -`",
                )
        data["secrets"] = secrets
    if stack.volumes:
        volumes: dict[str, Any] = {}
        for volume in stack.volumes:
            spec: dict[str, Any] = {"name": volume.docker_name}
            if volume.driver is not None:
                spec["driver"] = volume.driver
            if volume.options:
                spec["driver_opts"] = dict(volume.options)
            volumes[volume.name] = spec
        data["volumes"] = volumes
    return data


def _service(out: _Out, stack: DesiredStack, pod: DesiredPod) -> dict[str, Any]:
    doc = f"pod {pod.name}"
    t = pod.template
    svc: dict[str, Any] = {"image": t.image}
    if pod.build is not None:
        out.note(
            stack,
            doc,
            "build",
            "approximated",
            f"a swarm pulls images: push {t.image} to a registry first",
        )
    if t.entrypoint is not None:
        svc["entrypoint"] = list(t.entrypoint)
    if t.command is not None:
        svc["command"] = list(t.command)
    if t.env:
        svc["environment"] = dict(t.env)
    for ref in t.env_from:
        out.note(
            stack,
            doc,
            f"env.{ref.name}",
            "not carried over",
            f"a swarm has no env from a {ref.kind}: mount it as a file instead",
        )
    if t.user is not None:
        svc["user"] = t.user
    if t.workdir is not None:
        svc["working_dir"] = t.workdir
    if t.labels:
        svc["labels"] = dict(t.labels)
    if t.read_only_rootfs:
        svc["read_only"] = True
    if t.cap_add:
        svc["cap_add"] = list(t.cap_add)
    if t.cap_drop:
        svc["cap_drop"] = list(t.cap_drop)
    if t.pids_limit != defaults.PIDS_LIMIT:
        out.note(stack, doc, "pids_limit", "not carried over", "not in compose 3.x")
    svc["stop_grace_period"] = format_duration(t.stop_grace_s)

    volumes: list[str] = []
    secrets: list[dict[str, Any]] = []
    configs: list[dict[str, Any]] = []
    for mount in t.mounts:
        if mount.kind == "volume":
            volumes.append(f"{mount.source}:{mount.target}" + (":ro" if mount.read_only else ""))
        elif mount.kind == "bind":
            volumes.append(f"{mount.source}:{mount.target}" + (":ro" if mount.read_only else ""))
            out.note(
                stack,
                doc,
                f"mounts {mount.target}",
                "approximated",
                f"a bind mount: {mount.source} must exist on every node",
            )
        elif mount.kind == "tmpfs":
            svc.setdefault("tmpfs", []).append(mount.target)
        else:
            item: dict[str, Any] = {"source": mount.source, "target": mount.target}
            if mount.mode is not None:
                item["mode"] = mount.mode
            if mount.uid is not None:
                item["uid"] = str(mount.uid)
            if mount.gid is not None:
                item["gid"] = str(mount.gid)
            (secrets if mount.kind == "secret" else configs).append(item)
    if volumes:
        svc["volumes"] = volumes
    if secrets:
        svc["secrets"] = secrets
    if configs:
        svc["configs"] = configs

    if t.readiness is not None:
        health = _healthcheck(out, stack, doc, t.readiness)
        if health is not None:
            svc["healthcheck"] = health
    if t.liveness is not None:
        out.note(
            stack,
            doc,
            "liveness",
            "approximated",
            "a swarm has one healthcheck (from readiness); it also restarts on failure",
        )
    if t.startup is not None:
        # The kubelet gives a container this long to start before other probes
        # count; a swarm's start_period is the same grace for its one healthcheck.
        su = t.startup
        grace = su.initial_delay_s + su.period_s * su.failure_threshold
        health = svc.get("healthcheck")
        if health is not None:
            ready_delay = t.readiness.initial_delay_s if t.readiness is not None else 0.0
            health["start_period"] = format_duration(max(grace, ready_delay))
        out.note(
            stack,
            doc,
            "startup",
            "approximated",
            f"the healthcheck's start_period ({format_duration(grace)})"
            if health is not None
            else "no healthcheck to give a start_period to (no readiness probe)",
        )

    deploy: dict[str, Any] = {
        "replicas": pod.replicas,
        "restart_policy": {"condition": _RESTART[pod.restart]},
    }
    surge, unavailable = pod.rollout.max_surge, pod.rollout.max_unavailable
    parallelism = _count(unavailable if unavailable not in (0, "0%") else surge, pod.replicas)
    deploy["update_config"] = {
        "parallelism": max(1, parallelism),
        "order": "start-first" if unavailable in (0, "0%") else "stop-first",
        "failure_action": "rollback",
    }
    if t.readiness is not None:
        deploy["update_config"]["monitor"] = format_duration(
            max(t.readiness.period_s * t.readiness.success_threshold, 1.0)
        )
    limits: dict[str, Any] = {}
    if t.nano_cpus:
        limits["cpus"] = f"{t.nano_cpus / 1e9:g}"
    if t.memory_bytes:
        limits["memory"] = str(t.memory_bytes)
    if limits:
        deploy["resources"] = {"limits": limits}
    svc["deploy"] = deploy
    return svc


def _count(amount: int | str, replicas: int) -> int:
    if isinstance(amount, int):
        return amount
    percent = int(amount.rstrip("%"))
    return (replicas * percent + 99) // 100


def _healthcheck(
    out: _Out, stack: DesiredStack, doc: str, probe: ProbeSpec
) -> dict[str, Any] | None:
    check = probe.check
    if isinstance(check, model.ExecProbe):
        test = ["CMD", *check.command]
    elif isinstance(check, model.HttpProbe):
        if check.scheme != "http" or check.headers:
            out.note(
                stack,
                doc,
                "readiness",
                "not carried over",
                "an https or header-carrying probe needs a client in the image",
            )
            return None
        test = [
            "CMD",
            "wget",
            "-q",
            "-O",
            "/dev/null",
            f"http://127.0.0.1:{check.port}{check.path}",
        ]
        out.note(
            stack,
            doc,
            "readiness",
            "approximated",
            "run inside the container with wget: the image must have it",
        )
    else:
        # `nc -z` is netcat-openbsd's and GNU's; busybox's nc has no -z but returns
        # at once when its stdin is empty (0 connected, 1 refused): try both.
        port = check.port
        test = [
            "CMD-SHELL",
            f"nc -z 127.0.0.1 {port} 2>/dev/null || nc -w 1 127.0.0.1 {port} </dev/null >/dev/null",
        ]
        out.note(
            stack,
            doc,
            "readiness",
            "approximated",
            "run inside the container with nc: the image must have it",
        )
    health: dict[str, Any] = {
        "test": test,
        "interval": format_duration(probe.period_s),
        "timeout": format_duration(probe.timeout_s),
        "retries": probe.failure_threshold,
    }
    if probe.initial_delay_s:
        health["start_period"] = format_duration(probe.initial_delay_s)
    return health


__all__ = ["COMPOSE_VERSION", "export_compose"]
