"""The Docker engine's JSON, translated to and from podctl's typed values.

Pure functions (no I/O, except `tar_context`, which runs in a worker thread):
what `DockerRuntime` sends to the engine and how it reads the answers. Kept apart
so the translation can be unit-tested with literal engine answers.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import tarfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import msgspec

from podctl import labels
from podctl.runtime.errors import Conflict, EngineError, NotFound
from podctl.runtime.protocol import (
    ContainerInfo,
    ContainerSpec,
    ContainerState,
    EngineEvent,
    NetworkInfo,
    VolumeInfo,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    import aiodocker
    import aiohttp

_STATES: Final = frozenset(
    {"created", "running", "paused", "restarting", "removing", "exited", "dead"}
)
_PARENS = re.compile(r"\(([^)]*)\)")
STREAM_HEADER = struct.Struct(">BxxxL")


def stack_network_name(stack: str) -> str:
    """The Docker name of a stack's own network (where its containers get their address)."""
    return f"podctl_{stack}"


CacheKey = tuple[str, tuple[str, ...]]


def cache_key(item: Mapping[str, Any]) -> CacheKey:
    """What identifies a container's state in a list answer.

    The Status string minus its relative time: "Exited (137) 3 seconds ago" -> ("137",),
    "Up 2 minutes (Paused)" -> ("Paused",); a change of either means a new inspect.
    """
    return str(item.get("State", "")), tuple(_PARENS.findall(str(item.get("Status") or "")))


def translate_error(doing: str, e: aiodocker.DockerError) -> EngineError:
    message = str(e.message).strip()
    if e.status == 404:
        return NotFound(doing, message)
    if e.status in (403, 409):
        # 403 is how the engine refuses to remove a network that has endpoints.
        return Conflict(doing, message)
    return EngineError(doing, message)


def short_id(container_id: str) -> str:
    return container_id[:12] if len(container_id) == 64 else container_id


def container_path(container_id: str) -> str:
    return f"containers/{container_id}"


def label_filter(stack: str | None) -> str:
    value = labels.STACK if stack is None else f"{labels.STACK}={stack}"
    return json.dumps({"label": [value]})


def container_config(spec: ContainerSpec) -> dict[str, Any]:
    """The engine's create body for `spec`.

    Docker's restart policy is always "no": podctl alone decides restarts (with
    backoff), as the kubelet does for pods.
    """
    host: dict[str, Any] = {
        "RestartPolicy": {"Name": "no"},
        "NetworkMode": spec.network,
        "Init": False,
        "ReadonlyRootfs": spec.read_only_rootfs,
    }
    if spec.nano_cpus:
        host["NanoCpus"] = spec.nano_cpus
    if spec.memory_bytes:
        host["Memory"] = spec.memory_bytes
    if spec.mounts:
        mounts: list[dict[str, Any]] = []
        for m in spec.mounts:
            mount: dict[str, Any] = {"Type": m.type, "Target": m.target, "ReadOnly": m.read_only}
            if m.type != "tmpfs":
                mount["Source"] = m.source
            mounts.append(mount)
        host["Mounts"] = mounts
    if spec.tmpfs:
        host["Tmpfs"] = dict(spec.tmpfs)
    if spec.cap_add:
        host["CapAdd"] = list(spec.cap_add)
    if spec.cap_drop:
        host["CapDrop"] = list(spec.cap_drop)
    if spec.pids_limit is not None:
        host["PidsLimit"] = spec.pids_limit
    if spec.no_new_privileges:
        host["SecurityOpt"] = ["no-new-privileges"]
    if spec.extra_hosts:
        host["ExtraHosts"] = list(spec.extra_hosts)
    config: dict[str, Any] = {
        "Image": spec.image,
        "Labels": dict(spec.labels),
        "Env": list(spec.env),
        "Tty": False,
        "OpenStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "StopTimeout": max(0, math.ceil(spec.stop_grace_s)),
        "HostConfig": host,
        "NetworkingConfig": {
            "EndpointsConfig": {spec.network: {"Aliases": list(spec.network_aliases)}}
        },
    }
    if spec.command is not None:
        config["Cmd"] = list(spec.command)
    if spec.entrypoint is not None:
        config["Entrypoint"] = list(spec.entrypoint)
    if spec.user is not None:
        config["User"] = spec.user
    if spec.workdir is not None:
        config["WorkingDir"] = spec.workdir
    if spec.hostname is not None:
        config["Hostname"] = spec.hostname
    return config


def parse_time(value: str | None) -> float | None:
    """Docker's RFC 3339 time with nanoseconds to epoch seconds; its zero time to None."""
    if not value or value.startswith("0001-01-01"):
        return None
    m = re.fullmatch(
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", value.strip()
    )
    if m is None:
        return None
    base = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    zone = m.group(3)
    if zone == "Z":
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    fraction = float("0." + m.group(2)) if m.group(2) else 0.0
    return base.replace(tzinfo=tz).timestamp() + fraction


def container_ip(networks: Mapping[str, Any], preferred: list[str]) -> str | None:
    for name in preferred:
        address = (networks.get(name) or {}).get("IPAddress")
        if address:
            return str(address)
    for endpoint in networks.values():
        address = (endpoint or {}).get("IPAddress")
        if address:
            return str(address)
    return None


