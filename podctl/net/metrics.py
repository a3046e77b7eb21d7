"""Prometheus text exposition of the proxy counters, and a tiny /metrics server.

The format is Prometheus' text format 0.0.4: `# HELP`/`# TYPE` lines, then one
sample per line with escaped label values. The server is deliberately minimal
(HTTP/1.0 semantics: one request per connection, then close); it serves only
GET /metrics and is meant for 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from podctl.net.proxy import bound_address

log = logging.getLogger("podctl.metrics")

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from podctl.net.proxy import ProxyStats

_SERVICE_METRICS: tuple[tuple[str, str, str, str], ...] = (
    # (name, type, ProxyStats field, help)
    ("podctl_service_connections_active", "gauge", "active", "Open client connections."),
    ("podctl_service_connections_total", "counter", "total", "Client connections accepted."),
    (
        "podctl_service_received_bytes_total",
        "counter",
        "bytes_in",
        "Bytes from clients to backends.",
    ),
    ("podctl_service_sent_bytes_total", "counter", "bytes_out", "Bytes sent to clients."),
    (
        "podctl_service_backend_errors_total",
        "counter",
        "backend_errors",
        "Failed backend connects, and connections refused for want of a ready endpoint.",
    ),
    (
        "podctl_service_rejected_connections_total",
        "counter",
        "rejected",
        "Connections closed at once because the listener was at its connection cap.",
    ),
    (
        "podctl_service_peer_rejected_connections_total",
        "counter",
        "peer_rejected",
        "Connections closed at once because the client was outside the listener's network"
        " (e.g. a container on another Docker network reaching the in-stack address).",
    ),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(stats: Mapping[str, ProxyStats]) -> str:
    """The Prometheus text for per-service counters (`ProxySet.stats()`)."""
    lines: list[str] = []
    names = sorted(stats)
    for metric, kind, attr, help_text in _SERVICE_METRICS:
        lines.append(f"# HELP {metric} {help_text}")
        lines.append(f"# TYPE {metric} {kind}")
        for name in names:
            value = getattr(stats[name], attr)
            lines.append(f'{metric}{{service="{_label(name)}"}} {value}')
    metric = "podctl_endpoint_connections_active"
    lines.append(f"# HELP {metric} Open connections per backend endpoint.")
    lines.append(f"# TYPE {metric} gauge")
    for name in names:
        for key, n in stats[name].endpoint_active:
            lines.append(f'{metric}{{service="{_label(name)}",endpoint="{_label(key)}"}} {n}')
    return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves `GET /metrics` with whatever `source()` returns at request time."""

    def __init__(self, host: str, port: int, source: Callable[[], str]) -> None:
        self.host = host
        self.port = port
        self._source = source
        self._server: asyncio.AbstractServer | None = None

    @property
    def address(self) -> tuple[str, int]:
        return bound_address(self._server, (self.host, self.port))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5.0):
                head = await reader.readuntil(b"\r\n\r\n")
                parts = head.split(b"\r\n", 1)[0].split()
                if len(parts) < 2 or parts[0] not in (b"GET", b"HEAD"):
                    status, body = "405 Method Not Allowed", b"method not allowed\n"
                elif parts[1].split(b"?", 1)[0] != b"/metrics":
                    status, body = "404 Not Found", b"not found; try /metrics\n"
                else:
                    status, body = "200 OK", self._source().encode()
                ctype = "text/plain; version=0.0.4; charset=utf-8"
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                )
                if parts and parts[0] != b"HEAD":
                    writer.write(body)
                await writer.drain()
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def serve_metrics(
    host: str,
    port: int,
    source: Callable[[], str],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve /metrics until cancelled (a task for the run's task group)."""
    server = MetricsServer(host, port, source)
    await server.start()
    log.info("metrics on http://%s:%d/metrics", *server.address)
    try:
        task_status.started()
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await server.close()
