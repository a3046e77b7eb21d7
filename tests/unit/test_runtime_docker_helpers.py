"""The pure translation helpers of DockerRuntime: engine JSON in, typed values out."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from podctl import labels
from podctl.runtime import ContainerSpec, EngineUnavailable, MountBinding
from podctl.runtime.docker import socket_path_from_env
from podctl.runtime.engine_json import (
    cache_key,
    container_config,
    container_info,
    demultiplex,
    engine_event,
    parse_time,
    split_image_ref,
    tar_context,
)


def test_parse_time_handles_nanoseconds_offsets_and_the_zero_time() -> None:
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time("") is None
    assert parse_time("1970-01-01T00:00:10.500000000Z") == pytest.approx(10.5)
    assert parse_time("2024-05-01T12:00:00.123456789Z") == pytest.approx(1714564800.123456789)
    assert parse_time("1970-01-01T01:00:00+01:00") == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("busybox:1.36", ("busybox", "1.36")),
        ("busybox", ("busybox", "latest")),
        ("registry:5000/team/app", ("registry:5000/team/app", "latest")),
        ("registry:5000/team/app:2", ("registry:5000/team/app", "2")),
        ("app@sha256:abc", ("app", "sha256:abc")),
    ],
)
def test_split_image_ref(ref: str, expected: tuple[str, str]) -> None:
    assert split_image_ref(ref) == expected


def test_demultiplex_splits_stdout_and_stderr_frames() -> None:
    raw = b"\x01\x00\x00\x00\x00\x00\x00\x04out\n" + b"\x02\x00\x00\x00\x00\x00\x00\x04err\n"
    assert demultiplex(raw) == [b"out\n", b"err\n"]
    assert demultiplex(b"plain tty output") == [b"plain tty output"]


def test_socket_path_from_env() -> None:
    assert socket_path_from_env({}) == "/var/run/docker.sock"
    assert socket_path_from_env({"DOCKER_HOST": "unix:///tmp/d.sock"}) == "/tmp/d.sock"
    with pytest.raises(EngineUnavailable, match="not a unix"):
        socket_path_from_env({"DOCKER_HOST": "tcp://10.0.0.1:2375"})


def test_container_config_never_lets_docker_restart_and_applies_limits() -> None:
    spec = ContainerSpec(
        name="shop-web-0-ab12cd",
        image="busybox:1.36",
        labels={labels.STACK: "shop"},
        network="podctl_shop",
        command=["httpd", "-f"],
        network_aliases=["web"],
        nano_cpus=250_000_000,
        memory_bytes=64 * 2**20,
        mounts=[
            MountBinding(type="volume", source="shop_data", target="/data"),
            MountBinding(type="tmpfs", target="/run/secrets", read_only=True),
        ],
        cap_drop=["ALL"],
        pids_limit=1024,
        stop_grace_s=2.5,
    )
    body = container_config(spec)
    host = body["HostConfig"]
    assert host["RestartPolicy"] == {"Name": "no"}
    assert host["NanoCpus"] == 250_000_000 and host["Memory"] == 64 * 2**20
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Init"] is False
    assert host["Mounts"] == [
        {"Type": "volume", "Source": "shop_data", "Target": "/data", "ReadOnly": False},
        {"Type": "tmpfs", "Target": "/run/secrets", "ReadOnly": True},
    ]
    assert body["StopTimeout"] == 3
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"podctl_shop": {"Aliases": ["web"]}}}
    assert "Entrypoint" not in body  # the image's own


def test_container_info_from_inspect_prefers_the_stack_network() -> None:
    data = {
        "Id": "c" * 64,
        "Name": "/shop-web-0",
        "Config": {"Labels": {labels.STACK: "shop"}, "Image": "busybox:1.36"},
        "HostConfig": {"NetworkMode": "podctl_shop"},
        "State": {
            "Status": "running",
            "ExitCode": 0,
            "StartedAt": "1970-01-01T00:00:05Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
        },
        "NetworkSettings": {
            "Networks": {
                "other": {"IPAddress": "10.0.0.2"},
                "podctl_shop": {"IPAddress": "10.1.0.3"},
            }
        },
    }
    info = container_info(data)
    assert (info.name, info.state, info.ip, info.exit_code) == (
        "shop-web-0",
        "running",
        "10.1.0.3",
        None,
    )
    assert info.started_at == 5.0 and info.finished_at is None


def test_cache_key_ignores_relative_times() -> None:
    a = {"State": "exited", "Status": "Exited (137) 3 seconds ago"}
    b = {"State": "exited", "Status": "Exited (137) 2 minutes ago"}
    c = {"State": "exited", "Status": "Exited (1) 2 minutes ago"}
    assert cache_key(a) == cache_key(b) != cache_key(c)


def test_engine_event_conversion() -> None:
    line = (
        b'{"Type":"container","Action":"exec_start: sh -c true","Actor":{"ID":"abc",'
        b'"Attributes":{"io.podctl.stack":"shop","name":"x"}},"time":1,"timeNano":1500000000}'
    )
    event = engine_event(line)
    assert event is not None
    assert (event.kind, event.action, event.id, event.time) == (
        "container",
        "exec_start",
        "abc",
        1.5,
    )
    assert event.labels[labels.STACK] == "shop"
    assert engine_event(b"not json") is None


def test_tar_context_honours_dockerignore(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox:1.36\n")
    (tmp_path / "app.txt").write_text("x")
    (tmp_path / "secret.key").write_text("s")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "big").write_text("b")
    (tmp_path / ".dockerignore").write_text("# comment\n*.key\ncache\n")
    with tarfile.open(fileobj=io.BytesIO(tar_context(str(tmp_path)))) as tar:
        names = tar.getnames()
    assert sorted(names) == [".dockerignore", "Dockerfile", "app.txt"]
