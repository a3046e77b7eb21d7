"""`podctl export --to kubernetes`: a stack as Kubernetes documents.

Written from the normalised `DesiredStack`, so what is exported is what podctl
runs. Shapes are chosen so that importing the export gives the same pods,
replicas and revisions (`kube_in` reads them back):
- each config/secret is a ConfigMap/Secret of its own name with one key of the
  same name, mounted with `subPath` (one file, like podctl's mount);
- the selector label is `io.podctl.pod`, which import leaves out of the pod's labels;
- `depends_on` travels as the `podctl.io/depends-on` annotation.
Secret values are written only when asked; otherwise each Secret carries its
key with an empty value and a `podctl.io/secret-source` annotation.
"""

from __future__ import annotations

import base64
import math
import os
import re
from typing import TYPE_CHECKING, Any

from podctl import defaults
from podctl import labels as podctl_labels
from podctl.bridge.kube_in import ANNOTATION_DEPENDS_ON, ANNOTATION_SECRET_SOURCE
from podctl.bridge.report import FidelityEntry, Verdict
from podctl.spec import model
from podctl.spec.units import format_size

if TYPE_CHECKING:
    from collections.abc import Mapping

    from podctl.spec.model import (
        DesiredConfig,
        DesiredPod,
        DesiredSecret,
        DesiredStack,
        MountSpec,
        ProbeSpec,
    )

_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_K8S_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?")
_NUMERIC_USER = re.compile(r"(\d+)(?::(\d+))?")
PVC_PLACEHOLDER_SIZE = "1Gi"


class KubeExport:
    def __init__(self, stack: DesiredStack) -> None:
        self.stack = stack
        self.documents: list[dict[str, Any]] = []
        self.report: list[FidelityEntry] = []

    def note(self, document: str, path: str, verdict: Verdict, reason: str) -> None:
        self.report.append(
            FidelityEntry(
                file=self.stack.source,
                line=1,
                column=1,
                document=document,
                path=path,
                verdict=verdict,
                reason=reason,
            )
        )


def export_kubernetes(
    stack: DesiredStack,
    *,
    secret_values: Mapping[str, bytes] | None = None,
    secret_sources: Mapping[str, str] | None = None,
) -> KubeExport:
    """The stack as Kubernetes documents (Namespace first) and what did not carry over.

    `secret_values` (secret name -> value) is given only with
    `--include-secret-values`; `secret_sources` names where imported secrets came from.
    """
    out = KubeExport(stack)
    ns = stack.name
    out.documents.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for config in stack.configs:
        out.documents.append(_config_map(out, config))
    for secret in stack.secrets:
        out.documents.append(_secret(out, secret, secret_values, secret_sources or {}))
    for volume in stack.volumes:
        name = _k8s_name(out, f"volume {volume.name}", volume.name)
        doc = f"PersistentVolumeClaim/{name}"
        out.note(
            doc,
            "spec.resources.requests.storage",
            "approximated",
            f"Docker volumes have no size: {PVC_PLACEHOLDER_SIZE} is a placeholder",
        )
        if volume.driver is not None or volume.options:
            out.note(doc, "", "not carried over", "volume driver and options")
        out.documents.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": PVC_PLACEHOLDER_SIZE}},
                },
            }
        )
    for pod in stack.pods:
        out.documents.append(_deployment(out, pod))
    for service in stack.services:
        doc = f"Service/{service.name}"
        port = service.port if service.port is not None else service.target_port
        spec: dict[str, Any] = {
            "type": "ClusterIP" if service.port is None else "LoadBalancer",
            "selector": {podctl_labels.POD: service.pod},
            "ports": [{"port": port, "targetPort": service.target_port, "protocol": "TCP"}],
        }
        if service.port is not None and service.bind != defaults.PROXY_BIND:
            out.note(
                doc,
                "spec.type",
                "approximated",
                f"podctl listens on {service.bind}; a LoadBalancer's address is the cloud's",
            )
        out.documents.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": service.name, "namespace": ns},
                "spec": spec,
            }
        )
    return out


def k8s_name(name: str) -> str:
    """`name` as a Kubernetes object name (lowercase letters, digits, `-` and `.`)."""
    if _K8S_NAME.fullmatch(name):
        return name
    return re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-.")[:253] or "x"


def _k8s_name(out: KubeExport, what: str, name: str) -> str:
    fixed = k8s_name(name)
    if fixed != name:
        out.note(what, "", "approximated", f"renamed {fixed}: Kubernetes names are lowercase")
    return fixed


def _config_map(out: KubeExport, config: DesiredConfig) -> dict[str, Any]:
    name = _k8s_name(out, f"config {config.name}", config.name)
    if config.data is not None:
        content = config.data
    else:
        assert config.file is not None
        try:
            with open(config.file, "rb") as f:
                content = f.read()
        except OSError as exc:
            out.note(
                f"ConfigMap/{name}",
                "data",
                "not carried over",
                f"cannot read {config.file}: {exc.strerror}",
            )
            content = b""
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": out.stack.name},
    }
    try:
        doc["data"] = {name: content.decode("utf-8")}
    except UnicodeDecodeError:
        doc["binaryData"] = {name: base64.b64encode(content).decode()}
    return doc


