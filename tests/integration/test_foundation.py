"""Issue: Foundation. User stories against the real engine, driven through the CLI."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from tests.integration.harness import Podctl, docker, stack_containers, wait_for, write_stack

pytestmark = pytest.mark.docker


def web_stack(tmp_path: Path, stack: str, replicas: int = 3, extra: str = "") -> Path:
    return write_stack(
        tmp_path,
        f"""
        name: {stack}
        pods:
          web:
            image: busybox:1.36
            command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
            replicas: {replicas}
            stop_grace: 1s
        {extra}
        """,
    )


def test_run_brings_labelled_replicas_and_sigterm_removes_them(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    pc.start(web_stack(tmp_path, stack_name))
    pods = pc.wait_ready(stack_name, 3)
    assert {p["phase"] for p in pods} == {"Running"}
    ids = stack_containers(stack_name)
    assert len(ids) == 3
    labels = docker("inspect", "-f", "{{json .Config.Labels}}", ids[0])
    for key in ("io.podctl.stack", "io.podctl.pod", "io.podctl.replica", "io.podctl.revision"):
        assert key in labels
    # Docker must never restart on its own: podctl alone decides.
    assert docker("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", ids[0]) == "no"
    net = docker("network", "ls", "-q", "--filter", f"label=io.podctl.stack={stack_name}")
    assert net
    assert pc.stop(signal.SIGTERM) == 0
    assert stack_containers(stack_name) == []
    assert docker("network", "ls", "-q", "--filter", f"label=io.podctl.stack={stack_name}") == ""


def test_killed_replica_is_replaced_within_5s(pc: Podctl, tmp_path: Path, stack_name: str) -> None:
    pc.start(web_stack(tmp_path, stack_name))
    pods = pc.wait_ready(stack_name, 3)
    victim = pods[0]["container_id"]
    docker("kill", victim)
    killed_at = time.monotonic()

    def back() -> bool:
        ps = pc.pods(stack_name)
        return sum(p["ready"] for p in ps) == 3 and any(p["restarts"] == 1 for p in ps)

    wait_for("the killed replica to be back", back, timeout=5.0, every=0.1)
    assert time.monotonic() - killed_at < 5.0
    assert len(stack_containers(stack_name)) == 3


def test_crash_loop_backs_off_with_growing_delays(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          crasher:
            image: busybox:1.36
            command: ["sh", "-c", "sleep 0.2; exit 3"]
        """,
    )
    pc.start(path)
    seen: list[str] = []

    def three_delays() -> bool:
        (p,) = pc.pods(stack_name)
        if p["phase"] == "CrashLoopBackOff" and p["reason"] not in seen:
            seen.append(p["reason"])
        return len(seen) >= 3

    wait_for("three back-off periods", three_delays, timeout=40.0, every=0.1)
    delays = [float(re.search(r"back-off (\d+)s", r).group(1)) for r in seen]  # type: ignore[union-attr]
    assert delays == sorted(delays) and delays[-1] > delays[0], seen
    assert all("exit code 3" in r for r in seen)
    (p,) = pc.pods(stack_name)
    assert p["restarts"] >= 2


