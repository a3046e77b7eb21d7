"""One probe attempt: http, tcp or exec -> `ProbeResult`.

HTTP and TCP probes dial the container's address on its stack network from the
host, as the kubelet dials the pod IP; only exec probes go through the engine.
Every attempt is bounded by the probe's `timeout`, and a timeout is a failure
(the kubelet's rule since 1.20, also for exec probes). Nothing here raises for
a failing container: every outcome is a `ProbeResult` with a short message.
"""

from __future__ import annotations

import errno
import math
import ssl
import time
from typing import TYPE_CHECKING, Protocol

import anyio

from podctl.health.model import ProbeResult
from podctl.runtime.errors import EngineError, NotFound
from podctl.spec.model import ExecProbe, HttpProbe, ProbeKind, ProbeSpec, TcpProbe

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import ByteStream

    from podctl.runtime.protocol import ExecResult

USER_AGENT = "podctl-probe/1.0"
# The status line is all we read; a server sending more than this before its
# first CRLF is not speaking HTTP.
_MAX_STATUS_LINE = 4096
# Exec output shown in a failure message (the kubelet keeps 10 KiB; a message
# for `describe` needs far less).
EXEC_OUTPUT_LIMIT = 200


class ExecRuntime(Protocol):
    """The one engine call probes need; any `Runtime` satisfies it."""

    async def exec(self, container_id: str, command: list[str], timeout_s: float) -> ExecResult: ...


class _Outcome(Exception):
    """Internal: a probe finished with a verdict before reaching its end."""

    def __init__(self, ok: bool, message: str) -> None:
        super().__init__(message)
        self.ok = ok
        self.message = message


def format_duration(seconds: float) -> str:
    """`1.0` -> "1s", `0.25` -> "250ms", `1.5` -> "1.5s" (the stack file's own notation)."""
    if seconds < 1 and seconds > 0:
        return f"{round(seconds * 1000)}ms"
    if math.isclose(seconds, round(seconds)):
        return f"{round(seconds)}s"
    return f"{seconds:g}s"


_insecure_context: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    # Like the kubelet, https probes do not verify the certificate: a probe asks
    # "does it answer", not "is it who it claims". Built once, without loading CA
    # files, so a probe every second costs no disk reads.
    global _insecure_context
    if _insecure_context is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        _insecure_context = ctx
    return _insecure_context


def _describe_oserror(exc: BaseException) -> str:
    """A short message for a failed dial: "connection refused", "no route to host", ..."""
    # anyio's connect_tcp raises a generic OSError whose cause holds the real one.
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        if isinstance(cur, BaseExceptionGroup):
            seen.extend(cur.exceptions)
        cur = cur.__cause__
    for e in seen:
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, ConnectionResetError):
            return "connection reset"
        if isinstance(e, OSError) and e.errno is not None:
            return (e.strerror or errno.errorcode.get(e.errno, str(e.errno))).lower()
    return str(exc) or type(exc).__name__


def _header_value(value: str) -> str:
    # A CR or LF in a header would let a stack file smuggle a second request line.
    return value.replace("\r", " ").replace("\n", " ")


def build_request(host: str, port: int, probe: HttpProbe) -> bytes:
    """The GET request an http probe sends (HTTP/1.1, `Connection: close`)."""
    path = probe.path if probe.path.startswith("/") else "/" + probe.path
    headers: dict[str, tuple[str, str]] = {
        "host": ("Host", f"{host}:{port}"),
        "user-agent": ("User-Agent", USER_AGENT),
        "accept": ("Accept", "*/*"),
    }
    # Custom headers replace defaults of the same name (a `Host` header is how a
    # virtual-hosted server is probed, as in Kubernetes' httpHeaders).
    for name, value in probe.headers:
        headers[name.lower()] = (_header_value(name), _header_value(value))
    headers["connection"] = ("Connection", "close")
    lines = [f"GET {_header_value(path)} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers.values()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")