def _secret(
    out: KubeExport,
    secret: DesiredSecret,
    values: Mapping[str, bytes] | None,
    sources: Mapping[str, str],
) -> dict[str, Any]:
    name = _k8s_name(out, f"secret {secret.name}", secret.name)
    meta: dict[str, Any] = {"name": name, "namespace": out.stack.name}
    if values is not None and secret.name in values:
        data = base64.b64encode(values[secret.name]).decode()
    else:
        data = ""
        if secret.name in sources:
            source = sources[secret.name]
        elif secret.env is not None:
            source = f"env:{secret.env}"
        else:
            source = f"file:{secret.file}"
        meta["annotations"] = {ANNOTATION_SECRET_SOURCE: source}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": {name: data},
    }


def _seconds(out: KubeExport, doc: str, path: str, value: float, minimum: int) -> int:
    whole = max(minimum, math.ceil(value))
    if whole != value:
        out.note(doc, path, "approximated", f"Kubernetes counts whole seconds: {whole}s")
    return whole


def _probe(out: KubeExport, doc: str, kind: str, probe: ProbeSpec) -> dict[str, Any]:
    check = probe.check
    handler: dict[str, Any]
    if isinstance(check, model.HttpProbe):
        http: dict[str, Any] = {
            "path": check.path,
            "port": check.port,
            "scheme": check.scheme.upper(),
        }
        if check.headers:
            http["httpHeaders"] = [{"name": k, "value": v} for k, v in check.headers]
        handler = {"httpGet": http}
    elif isinstance(check, model.TcpProbe):
        handler = {"tcpSocket": {"port": check.port}}
    else:
        handler = {"exec": {"command": list(check.command)}}
    path = f"template.{kind}"
    return {
        **handler,
        "initialDelaySeconds": _seconds(
            out, doc, f"{path}.initial_delay", probe.initial_delay_s, 0
        ),
        "periodSeconds": _seconds(out, doc, f"{path}.period", probe.period_s, 1),
        "timeoutSeconds": _seconds(out, doc, f"{path}.timeout", probe.timeout_s, 1),
        "successThreshold": probe.success_threshold,
        "failureThreshold": probe.failure_threshold,
    }