def container_info(data: Mapping[str, Any]) -> ContainerInfo:
    """An inspect answer as a ContainerInfo."""
    config = data.get("Config") or {}
    state = data.get("State") or {}
    host = data.get("HostConfig") or {}
    container_labels = {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
    status = str(state.get("Status") or "created")
    if status not in _STATES:
        status = "dead"
    networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
    preferred = [str(host.get("NetworkMode") or "")]
    if labels.STACK in container_labels:
        preferred.append(stack_network_name(container_labels[labels.STACK]))
    started = parse_time(state.get("StartedAt"))
    finished = parse_time(state.get("FinishedAt"))
    # An exit code means something only once the process has ended.
    ended = status in ("exited", "dead") or (status == "restarting" and finished is not None)
    return ContainerInfo(
        id=str(data["Id"]),
        name=str(data.get("Name") or "").lstrip("/"),
        labels=container_labels,
        state=cast(ContainerState, status),
        image=str(config.get("Image") or data.get("Image") or ""),
        exit_code=int(state.get("ExitCode") or 0) if ended else None,
        started_at=started,
        finished_at=finished,
        oom_killed=bool(state.get("OOMKilled")),
        error=str(state.get("Error") or ""),
        ip=container_ip(networks, preferred) if status == "running" else None,
        stop_grace_s=_stop_timeout(config.get("StopTimeout")),
    )


def _stop_timeout(value: Any) -> float | None:
    return float(value) if isinstance(value, int) and value >= 0 else None


def network_info(data: Mapping[str, Any]) -> NetworkInfo:
    configs = (data.get("IPAM") or {}).get("Config") or []
    first = configs[0] if configs else {}
    return NetworkInfo(
        id=str(data["Id"]),
        name=str(data.get("Name") or ""),
        labels={str(k): str(v) for k, v in (data.get("Labels") or {}).items()},
        gateway=first.get("Gateway") or None,
        subnet=first.get("Subnet") or None,
    )


def volume_info(data: Mapping[str, Any]) -> VolumeInfo:
    return VolumeInfo(
        name=str(data["Name"]),
        labels={str(k): str(v) for k, v in (data.get("Labels") or {}).items()},
        mountpoint=str(data.get("Mountpoint") or ""),
    )


class _RawEvent(msgspec.Struct):
    Type: str = ""
    Action: str = ""
    Actor: dict[str, Any] = {}
    time: int = 0
    timeNano: int = 0


def engine_event(line: bytes) -> EngineEvent | None:
    try:
        raw = msgspec.json.decode(line, type=_RawEvent)
    except msgspec.DecodeError:
        return None
    attributes = raw.Actor.get("Attributes") or {}
    return EngineEvent(
        kind=raw.Type,
        # "exec_start: sh -c ..." -> "exec_start"; "health_status: healthy" likewise.
        action=raw.Action.split(":", 1)[0].strip(),
        id=str(raw.Actor.get("ID") or ""),
        labels={str(k): str(v) for k, v in attributes.items()},
        time=raw.timeNano / 1e9 if raw.timeNano else float(raw.time),
    )


def stream_error(line: bytes) -> str | None:
    """The error carried by one line of a pull/build progress stream, if any."""
    line = line.strip()
    if not line:
        return None
    try:
        item = json.loads(line)
    except ValueError:
        return None
    if not isinstance(item, dict):
        return None
    if item.get("error"):
        return str(item["error"])
    detail = item.get("errorDetail")
    if isinstance(detail, dict) and detail.get("message"):
        return str(detail["message"])
    return None


def stream_text(line: bytes) -> str:
    """The output text one line of a build stream carries (`stream`), or ""."""
    try:
        item = json.loads(line)
    except ValueError:
        return ""
    if isinstance(item, dict) and isinstance(item.get("stream"), str):
        return str(item["stream"])
    return ""


def split_image_ref(ref: str) -> tuple[str, str]:
    """`name[:tag][@digest]` -> (name, tag or digest) as the pull API wants them.

    An empty tag would make the engine pull every tag, so a bare name means `latest`.
    """
    if "@" in ref:
        name, digest = ref.split("@", 1)
        return name, digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


def demultiplex(raw: bytes) -> list[bytes]:
    """Split the engine's multiplexed stdout/stderr stream into its payloads."""
    chunks: list[bytes] = []
    pos = 0
    while pos + STREAM_HEADER.size <= len(raw):
        kind, size = STREAM_HEADER.unpack_from(raw, pos)
        if kind not in (0, 1, 2):
            # Not multiplexed after all (a tty): the rest is raw output.
            chunks.append(raw[pos:])
            return chunks
        pos += STREAM_HEADER.size
        chunks.append(raw[pos : pos + size])
        pos += size
    if pos < len(raw):
        chunks.append(raw[pos:])
    return chunks


async def read_frame(content: aiohttp.StreamReader, tty: bool) -> bytes | None:
    """The next chunk of a log stream; None at its end."""
    if tty:
        data = await content.readany()
        return data or None
    try:
        header = await content.readexactly(STREAM_HEADER.size)
    except EOFError:  # asyncio.IncompleteReadError: the stream ended
        return None
    _, size = STREAM_HEADER.unpack(header)
    try:
        return await content.readexactly(size)
    except EOFError:
        return None


def tar_context(context_dir: str) -> bytes:
    """The build context as an uncompressed tar (run in a worker thread).

    `.dockerignore` lines are honoured as simple glob patterns relative to the context.
    """
    root = Path(context_dir)
    ignore = dockerignore_patterns(root)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if rel != "Dockerfile" and any(
                path.relative_to(root).match(p) or rel.startswith(p.rstrip("/") + "/")
                for p in ignore
            ):
                continue
            info = tar.gettarinfo(str(path), arcname=rel)
            # Owner and times do not belong to the image: keep the context reproducible.
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def dockerignore_patterns(root: Path) -> list[str]:
    path = root / ".dockerignore"
    if not path.is_file():
        return []
    patterns: list[str] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and not line.startswith("!"):
            patterns.append(line.lstrip("/"))
    return patterns
