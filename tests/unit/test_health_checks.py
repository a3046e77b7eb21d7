"""One probe attempt against small local servers and a stub exec runtime."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSListener

from podctl.health.checks import build_request, format_duration, parse_status, probe_once
from podctl.runtime.errors import EngineError, NotFound
from podctl.runtime.protocol import ExecResult
from podctl.spec.model import ExecProbe, HttpProbe, ProbeSpec, TcpProbe

pytestmark = pytest.mark.anyio

Handler = Callable[[ByteStream, list[bytes]], Awaitable[None]]


async def read_request(stream: ByteStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    return data


def replying(raw: bytes) -> Handler:
    async def handle(stream: ByteStream, requests: list[bytes]) -> None:
        requests.append(await read_request(stream))
        await stream.send(raw)

    return handle


def status(code: int) -> Handler:
    return replying(b"HTTP/1.1 %d Whatever\r\nContent-Length: 0\r\n\r\n" % code)


async def never_answer(stream: ByteStream, requests: list[bytes]) -> None:
    await anyio.sleep_forever()


async def hang_up(stream: ByteStream, requests: list[bytes]) -> None:
    requests.append(await read_request(stream))


@asynccontextmanager
async def server(
    handler: Handler, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A TCP server on 127.0.0.1 running `handler` per connection; yields (port, requests)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    requests: list[bytes] = []

    async def handle(stream: ByteStream) -> None:
        async with stream:
            try:
                await handler(stream, requests)
            except (anyio.EndOfStream, anyio.BrokenResourceError, ssl.SSLError):
                pass  # the prober hung up first: that is its right

    serving = TLSListener(listener, tls, standard_compatible=False) if tls else listener
    async with anyio.create_task_group() as tg:
        tg.start_soon(serving.serve, handle)
        yield port, requests
        tg.cancel_scope.cancel()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def http(port: int, timeout: float = 1.0, **kw: object) -> ProbeSpec:
    return ProbeSpec(check=HttpProbe(port=port, **kw), timeout_s=timeout)  # type: ignore[arg-type]


class NoExec:
    async def exec(self, container_id: str, command: list[str], timeout_s: float) -> ExecResult:
        raise AssertionError("http/tcp probes never go through the engine")


async def attempt(spec: ProbeSpec, ip: str | None = "127.0.0.1", runtime: object = None) -> tuple:
    r = await probe_once(
        "readiness",
        spec,
        container_id="c1",
        ip=ip,
        runtime=runtime or NoExec(),  # type: ignore[arg-type]
        clock=lambda: 42.0,
    )
    assert r.probe == "readiness" and r.at == 42.0
    return r.ok, r.message


# --- http ---------------------------------------------------------------------


async def test_http_200_is_success_and_sends_host_and_custom_headers() -> None:
    async with server(status(200)) as (port, requests):
        spec = http(port, path="/healthz", headers=(("X-Probe", "yes"),))
        assert await attempt(spec) == (True, "HTTP 200")
    (req,) = requests
    lines = req.decode().split("\r\n")
    assert lines[0] == "GET /healthz HTTP/1.1"
    assert f"Host: 127.0.0.1:{port}" in lines
    assert "X-Probe: yes" in lines
    assert "Connection: close" in lines


async def test_http_3xx_is_success_4xx_and_5xx_fail() -> None:
    for code, ok in [(204, True), (302, True), (399, True), (404, False), (503, False)]:
        async with server(status(code)) as (port, _):
            assert await attempt(http(port)) == (ok, f"HTTP {code}")


async def test_http_server_that_never_answers_is_a_timeout() -> None:
    async with server(never_answer) as (port, _):
        start = anyio.current_time()
        assert await attempt(http(port, timeout=0.2)) == (False, "timeout after 200ms")
        assert anyio.current_time() - start < 0.6


async def test_http_closed_port_is_connection_refused() -> None:
    assert await attempt(http(closed_port())) == (False, "connection refused")


async def test_http_hang_up_and_garbage_fail() -> None:
    async with server(hang_up) as (port, _):
        assert await attempt(http(port)) == (False, "connection closed without a response")
    async with server(replying(b"SSH-2.0-OpenSSH_9.2\r\n")) as (port, _):
        assert await attempt(http(port)) == (False, "malformed HTTP response")


async def test_http_without_an_address_fails() -> None:
    assert await attempt(http(80), ip=None) == (False, "container has no address")


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d: Path = tmp_path_factory.mktemp("tls")
    key, cert = str(d / "k.pem"), str(d / "c.pem")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=probe.invalid", "-keyout", key, "-out", cert),
        ],
        check=True,
        capture_output=True,
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "c.pem", d / "k.pem")
    return ctx


async def test_https_does_not_verify_the_certificate(self_signed: ssl.SSLContext) -> None:
    async with server(status(200), tls=self_signed) as (port, requests):
        assert await attempt(http(port, scheme="https")) == (True, "HTTP 200")
    assert requests[0].startswith(b"GET / HTTP/1.1\r\n")


async def test_https_against_plain_http_fails() -> None:
    async with server(status(200)) as (port, _):
        ok, _message = await attempt(http(port, scheme="https", timeout=0.5))
        assert not ok


def test_request_lets_custom_headers_replace_host_and_strips_newlines() -> None:
    req = build_request(
        "10.0.0.5", 8080, HttpProbe(port=8080, path="ready", headers=(("host", "shop\r\nX: y"),))
    )
    assert req.startswith(b"GET /ready HTTP/1.1\r\n")
    assert b"host: shop  X: y\r\n" in req
    assert b"10.0.0.5" not in req
    assert req.endswith(b"\r\n\r\n")


def test_parse_status() -> None:
    assert parse_status(b"HTTP/1.1 503 Service Unavailable") == 503
    assert parse_status(b"HTTP/1.0 200") == 200
    assert parse_status(b"HTTP/1.1 2000 OK") is None
    assert parse_status(b"garbage") is None


# --- tcp ----------------------------------------------------------------------


async def test_tcp_connect_is_success_closed_port_is_refused() -> None:
    async with server(never_answer) as (port, _):
        assert await attempt(ProbeSpec(check=TcpProbe(port=port))) == (True, "connected")
    assert await attempt(ProbeSpec(check=TcpProbe(port=closed_port()))) == (
        False,
        "connection refused",
    )


# --- exec ---------------------------------------------------------------------


class StubExec:
    """Answers exec with a fixed result, an exception, or never."""

    def __init__(self, result: ExecResult | BaseException | None) -> None:
        self.result = result
        self.calls: list[tuple[str, list[str], float]] = []

    async def exec(self, container_id: str, command: list[str], timeout_s: float) -> ExecResult:
        self.calls.append((container_id, command, timeout_s))
        if self.result is None:
            await anyio.sleep_forever()
        if isinstance(self.result, BaseException):
            raise self.result
        assert isinstance(self.result, ExecResult)
        return self.result


def exec_spec(timeout: float = 1.0) -> ProbeSpec:
    return ProbeSpec(check=ExecProbe(command=("cat", "/tmp/healthy")), timeout_s=timeout)


async def test_exec_exit_zero_is_success_and_passes_command_and_timeout() -> None:
    rt = StubExec(ExecResult(exit_code=0, output=b"fine"))
    assert await attempt(exec_spec(), ip=None, runtime=rt) == (True, "exit code 0")
    assert rt.calls == [("c1", ["cat", "/tmp/healthy"], 1.0)]


async def test_exec_nonzero_shows_exit_code_and_first_200_bytes() -> None:
    out = b"cat: can't open '/tmp/healthy': No such file or directory\n" + b"x" * 300
    rt = StubExec(ExecResult(exit_code=1, output=out))
    ok, message = await attempt(exec_spec(), runtime=rt)
    assert not ok
    assert message == "exit code 1: " + out[:200].decode().strip()
    rt = StubExec(ExecResult(exit_code=137))
    assert await attempt(exec_spec(), runtime=rt) == (False, "exit code 137")


async def test_exec_that_hangs_is_a_timeout() -> None:
    rt = StubExec(None)
    assert await attempt(exec_spec(timeout=0.1), runtime=rt) == (False, "timeout after 100ms")


async def test_exec_engine_errors_are_failures() -> None:
    rt = StubExec(NotFound("exec in c1", "no such container"))
    assert await attempt(exec_spec(), runtime=rt) == (False, "container not found")
    rt = StubExec(EngineError("exec in c1", "container is not running"))
    assert await attempt(exec_spec(), runtime=rt) == (
        False,
        "exec failed: container is not running",
    )
    rt = StubExec(TimeoutError())
    assert await attempt(exec_spec(timeout=2), runtime=rt) == (False, "timeout after 2s")


def test_format_duration() -> None:
    assert [format_duration(s) for s in (1.0, 2, 0.5, 0.05, 1.5, 60.0)] == [
        "1s",
        "2s",
        "500ms",
        "50ms",
        "1.5s",
        "60s",
    ]