def _deployment(out: KubeExport, pod: DesiredPod) -> dict[str, Any]:
    doc = f"Deployment/{pod.name}"
    t = pod.template
    container: dict[str, Any] = {"name": pod.name, "image": t.image}
    if pod.build is not None:
        out.note(
            doc,
            "build",
            "approximated",
            f"the image is built by podctl: push {t.image} to a registry the cluster reads",
        )
    if t.entrypoint is not None:
        container["command"] = list(t.entrypoint)
    if t.command is not None:
        container["args"] = list(t.command)
    if t.workdir is not None:
        container["workingDir"] = t.workdir
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in t.env]
    for ref in t.env_from:
        key = "configMapKeyRef" if ref.kind == "config" else "secretKeyRef"
        source = k8s_name(ref.source)
        env.append({"name": ref.name, "valueFrom": {key: {"name": source, "key": source}}})
    if env:
        container["env"] = sorted(env, key=lambda e: str(e["name"]))
    ports = []
    for name, number in t.ports:
        port: dict[str, Any] = {"containerPort": number, "protocol": "TCP"}
        if _K8S_PORT_NAME.fullmatch(name) and re.search("[a-z]", name):
            port["name"] = name
        else:
            out.note(
                doc,
                f"ports.{name}",
                "approximated",
                "not a valid Kubernetes port name: exported without a name",
            )
        ports.append(port)
    if ports:
        container["ports"] = ports
    limits: dict[str, str] = {}
    if t.nano_cpus:
        millis = t.nano_cpus / 1_000_000
        if millis != int(millis):
            out.note(doc, "resources.cpus", "approximated", "rounded to a millicore")
        limits["cpu"] = f"{max(1, round(millis))}m"
    if t.memory_bytes:
        limits["memory"] = format_size(t.memory_bytes)
    if limits:
        container["resources"] = {"limits": limits}
    for kind, probe in (
        ("readiness", t.readiness),
        ("liveness", t.liveness),
        ("startup", t.startup),
    ):
        if probe is not None:
            container[f"{kind}Probe"] = _probe(out, doc, kind, probe)

    security: dict[str, Any] = {}
    if t.user is not None:
        match = _NUMERIC_USER.fullmatch(t.user)
        if match is None:
            out.note(doc, "user", "not carried over", "Kubernetes takes a numeric user id")
        else:
            security["runAsUser"] = int(match.group(1))
            if match.group(2) is not None:
                security["runAsGroup"] = int(match.group(2))
    if t.read_only_rootfs:
        security["readOnlyRootFilesystem"] = True
    caps: dict[str, list[str]] = {}
    if t.cap_add:
        caps["add"] = list(t.cap_add)
    if t.cap_drop:
        caps["drop"] = list(t.cap_drop)
    if caps:
        security["capabilities"] = caps
    if security:
        container["securityContext"] = security
    if t.pids_limit != defaults.PIDS_LIMIT:
        out.note(doc, "pids_limit", "not carried over", "Kubernetes sets it per node")

    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for i, mount in enumerate(t.mounts):
        volume, vmount = _mount(out, doc, i, mount)
        volumes.append(volume)
        mounts.append(vmount)
    if mounts:
        container["volumeMounts"] = mounts

    if pod.restart != "always":
        out.note(
            doc,
            "restart",
            "approximated",
            f"a Deployment restarts always; podctl's is {pod.restart}",
        )
    template_meta: dict[str, Any] = {
        "labels": {**dict(t.labels), podctl_labels.POD: pod.name},
    }
    if pod.depends_on:
        template_meta["annotations"] = {ANNOTATION_DEPENDS_ON: ",".join(pod.depends_on)}
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "terminationGracePeriodSeconds": _seconds(out, doc, "stop_grace", t.stop_grace_s, 0),
    }
    if volumes:
        pod_spec["volumes"] = volumes
    rollout = pod.rollout
    strategy: dict[str, Any] = (
        {"type": "Recreate"}
        if rollout.strategy == "recreate"
        else {
            "type": "RollingUpdate",
            "rollingUpdate": {
                "maxSurge": rollout.max_surge,
                "maxUnavailable": rollout.max_unavailable,
            },
        }
    )
    if rollout.auto_rollback:
        out.note(
            doc,
            "rollout.auto_rollback",
            "approximated",
            "Kubernetes marks a rollout past its progress deadline failed and does not "
            "roll back by itself",
        )
    spec: dict[str, Any] = {
        "replicas": pod.replicas,
        "selector": {"matchLabels": {podctl_labels.POD: pod.name}},
        "strategy": strategy,
        "revisionHistoryLimit": out.stack.history,
        "progressDeadlineSeconds": _seconds(
            out, doc, "rollout.progress_deadline", rollout.progress_deadline_s, 1
        ),
    }
    if rollout.min_ready_s:
        spec["minReadySeconds"] = _seconds(out, doc, "rollout.min_ready", rollout.min_ready_s, 0)
    spec["template"] = {"metadata": template_meta, "spec": pod_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": pod.name, "namespace": out.stack.name},
        "spec": spec,
    }


def _mount(
    out: KubeExport, doc: str, index: int, mount: MountSpec
) -> tuple[dict[str, Any], dict[str, Any]]:
    name = f"{mount.kind}-{index}"
    vmount: dict[str, Any] = {"name": name, "mountPath": mount.target}
    volume: dict[str, Any] = {"name": name}
    if mount.kind in ("config", "secret"):
        key = k8s_name(mount.source)  # the map is named after the config: one key of that name
        items = [{"key": key, "path": key}]
        if mount.kind == "config":
            volume["configMap"] = {"name": key, "items": items, "defaultMode": mount.mode}
        else:
            volume["secret"] = {"secretName": key, "items": items, "defaultMode": mount.mode}
            if mount.uid is not None or mount.gid is not None:
                out.note(
                    doc,
                    f"mounts[{index}]",
                    "not carried over",
                    "a secret file's owner (use fsGroup)",
                )
        vmount["subPath"] = key
        vmount["readOnly"] = True
    elif mount.kind == "volume":
        volume["persistentVolumeClaim"] = {"claimName": mount.source}
        if mount.read_only:
            vmount["readOnly"] = True
    elif mount.kind == "bind":
        volume["hostPath"] = {"path": mount.source}
        out.note(
            doc,
            f"mounts[{index}]",
            "approximated",
            f"a hostPath: {mount.source} must exist on every node",
        )
        if mount.read_only:
            vmount["readOnly"] = True
    else:  # tmpfs
        volume["emptyDir"] = {"medium": "Memory"}
    return volume, vmount


def secret_values(stack: DesiredStack, environ: Mapping[str, str]) -> dict[str, bytes]:
    """Every secret's value, read from its env var or file (for --include-secret-values)."""
    values: dict[str, bytes] = {}
    for secret in stack.secrets:
        if secret.env is not None and secret.env in environ:
            values[secret.name] = environ[secret.env].encode()
        elif secret.file is not None and os.path.isfile(secret.file):
            with open(secret.file, "rb") as f:
                values[secret.name] = f.read()
    return values


__all__ = ["KubeExport", "export_kubernetes", "secret_values"]
