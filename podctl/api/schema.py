"""What crosses the control socket and what `-o json` prints: one schema for both.

One request per connection, as a JSON line; the answer is one JSON line
(`Reply`), or for streams (`events -f`) one line per item until the client
goes away.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from podctl.reconcile.steps import ReplicaStatus, RolloutStatus


class Row(msgspec.Struct, kw_only=True):
    """Base for output rows."""


# A pod replica as `get pods` shows it: exactly what the planner concluded.
PodRow = ReplicaStatus


# A pod's rollout as `rollout status` shows it: exactly what the planner concluded.
RolloutRow = RolloutStatus

HistoryStatus = Literal["current", "complete", "failed", "rolled-back"]


class HistoryRow(Row, kw_only=True):
    """One revision of a pod, as `rollout history` shows it (digests, never values)."""

    revision: str
    created: float  # epoch seconds: when podctl first ran it (or returned to it)
    cause: str  # file change | --set | undo | rollback
    status: HistoryStatus
    image: str
    message: str = ""  # why failed, rolled back, ...


class EndpointRow(Row, kw_only=True):
    pod: str
    address: str
    ready: bool


class ServiceRow(Row, kw_only=True):
    stack: str
    name: str
    listen: str | None  # "127.0.0.1:8080", or None for an in-stack-only service
    endpoints: list[EndpointRow]
    pod: str = ""
    target: int = 0
    in_stack: str | None = None  # "<gateway>:<port>" that containers reach as `<name>:<port>`
    error: str | None = None  # e.g. the host port is taken
    active: int = 0
    total: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    backend_errors: int = 0
    rejected: int = 0  # over the connection cap (descriptors)
    peer_rejected: int = 0  # in-stack listener: a client from outside the stack's network


class StackRow(Row, kw_only=True):
    name: str
    source: str
    pods: int
    replicas: int
    ready: int
    services: int
    engine: str = "ok"


class EventRow(Row, kw_only=True):
    time: float
    stack: str
    object: str
    reason: str
    message: str


Verb = Literal[
    "ping",
    "get_pods",
    "get_services",
    "get_stacks",
    "describe_pod",
    "describe_service",
    "events",
    "scale",
    "down",
    "rollout_status",
    "rollout_history",
    "rollout_undo",
    "rollout_pause",
    "rollout_resume",
]


class Request(msgspec.Struct, kw_only=True, omit_defaults=True):
    verb: Verb
    stack: str | None = None
    name: str | None = None
    replicas: int | None = None
    follow: bool = False
    volumes: bool = False
    revision: str | None = None  # rollout undo --to-revision


class Reply(msgspec.Struct, kw_only=True, omit_defaults=True):
    ok: bool
    data: Any = None
    error: str | None = None
    engine: str = "ok"  # "ok" or "unavailable: <why>"