def test_restarted_podctl_adopts_containers_without_duplicates(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    stack = web_stack(tmp_path, stack_name)
    pc.start(stack)
    pc.wait_ready(stack_name, 3)
    before = stack_containers(stack_name)
    pc.kill9()
    pc.start(stack)
    pc.wait_ready(stack_name, 3)
    time.sleep(1.0)  # give a wrong implementation time to create duplicates
    assert stack_containers(stack_name) == before
    started = docker("inspect", "-f", "{{.State.StartedAt}}", *before).split()
    pc.stop()
    assert len(set(started)) >= 1


def test_keep_leaves_containers_and_down_removes_everything(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    pc.start(web_stack(tmp_path, stack_name, replicas=2))
    pc.wait_ready(stack_name, 2)
    pc.stop()  # plain stop removes
    assert stack_containers(stack_name) == []
    pc.start(web_stack(tmp_path, stack_name, replicas=2), extra=("--no-watch", "--keep"))
    pc.wait_ready(stack_name, 2)
    assert pc.stop() == 0
    assert len(stack_containers(stack_name)) == 2
    # Without a running podctl, get and down work from labels.
    assert len(pc.pods(stack_name)) == 2
    pc.cli("down", stack_name, check=True)
    assert stack_containers(stack_name) == []
    assert docker("network", "ls", "-q", "--filter", f"label=io.podctl.stack={stack_name}") == ""


def test_unlabelled_container_survives_everything(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    bystander = docker(
        "run", "-d", "--name", f"bystander-{stack_name}", "busybox:1.36", "sleep", "300"
    )
    try:
        pc.start(web_stack(tmp_path, stack_name, replicas=1))
        pc.wait_ready(stack_name, 1)
        pc.stop()
        pc.cli("down", stack_name, check=True)
        assert docker("inspect", "-f", "{{.State.Running}}", bystander) == "true"
    finally:
        docker("rm", "-f", bystander, check=False)


def test_scale_and_template_change(pc: Podctl, tmp_path: Path, stack_name: str) -> None:
    pc.start(web_stack(tmp_path, stack_name, replicas=2))
    pc.wait_ready(stack_name, 2)
    pc.cli("scale", f"{stack_name}/web", "4", check=True)
    pc.wait_ready(stack_name, 4)
    pc.cli("scale", f"{stack_name}/web", "1", check=True)
    wait_for("scale down to 1", lambda: len(stack_containers(stack_name)) == 1, 20)


def test_image_pull_error_leaves_other_pods_running(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          good:
            image: busybox:1.36
            command: ["sleep", "300"]
            stop_grace: 1s
          bad:
            image: podctl-test/does-not-exist:0.0
        """,
    )
    pc.start(path)

    def states() -> dict[str, dict[str, object]] | None:
        by_pod = {p["pod"]: p for p in pc.pods(stack_name)}
        bad = by_pod.get("bad")
        if (
            bad
            and bad["reason"]
            and "ImagePullError" in str(bad["reason"])
            and by_pod["good"]["ready"]
        ):
            return by_pod
        return None

    by_pod = wait_for("ImagePullError on bad, good running", states, 60)
    assert by_pod["bad"]["phase"] == "Pending"
    assert "podctl-test/does-not-exist:0.0" in str(by_pod["bad"]["reason"])


def test_insufficient_cpu_stays_pending(pc: Podctl, tmp_path: Path, stack_name: str) -> None:
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          huge:
            image: busybox:1.36
            command: ["sleep", "300"]
            resources: {{cpus: 512}}
          small:
            image: busybox:1.36
            command: ["sleep", "300"]
            resources: {{cpus: 0.1, memory: 16Mi}}
            stop_grace: 1s
        """,
    )
    pc.start(path)

    def check() -> bool:
        by_pod = {p["pod"]: p for p in pc.pods(stack_name)}
        return by_pod["huge"]["reason"] == "Insufficient cpu" and by_pod["small"]["ready"]

    wait_for("huge pending, small running", check, 30)
    (small,) = [c for c in stack_containers(stack_name)]
    assert docker("inspect", "-f", "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}", small) == (
        f"100000000 {16 * 1024 * 1024}"
    )


def test_build_from_dockerfile(pc: Podctl, tmp_path: Path, stack_name: str) -> None:
    ctx = tmp_path / "app"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        'FROM busybox:1.36\nCOPY hello.txt /hello.txt\nCMD ["sleep", "300"]\n'
    )
    (ctx / "hello.txt").write_text("built by podctl\n")
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          app:
            build: ./app
            stop_grace: 1s
        """,
    )
    pc.start(path)
    (p,) = pc.wait_ready(stack_name, 1, timeout=60)
    out = pc.cli("exec", p["name"], "--", "cat", "/hello.txt", check=True).stdout
    assert out == "built by podctl\n"
    pc.stop()
    for image in docker("images", "-q", "--filter", "label=io.podctl.kind=build").split():
        docker("rmi", "-f", image, check=False)


def test_invalid_file_exits_2_with_location(pc: Podctl, tmp_path: Path) -> None:
    path = write_stack(
        tmp_path,
        """
        name: bad
        pods:
          web:
            imgae: busybox:1.36
            replicas: many
        """,
    )
    proc = pc.cli("validate", str(path))
    assert proc.returncode == 2
    assert re.search(rf"{re.escape(str(path))}:5:\d+:.*imgae.*did you mean .*image", proc.stderr), (
        proc.stderr
    )
    proc = pc.cli("run", str(path))
    assert proc.returncode == 2
    assert str(path) in proc.stderr


def test_logs_exec_and_describe(pc: Podctl, tmp_path: Path, stack_name: str) -> None:
    path = write_stack(
        tmp_path,
        f"""
        name: {stack_name}
        pods:
          talker:
            image: busybox:1.36
            command: ["sh", "-c", "echo started-$(hostname); exec sleep 300"]
            stop_grace: 1s
        """,
    )
    pc.start(path)
    pc.wait_ready(stack_name, 1)
    assert "started-talker-0" in wait_for(
        "log line",
        lambda: (
            pc.cli("logs", f"{stack_name}/talker-0").stdout
            if "started" in pc.cli("logs", f"{stack_name}/talker-0").stdout
            else None
        ),
        10,
    )
    proc = pc.cli("exec", f"{stack_name}/talker-0", "--", "sh", "-c", "exit 7")
    assert proc.returncode == 7
    desc = pc.cli("describe", "pod", f"{stack_name}/talker-0", check=True).stdout
    assert "phase: Running" in desc
    events = pc.cli("events", stack_name, check=True).stdout
    assert "Started" in events


def test_hot_reload_applies_valid_edits_and_keeps_last_good_state(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    path = web_stack(tmp_path, stack_name, replicas=2)
    pc.start(path, extra=())  # watch on
    before = {p["container_id"] for p in pc.wait_ready(stack_name, 2)}
    web_stack(tmp_path, stack_name, replicas=3)
    after = pc.wait_ready(stack_name, 3)
    assert before <= {p["container_id"] for p in after}  # scaling recreates nothing
    good = path.read_text()
    path.write_text(good.replace("image:", "imgae:"))
    wait_for("the invalid edit reported", lambda: "did you mean" in pc.output(), 10)
    assert f"{path}:" in pc.output()
    time.sleep(1.0)
    assert len([p for p in pc.pods(stack_name) if p["ready"]]) == 3
    assert (
        "Invalid" in pc.cli("events", stack_name, check=True).stdout
        or "Invalid" in pc.cli("events", check=True).stdout
    )
    path.write_text(good.replace("replicas: 3", "replicas: 1"))
    wait_for("the fixed file applied", lambda: len(stack_containers(stack_name)) == 1, 20)


@pytest.mark.parametrize("delay", [0.2, 0.8])
def test_ctrl_c_during_start_up_leaves_nothing(
    pc: Podctl, tmp_path: Path, stack_name: str, delay: float
) -> None:
    import subprocess

    proc = subprocess.Popen(
        [*pc.cli_prefix(), "run", str(web_stack(tmp_path, stack_name)), "--no-watch"],
        env=pc.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    # Interrupted while still importing, before anything was created: Python dies
    # of the SIGINT itself (-2 here, 130 in a shell).
    assert proc.wait(60) in (0, 130, -signal.SIGINT), proc.stderr.read() if proc.stderr else ""
    assert stack_containers(stack_name) == []
    assert docker("network", "ls", "-q", "--filter", f"label=io.podctl.stack={stack_name}") == ""
