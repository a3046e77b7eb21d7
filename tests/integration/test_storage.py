"""Issue: Storage. Volumes, configs and secrets as a user sees them, on the real engine."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from podctl.storage.paths import is_tmpfs
from tests.integration.harness import Podctl, docker, stack_containers, wait_for, write_stack

pytestmark = pytest.mark.docker

CANARY = "canary-5ecret-value-93f1c2"


@pytest.fixture
def volumes_cleanup(pc: Podctl, stack_name: str) -> Iterator[None]:
    """Volumes outlive `podctl run` by design: these tests remove theirs as a user
    would, with `podctl down --volumes` once podctl has stopped."""
    yield
    if pc.proc is not None and pc.proc.poll() is None:
        pc.stop()
    pc.cli("down", stack_name, "--volumes", check=True)


def write(path: Path, text: str) -> Path:
    return write_stack(path.parent, text, path.name)


def storage_stack(tmp_path: Path, stack: str) -> Path:
    write(tmp_path / "site" / "index.html", "<h1>version one</h1>\n")
    write(tmp_path / "secrets" / "tls.key", f"{CANARY}\n")
    return write(
        tmp_path / "stack.yaml",
        f"""
        name: {stack}
        pods:
          store:
            image: busybox:1.36
            command: ["sh", "-c", "exec sleep 3600"]
            mounts:
              - {{volume: data, path: /data}}
              - {{secret: tls-key}}
            stop_grace: 1s
          site:
            image: busybox:1.36
            command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
            mounts:
              - {{config: page, path: /www/index.html}}
            stop_grace: 1s
        configs:
          page: {{file: ./site/index.html}}
        secrets:
          tls-key: {{file: ./secrets/tls.key}}
        volumes:
          data: {{}}
        """,
    )


def test_volume_data_survives_replacement_and_podctl_restart(
    pc: Podctl, tmp_path: Path, stack_name: str, volumes_cleanup: None
) -> None:
    stack = storage_stack(tmp_path, stack_name)
    pc.start(stack)
    pc.wait_ready(stack_name, 2)
    pc.cli("exec", f"{stack_name}/store-0", "--", "sh", "-c", "echo kept > /data/file", check=True)
    (store,) = [p for p in pc.pods(stack_name) if p["pod"] == "store"]
    docker("kill", store["container_id"])
    wait_for(
        "store back after kill",
        lambda: any(
            p["pod"] == "store" and p["ready"] and p["restarts"] == 1 for p in pc.pods(stack_name)
        ),
        10,
    )
    assert (
        pc.cli("exec", f"{stack_name}/store-0", "--", "cat", "/data/file", check=True).stdout
        == "kept\n"
    )
    pc.stop()  # containers removed, volume kept
    assert stack_containers(stack_name) == []
    assert docker("volume", "ls", "-q", "--filter", f"label=io.podctl.stack={stack_name}")
    pc.start(stack)
    pc.wait_ready(stack_name, 2)
    assert (
        pc.cli("exec", f"{stack_name}/store-0", "--", "cat", "/data/file", check=True).stdout
        == "kept\n"
    )


def test_secret_file_mode_tmpfs_and_never_in_env(
    pc: Podctl, tmp_path: Path, stack_name: str, volumes_cleanup: None
) -> None:
    pc.start(storage_stack(tmp_path, stack_name))
    pc.wait_ready(stack_name, 2)
    out = pc.cli(
        "exec",
        f"{stack_name}/store-0",
        "--",
        "stat",
        "-c",
        "%a",
        "/run/secrets/tls-key",
        check=True,
    )
    assert out.stdout.strip() == "400"
    content = pc.cli(
        "exec", f"{stack_name}/store-0", "--", "cat", "/run/secrets/tls-key", check=True
    ).stdout
    assert content == f"{CANARY}\n"
    (store,) = [p for p in pc.pods(stack_name) if p["pod"] == "store"]
    inspect = json.loads(docker("inspect", store["container_id"]))[0]
    assert CANARY not in json.dumps(inspect["Config"]["Env"])
    source = next(
        m["Source"] for m in inspect["Mounts"] if m["Destination"] == "/run/secrets/tls-key"
    )
    assert is_tmpfs(Path(source)) is True, source
    assert (
        next(m for m in inspect["Mounts"] if m["Destination"] == "/run/secrets/tls-key")["RW"]
        is False
    )
    # Least privilege by default.
    assert "no-new-privileges" in (inspect["HostConfig"]["SecurityOpt"] or [])
    assert inspect["HostConfig"]["Privileged"] is False
    assert inspect["HostConfig"]["PidsLimit"] and inspect["HostConfig"]["PidsLimit"] > 0


def test_canary_secret_is_found_nowhere(
    pc: Podctl, tmp_path: Path, stack_name: str, volumes_cleanup: None
) -> None:
    pc.start(storage_stack(tmp_path, stack_name))
    pods = pc.wait_ready(stack_name, 2)
    texts = [
        pc.cli("get", "pods", "-o", "json", check=True).stdout,
        pc.cli("get", "pods", "-o", "yaml", check=True).stdout,
        pc.cli("get", "stacks", "-o", "json", check=True).stdout,
        pc.cli("events", stack_name, check=True).stdout,
    ]
    for p in pods:
        texts.append(pc.cli("describe", "pod", p["name"], "-o", "json", check=True).stdout)
        texts.append(docker("inspect", p["container_id"]))
    pc.stop()
    texts.append(pc.output())
    state = Path(pc.env["PODCTL_STATE_DIR"])
    for f in state.rglob("*"):
        if f.is_file():
            texts.append(f.read_text(errors="replace"))
            assert f.stat().st_mode & 0o077 == 0, f"{f} is readable by others"
    assert state.stat().st_mode & 0o077 == 0
    assert sum(t.count(CANARY) for t in texts) == 0


def test_env_delivery_only_when_asked(pc: Podctl, tmp_path: Path, stack_name: str) -> None:
    stack = write(
        tmp_path / "stack.yaml",
        f"""
        name: {stack_name}
        pods:
          app:
            image: busybox:1.36
            command: ["sleep", "3600"]
            env: {{API_KEY: {{secret: api-key}}, MODE: prod}}
            stop_grace: 1s
        secrets:
          api-key: {{env: PODCTL_TEST_API_KEY}}
        """,
    )
    pc.env["PODCTL_TEST_API_KEY"] = CANARY
    pc.start(stack)
    (p,) = pc.wait_ready(stack_name, 1)
    env = pc.cli("exec", p["name"], "--", "env", check=True).stdout
    assert f"API_KEY={CANARY}" in env and "MODE=prod" in env
    # Asked for env delivery, so it is in the container's env; still never in podctl's output.
    assert CANARY not in pc.cli("describe", "pod", p["name"], check=True).stdout
    pc.stop()
    assert CANARY not in pc.output()


def test_config_edit_rolls_only_pods_that_mount_it(
    pc: Podctl, tmp_path: Path, stack_name: str, volumes_cleanup: None
) -> None:
    stack = storage_stack(tmp_path, stack_name)
    pc.start(stack, extra=())  # hot reload on
    pods = {p["pod"]: p for p in pc.wait_ready(stack_name, 2)}
    page = pc.cli("exec", f"{stack_name}/site-0", "--", "cat", "/www/index.html", check=True).stdout
    assert page == "<h1>version one</h1>\n"
    (tmp_path / "site" / "index.html").write_text("<h1>version two</h1>\n")

    def rolled() -> dict[str, dict[str, object]] | None:
        now = {p["pod"]: p for p in pc.pods(stack_name) if p["ready"]}
        site = now.get("site")
        if site and site["revision"] != pods["site"]["revision"] and len(now) == 2:
            return now
        return None

    now = wait_for("site to roll to the new config", rolled, 30)
    assert now["store"]["container_id"] == pods["store"]["container_id"]
    page = pc.cli("exec", f"{stack_name}/site-0", "--", "cat", "/www/index.html", check=True).stdout
    assert page == "<h1>version two</h1>\n"


def test_down_keeps_volumes_unless_asked(
    pc: Podctl, tmp_path: Path, stack_name: str, volumes_cleanup: None
) -> None:
    pc.start(storage_stack(tmp_path, stack_name), extra=("--no-watch", "--keep"))
    pc.wait_ready(stack_name, 2)
    pc.stop()
    vol_filter = ("volume", "ls", "-q", "--filter", f"label=io.podctl.stack={stack_name}")
    pc.cli("down", stack_name, check=True)
    assert stack_containers(stack_name) == []
    assert docker(*vol_filter) == f"{stack_name}_data"
    pc.cli("down", stack_name, "--volumes", check=True)
    assert docker(*vol_filter) == ""


def test_missing_secret_source_starts_nothing(pc: Podctl, tmp_path: Path, stack_name: str) -> None:
    stack = storage_stack(tmp_path, stack_name)
    (tmp_path / "secrets" / "tls.key").unlink()
    proc = subprocess.run(
        [*pc.cli_prefix(), "run", str(stack), "--no-watch"],
        capture_output=True,
        text=True,
        env=pc.env,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "tls-key" in proc.stderr and "tls.key" in proc.stderr
    assert stack_containers(stack_name) == []


def test_read_only_root_with_tmp(pc: Podctl, tmp_path: Path, stack_name: str) -> None:
    stack = write(
        tmp_path / "stack.yaml",
        f"""
        name: {stack_name}
        pods:
          locked:
            image: busybox:1.36
            command: ["sleep", "3600"]
            read_only: true
            cap_drop: [ALL]
            stop_grace: 1s
        """,
    )
    pc.start(stack)
    pc.wait_ready(stack_name, 1)
    assert pc.cli("exec", f"{stack_name}/locked-0", "--", "touch", "/etc/x").returncode != 0
    assert pc.cli("exec", f"{stack_name}/locked-0", "--", "touch", "/tmp/x").returncode == 0
