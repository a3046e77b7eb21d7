"""The stack file schema, exactly as a user writes it (YAML or TOML).

These Structs mirror the file; they keep durations and sizes as written
(`"2s"`, `"64Mi"`). `podctl.spec.desired` turns them into the normalised,
hashable `DesiredState` that the planner reads. Unknown fields are errors.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class FileStruct(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Base for every stack-file Struct: unknown fields rejected, immutable."""


Scalar = str | int | float | bool
Duration = str | int | float  # "500ms", "2s", "1m"; a bare number means seconds
Size = str | int  # "64Mi", "1Gi", "100M"; a bare number means bytes
PortRef = int | str  # a number, or the name of one of the pod's `ports`


class Resources(FileStruct, frozen=True):
    cpus: float | None = None
    memory: Size | None = None


class HttpCheck(FileStruct, frozen=True):
    port: PortRef
    path: str = "/"
    scheme: Literal["http", "https"] = "http"
    headers: dict[str, str] = {}


class TcpCheck(FileStruct, frozen=True):
    port: PortRef


class Probe(FileStruct, frozen=True):
    """Exactly one of http, tcp, exec; thresholds default as in Kubernetes."""

    http: HttpCheck | None = None
    tcp: TcpCheck | None = None
    exec: list[str] | None = None
    initial_delay: Duration | None = None
    period: Duration | None = None
    timeout: Duration | None = None
    success_threshold: int | None = None
    failure_threshold: int | None = None


class Rollout(FileStruct, frozen=True):
    strategy: Literal["rolling", "recreate"] = "rolling"
    max_surge: int | str = 1  # a count or a percentage ("25%"); ignored by recreate
    max_unavailable: int | str = 0
    min_ready: Duration | None = None  # ready this long, unbroken, before it counts as available
    progress_deadline: Duration | None = None  # a rollout not finished by then has failed
    auto_rollback: bool = True  # return to the last fully available revision on failure


class Mount(FileStruct, frozen=True):
    """One of volume, bind, config, secret; `path` is where it appears in the container."""

    volume: str | None = None
    bind: str | None = None
    config: str | None = None
    secret: str | None = None
    path: str | None = None
    read_only: bool | None = None
    mode: int | str | None = None
    uid: int | None = None
    gid: int | None = None


class EnvFrom(FileStruct, frozen=True):
    """An env value taken from a config or a secret (explicit opt-in to env delivery)."""

    config: str | None = None
    secret: str | None = None


EnvValue = Scalar | EnvFrom

WatchAction = Literal["sync", "rebuild", "restart", "sync+restart", "sync+exec"]


class WatchExec(FileStruct, frozen=True):
    """`sync+exec`: the command run in each replica after a batch is synced."""

    command: list[str] | str
    user: str | None = None
    workdir: str | None = None


class WatchRule(FileStruct, frozen=True):
    """One `develop.watch` rule (Compose's `develop.watch`), used by `podctl dev` only."""

    path: str
    action: WatchAction
    target: str | None = None
    ignore: list[str] = []
    include: list[str] = []
    initial_sync: bool = False
    exec: WatchExec | None = None


class Develop(FileStruct, frozen=True):
    watch: list[WatchRule] = []


class Pod(FileStruct, frozen=True):
    image: str | None = None
    build: str | None = None
    command: list[str] | str | None = None
    entrypoint: list[str] | str | None = None
    env: dict[str, EnvValue] = {}
    replicas: int = 1
    ports: dict[str, int] = {}
    resources: Resources | None = None
    restart: Literal["always", "on-failure", "never"] = "always"
    labels: dict[str, str] = {}
    stop_grace: Duration | None = None
    user: str | None = None
    workdir: str | None = None
    readiness: Probe | None = None
    liveness: Probe | None = None
    startup: Probe | None = None
    mounts: list[Mount] = []
    rollout: Rollout | None = None
    depends_on: list[str] = []
    read_only: bool = False
    cap_add: list[str] = []
    cap_drop: list[str] = []
    pids_limit: int | None = None
    develop: Develop | None = None


class Service(FileStruct, frozen=True):
    pod: str
    target: PortRef
    port: int | None = None
    bind: str | None = None


class Config(FileStruct, frozen=True):
    file: str | None = None
    data: str | None = None


class Secret(FileStruct, frozen=True):
    file: str | None = None
    env: str | None = None


class Volume(FileStruct, frozen=True):
    driver: str | None = None
    options: dict[str, str] = {}


class StackFile(FileStruct, frozen=True):
    name: str
    variables: dict[str, Scalar] = {}
    pods: dict[str, Pod] = {}
    services: dict[str, Service] = {}
    configs: dict[str, Config] = {}
    secrets: dict[str, Secret] = {}
    volumes: dict[str, Volume] = {}
    allow_host_paths: bool = False
    history: int | None = None  # revisions kept per pod (rollout history, undo)
