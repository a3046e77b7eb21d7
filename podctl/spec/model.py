"""The normalised desired state: what podctl wants to exist, per stack.

Produced from `StackFile`s by `podctl.spec.normalise`; read by the planner.
Everything is frozen and plain data: durations are seconds, sizes bytes,
paths absolute, ports numbers. Secret *values* never live here: a secret is a
name, a source and a digest, read only when it is written to disk or env.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class Model(msgspec.Struct, frozen=True, kw_only=True):
    """Base for desired-state Structs."""


class HttpProbe(Model, tag="http", frozen=True):
    port: int
    path: str = "/"
    scheme: Literal["http", "https"] = "http"
    headers: tuple[tuple[str, str], ...] = ()


class TcpProbe(Model, tag="tcp", frozen=True):
    port: int


class ExecProbe(Model, tag="exec", frozen=True):
    command: tuple[str, ...]


ProbeCheck = HttpProbe | TcpProbe | ExecProbe
ProbeKind = Literal["startup", "liveness", "readiness"]


class ProbeSpec(Model, frozen=True):
    check: ProbeCheck
    initial_delay_s: float = 0.0
    period_s: float = 10.0
    timeout_s: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3


class BuildSpec(Model, frozen=True):
    context: str  # absolute directory holding a Dockerfile
    digest: str  # content hash of the context; the image tag carries it
    # `image:` next to `build:`: the name `podctl push` tags and pushes the build as.
    # Containers still run the content-hash tag, so it is not part of the revision.
    push: str | None = None


MountKind = Literal["volume", "bind", "config", "secret", "tmpfs"]


class MountSpec(Model, frozen=True):
    kind: MountKind
    source: str  # volume name in the stack | absolute host path | config name | secret name
    target: str  # absolute path inside the container
    read_only: bool = False
    mode: int | None = None  # configs and secrets: file mode (secrets default 0o400)
    uid: int | None = None
    gid: int | None = None


class EnvFromSpec(Model, frozen=True):
    """An env var delivered from a config or secret (opt-in)."""

    name: str
    kind: Literal["config", "secret"]
    source: str


class ContainerTemplate(Model, frozen=True):
    """What makes a container: changing any of it makes a new revision."""

    image: str
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()
    env_from: tuple[EnvFromSpec, ...] = ()
    user: str | None = None
    workdir: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    ports: tuple[tuple[str, int], ...] = ()
    nano_cpus: int = 0
    memory_bytes: int = 0
    mounts: tuple[MountSpec, ...] = ()
    read_only_rootfs: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    pids_limit: int | None = None
    stop_grace_s: float = 10.0
    startup: ProbeSpec | None = None
    liveness: ProbeSpec | None = None
    readiness: ProbeSpec | None = None


# Rollout defaults (the pod's `rollout:`), as Kubernetes' Deployment where it has one.
ROLLOUT_MIN_READY_S = 0.0
ROLLOUT_PROGRESS_DEADLINE_S = 600.0
# Revisions kept per pod (Kubernetes' revisionHistoryLimit).
HISTORY_LIMIT = 10

RolloutStrategy = Literal["rolling", "recreate"]


class RolloutSpec(Model, frozen=True):
    """How a pod moves to a new revision. Not part of the revision hash."""

    strategy: RolloutStrategy = "rolling"
    max_surge: int | str = 1  # a count or "N%"; recreate ignores both
    max_unavailable: int | str = 0
    min_ready_s: float = ROLLOUT_MIN_READY_S
    progress_deadline_s: float = ROLLOUT_PROGRESS_DEADLINE_S
    auto_rollback: bool = True


RestartPolicy = Literal["always", "on-failure", "never"]

WatchAction = Literal["sync", "rebuild", "restart", "sync+restart", "sync+exec"]
SYNC_ACTIONS: tuple[WatchAction, ...] = ("sync", "sync+restart", "sync+exec")


class WatchExecSpec(Model, frozen=True):
    command: tuple[str, ...]
    user: str | None = None
    workdir: str | None = None


class WatchRuleSpec(Model, frozen=True):
    """One `develop.watch` rule: host `path` (absolute, inside the stack directory)."""

    path: str
    action: WatchAction
    target: str | None = None  # absolute container path; the sync actions only
    ignore: tuple[str, ...] = ()  # .dockerignore patterns, relative to `path`
    include: tuple[str, ...] = ()  # when given, only files matching one of these
    initial_sync: bool = False
    exec: WatchExecSpec | None = None

    @property
    def syncs(self) -> bool:
        return self.action in SYNC_ACTIONS


class DevelopSpec(Model, frozen=True):
    """What `podctl dev` watches for a pod. Not part of the revision: `podctl run`
    ignores it, and editing it never recreates a container."""

    watch: tuple[WatchRuleSpec, ...] = ()


class DesiredPod(Model, frozen=True):
    stack: str
    name: str
    replicas: int
    template: ContainerTemplate
    revision: str  # hash of the template + digests of the configs/secrets it uses
    build: BuildSpec | None = None
    restart: RestartPolicy = "always"
    depends_on: tuple[str, ...] = ()
    rollout: RolloutSpec = RolloutSpec()
    develop: DevelopSpec | None = None


class DesiredService(Model, frozen=True):
    stack: str
    name: str
    pod: str
    target_port: int
    port: int | None = None  # host port; None: in-stack only
    bind: str = "127.0.0.1"


class DesiredConfig(Model, frozen=True):
    name: str
    digest: str
    data: bytes | None = None  # inline `data:`
    file: str | None = None  # absolute path of `file:`


class DesiredSecret(Model, frozen=True):
    """A secret by reference. The value is read only when delivered."""

    name: str
    digest: str
    file: str | None = None
    env: str | None = None


class DesiredVolume(Model, frozen=True):
    name: str  # name inside the stack
    docker_name: str  # `<stack>_<name>`
    driver: str | None = None
    options: tuple[tuple[str, str], ...] = ()


class DesiredStack(Model, frozen=True):
    name: str
    source: str  # the stack file's absolute path
    network: str  # Docker network name
    pods: tuple[DesiredPod, ...] = ()
    services: tuple[DesiredService, ...] = ()
    configs: tuple[DesiredConfig, ...] = ()
    secrets: tuple[DesiredSecret, ...] = ()
    volumes: tuple[DesiredVolume, ...] = ()
    history: int = HISTORY_LIMIT  # revisions kept per pod

    def pod(self, name: str) -> DesiredPod | None:
        for p in self.pods:
            if p.name == name:
                return p
        return None


def network_name(stack: str) -> str:
    return f"podctl_{stack}"


def volume_docker_name(stack: str, volume: str) -> str:
    return f"{stack}_{volume}"


def build_tag(stack: str, pod: str, digest: str) -> str:
    return f"podctl-build/{stack}-{pod}:{digest[:12]}"


def image_ref(pod: DesiredPod) -> str:
    """The image a pod's containers run: its `image`, or the tag of its build."""
    if pod.build is not None:
        return build_tag(pod.stack, pod.name, pod.build.digest)
    return pod.template.image
