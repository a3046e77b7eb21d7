"""`podctl render`: the fully resolved stacks as plain data (JSON/YAML).

Every value is what podctl will run with: durations in seconds, sizes in
bytes, named ports as numbers, paths absolute. A pod's `revision` is the
template hash in its containers' `io.podctl.revision` label. Secret values are
never read here: a secret shows its source and `value: <redacted>`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from collections.abc import Mapping

    from podctl.spec.model import DesiredConfig, DesiredPod, DesiredSecret, DesiredStack

REDACTED = "<redacted>"


def render_stack(
    stack: DesiredStack, secret_sources: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One stack as JSON-ready data: `{name, pods: [{name, replicas, revision, ...}], ...}`."""
    sources = secret_sources or {}
    data = {
        "name": stack.name,
        "source": stack.source,
        "network": stack.network,
        "pods": [_pod(p) for p in stack.pods],
        "services": [msgspec.to_builtins(s) for s in stack.services],
        "configs": [_config(c) for c in stack.configs],
        "secrets": [_secret(s, sources.get(s.name)) for s in stack.secrets],
        "volumes": [msgspec.to_builtins(v) for v in stack.volumes],
    }
    # Through JSON once: tuples become lists, so JSON and YAML output read the same.
    out: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(data))
    return out


def _pod(pod: DesiredPod) -> dict[str, Any]:
    template = msgspec.to_builtins(pod.template)
    out: dict[str, Any] = {
        "name": pod.name,
        "replicas": pod.replicas,
        "revision": pod.revision,
    }
    out.update(template)
    # Pairs read better as mappings; the order is the (sorted) order of the template.
    out["env"] = dict(pod.template.env)
    out["labels"] = dict(pod.template.labels)
    out["ports"] = dict(pod.template.ports)
    out["restart"] = pod.restart
    out["depends_on"] = list(pod.depends_on)
    out["rollout"] = msgspec.to_builtins(pod.rollout)
    out["build"] = msgspec.to_builtins(pod.build)
    return out


def _config(config: DesiredConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"name": config.name, "digest": config.digest}
    if config.file is not None:
        out["file"] = config.file
    if config.data is not None:
        try:
            out["data"] = config.data.decode("utf-8")
        except UnicodeDecodeError:
            out["data_base64"] = msgspec.json.encode(config.data).decode().strip('"')
    return out


def _secret(secret: DesiredSecret, origin: str | None) -> dict[str, Any]:
    if origin is not None:
        source = origin
    elif secret.env is not None:
        source = f"env {secret.env}"
    else:
        source = f"file {secret.file}"
    # No digest either: a short hash of a weak secret can be guessed offline.
    return {"name": secret.name, "source": source, "value": REDACTED}


__all__ = ["REDACTED", "render_stack"]