async def _read_status_line(stream: ByteStream) -> bytes:
    buf = b""
    while b"\r\n" not in buf and b"\n" not in buf:
        if len(buf) > _MAX_STATUS_LINE:
            raise _Outcome(False, "malformed HTTP response")
        try:
            buf += await stream.receive()
        except anyio.EndOfStream:
            if buf:
                break
            raise _Outcome(False, "connection closed without a response") from None
    return buf.split(b"\n", 1)[0].rstrip(b"\r")


def parse_status(line: bytes) -> int | None:
    """The status code of an HTTP status line, or None when it is not one."""
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        return None
    code = parts[1]
    if len(code) != 3 or not code.isdigit():
        return None
    return int(code)


async def check_http(ip: str, probe: HttpProbe) -> tuple[bool, str]:
    """GET the probe's path; 200-399 is success (redirects are not followed)."""
    stream: ByteStream
    try:
        if probe.scheme == "https":
            stream = await anyio.connect_tcp(
                ip,
                probe.port,
                ssl_context=_tls_context(),
                # We read only the status line and hang up: no close_notify needed.
                tls_standard_compatible=False,
            )
        else:
            stream = await anyio.connect_tcp(ip, probe.port)
    except ssl.SSLError as e:
        return False, f"TLS handshake failed: {e.reason or e}"
    except OSError as e:
        return False, _describe_oserror(e)
    try:
        async with stream:
            await stream.send(build_request(ip, probe.port, probe))
            line = await _read_status_line(stream)
    except _Outcome as o:
        return o.ok, o.message
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        return False, "connection reset"
    except ssl.SSLError as e:
        return False, f"TLS error: {e.reason or e}"
    except OSError as e:
        return False, _describe_oserror(e)
    status = parse_status(line)
    if status is None:
        return False, "malformed HTTP response"
    return 200 <= status < 400, f"HTTP {status}"


async def check_tcp(ip: str, probe: TcpProbe) -> tuple[bool, str]:
    """Success when a TCP connection is accepted; it is closed at once."""
    try:
        stream = await anyio.connect_tcp(ip, probe.port)
    except OSError as e:
        return False, _describe_oserror(e)
    await stream.aclose()
    return True, "connected"


def _exec_message(result: ExecResult) -> str:
    if result.exit_code == 0:
        return "exit code 0"
    out = result.output[:EXEC_OUTPUT_LIMIT].decode("utf-8", errors="replace").strip()
    return f"exit code {result.exit_code}: {out}" if out else f"exit code {result.exit_code}"


async def check_exec(
    runtime: ExecRuntime, container_id: str, probe: ExecProbe, timeout_s: float
) -> tuple[bool, str]:
    """Run the command in the container through the engine; exit 0 is success."""
    try:
        result = await runtime.exec(container_id, list(probe.command), timeout_s)
    except TimeoutError:
        return False, f"timeout after {format_duration(timeout_s)}"
    except NotFound:
        return False, "container not found"
    except EngineError as e:
        return False, f"exec failed: {e.detail}"
    return result.exit_code == 0, _exec_message(result)


async def probe_once(
    kind: ProbeKind,
    spec: ProbeSpec,
    *,
    container_id: str,
    ip: str | None,
    runtime: ExecRuntime,
    clock: Callable[[], float] = time.time,
) -> ProbeResult:
    """Run one attempt of `spec`, bounded by its timeout. Never raises for a bad container."""
    check = spec.check
    ok, message = False, f"timeout after {format_duration(spec.timeout_s)}"
    with anyio.move_on_after(spec.timeout_s):
        if isinstance(check, ExecProbe):
            ok, message = await check_exec(runtime, container_id, check, spec.timeout_s)
        elif ip is None:
            # Not attached to its network (yet): nothing to dial.
            ok, message = False, "container has no address"
        elif isinstance(check, HttpProbe):
            ok, message = await check_http(ip, check)
        else:
            ok, message = await check_tcp(ip, check)
    return ProbeResult(probe=kind, ok=ok, at=clock(), message=message)
