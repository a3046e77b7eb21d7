"""`podctl dev` on the real engine: a `build:` pod (busybox httpd serving /www) with
2 replicas behind a service, its site synced on save and its Dockerfile rebuilt."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Podctl, docker, free_port, wait_for, write_stack

pytestmark = pytest.mark.docker

DOCKERFILE = """FROM busybox:1.36
COPY site /www
{extra}CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""

STACK = """
name: {name}
pods:
  web:
    build: ./app
    replicas: 2
    ports: {{http: 8080}}
    readiness: {{http: {{port: http, path: /index.html}}, period: 1s}}
    stop_grace: 1s
    develop:
      watch:
        - {{path: ./app/site, action: sync, target: /www}}
        - {{path: ./app/Dockerfile, action: rebuild}}
services:
  web: {{pod: web, port: {port}, target: http}}
"""


@dataclass
class Dev:
    pc: Podctl
    stack: str
    port: int
    site: Path
    dockerfile: Path

    def pods(self) -> list[dict[str, Any]]:
        return self.pc.pods(self.stack)

    def events(self, reason: str) -> list[dict[str, Any]]:
        out = self.pc.cli("events", self.stack, "-o", "json", check=True).stdout
        return [e for e in json.loads(out) if e["reason"] == reason]

    def via_proxy(self, path: str) -> tuple[int, str]:
        return get(f"http://127.0.0.1:{self.port}{path}")

    def on_every_replica(self, path: str) -> list[tuple[int, str]]:
        """What each ready replica serves at `path`, asked directly at its address."""
        return [get(f"http://{p['ip']}:8080{path}") for p in self.pods() if p["ready"]]

    def all_serve(self, path: str, status: int, body: str | None = None) -> bool:
        answers = self.on_every_replica(path)
        return len(answers) == 2 and all(
            s == status and (body is None or b == body) for s, b in answers
        )


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), ""


@pytest.fixture
def dev(pc: Podctl, tmp_path: Path, stack_name: str) -> Iterator[Dev]:
    app = tmp_path / "app"
    (app / "site").mkdir(parents=True)
    (app / "Dockerfile").write_text(DOCKERFILE.format(extra=""))
    (app / "site" / "index.html").write_text("v1\n")
    port = free_port()
    path = write_stack(tmp_path, STACK.format(name=stack_name, port=port))
    out = pc.log.open("ab")
    pc.proc = subprocess.Popen(
        [sys.executable, "-m", "podctl", "dev", "-v", str(path)],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=pc.env,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for("the control socket", lambda: pc.cli("get", "stacks").returncode == 0, 60)
        pc.wait_ready(stack_name, 2, timeout=120)
        yield Dev(pc, stack_name, port, app / "site", app / "Dockerfile")
    finally:
        pc.stop()
        images = docker("images", "-q", f"podctl-build/{stack_name}-web").split()
        if images:
            docker("rmi", "-f", *sorted(set(images)), check=False)


def test_saves_are_live_in_every_replica_without_a_restart(dev: Dev) -> None:
    before = {p["container_id"]: p["started_at"] for p in dev.pods()}
    index = dev.site / "index.html"
    index.write_text("v2\n")
    wait_for("v2 on both replicas", lambda: dev.all_serve("/index.html", 200, "v2\n"), 30)
    assert dev.via_proxy("/index.html") == (200, "v2\n")
    (synced,) = wait_for("a Synced event", lambda: dev.events("Synced"), 10)
    assert synced["message"].startswith("synced 1 files to web (2 replicas) in ")
    assert synced["message"].endswith(" ms")
    after = dev.pods()
    assert {p["container_id"]: p["started_at"] for p in after} == before, "a replica restarted"
    assert all(p["restarts"] == 0 for p in after)

    # The same content saved again sends nothing: the next Synced is for the marker only.
    index.write_text("v2\n")
    (dev.site / "marker.html").write_text("m\n")
    second = wait_for("a second Synced", lambda: dev.events("Synced")[1:] or None, 30)
    assert len(second) == 1 and second[0]["message"].startswith("synced 1 files to web ")

    # A new file, then its deletion, reach both replicas.
    (dev.site / "new.html").write_text("new\n")
    wait_for("new.html on both", lambda: dev.all_serve("/new.html", 200, "new\n"), 30)
    (dev.site / "new.html").unlink()
    wait_for("new.html gone from both", lambda: dev.all_serve("/new.html", 404), 30)
    sub = dev.site / "css"
    sub.mkdir()
    (sub / "a.css").write_text("a\n")
    wait_for("a new directory's file", lambda: dev.all_serve("/css/a.css", 200, "a\n"), 30)
    assert {p["container_id"] for p in dev.pods()} == set(before)


def test_a_dockerfile_change_rebuilds_and_rolls_with_no_failed_request(dev: Dev) -> None:
    revision = {p["revision"] for p in dev.pods()}
    failures: list[str] = []
    requests = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal requests
        while not stop.is_set():
            try:
                status, _ = dev.via_proxy("/index.html")
                if status != 200:
                    failures.append(f"HTTP {status}")
            except OSError as exc:
                failures.append(repr(exc))
            requests += 1

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        dev.dockerfile.write_text(DOCKERFILE.format(extra="RUN echo rebuilt > /www/rev.txt\n"))

        def rolled() -> bool:
            pods = dev.pods()
            return (
                len(pods) == 2
                and all(p["ready"] for p in pods)
                and not {p["revision"] for p in pods} & revision
            )

        wait_for("the new revision on both replicas", rolled, 180)
        assert dev.all_serve("/rev.txt", 200, "rebuilt\n")
    finally:
        stop.set()
        loader.join(10)
    assert requests > 50
    assert failures == [], f"{len(failures)} of {requests} requests failed: {failures[:5]}"
    assert dev.events("Built")


def test_a_failed_build_keeps_the_running_revision(dev: Dev) -> None:
    pods = dev.pods()
    ids = {p["container_id"] for p in pods}
    dev.dockerfile.write_text(DOCKERFILE.format(extra="RUN echo about to fail && false\n"))
    (failed,) = wait_for("a BuildFailed event", lambda: dev.events("BuildFailed"), 120)
    assert "keeps its running revision" in failed["message"]
    assert "about to fail" in failed["message"]  # the build's last lines
    assert {p["container_id"] for p in dev.pods()} == ids
    assert dev.via_proxy("/index.html") == (200, "v1\n")
    # Syncing still works while the Dockerfile is broken.
    (dev.site / "index.html").write_text("still live\n")
    wait_for(
        "a sync after the failed build",
        lambda: dev.all_serve("/index.html", 200, "still live\n"),
        30,
    )


@pytest.mark.parametrize("verb", [["dev"], ["run", "--view"]])
def test_the_live_view_on_a_terminal_shows_the_pods_and_updates(
    pc: Podctl, tmp_path: Path, stack_name: str, verb: list[str]
) -> None:
    import os
    import pty
    import re

    app = tmp_path / "app"
    (app / "site").mkdir(parents=True)
    (app / "Dockerfile").write_text(DOCKERFILE.format(extra=""))
    (app / "site" / "index.html").write_text("v1\n")
    path = write_stack(tmp_path, STACK.format(name=stack_name, port=free_port()))
    master, slave = pty.openpty()
    env = dict(pc.env, COLUMNS="200", LINES="50", TERM="xterm")
    pc.proc = subprocess.Popen(
        [sys.executable, "-m", "podctl", *verb, str(path)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    screen: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            screen.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def text() -> str:
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(screen).decode(errors="replace"))

    try:
        wait_for(
            "the view with 2/2 ready",
            lambda: f"{stack_name}/web  2/2" in text() and "services" in text(),
            120,
        )
        assert "\x1b[" in b"".join(screen).decode(errors="replace")  # redrawn in place
        if verb != ["dev"]:
            return  # `run` never syncs; the view is all there is to see
        mark = len(text())
        (app / "site" / "index.html").write_text("v2\n")
        wait_for(
            "Synced in the view",
            lambda: "synced 1 files to web (2 replicas)" in text()[mark:],
            60,
        )
    finally:
        pc.stop()
        os.close(master)
        reader.join(5)
        images = docker("images", "-q", f"podctl-build/{stack_name}-web").split()
        if images:
            docker("rmi", "-f", *sorted(set(images)), check=False)


TICKER = """
name: {name}
pods:
  web:
    image: busybox:1.36
    command: ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]
    replicas: 2
    stop_grace: 1s
"""


def test_logs_of_a_stack_merge_replicas_and_follow_new_ones(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    path = write_stack(tmp_path, TICKER.format(name=stack_name))
    pc.start(path)
    pc.wait_ready(stack_name, 2)
    once = pc.cli("logs", stack_name, "--tail", "1", check=True).stdout.splitlines()
    assert [line.split(" | ")[0] for line in once] == ["web-0", "web-1"]
    assert all(line.split(" | ")[1].startswith("tick ") for line in once)
    out_path = tmp_path / "logs.out"
    with out_path.open("wb") as out:
        follower = subprocess.Popen(
            [sys.executable, "-m", "podctl", "logs", "-f", stack_name, "--tail", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=pc.env,
        )
    try:

        def prefixes() -> set[str]:
            lines = out_path.read_text(errors="replace").splitlines()
            return {line.split(" | ")[0].strip() for line in lines if " | tick " in line}

        wait_for("both replicas' lines", lambda: {"web-0", "web-1"} <= prefixes(), 30)
        assert "\x1b[" not in out_path.read_text()  # no colour when not a terminal
        pc.cli("scale", f"{stack_name}/web", "3", check=True)
        wait_for("the new replica's lines", lambda: "web-2" in prefixes(), 60)
    finally:
        follower.terminate()
        follower.wait(10)


INITIAL = """
name: {name}
pods:
  web:
    build: ./app
    replicas: 1
    ports: {{http: 8080}}
    readiness: {{http: {{port: http, path: /index.html}}, period: 1s}}
    stop_grace: 1s
    develop:
      watch:
        - {{path: ./app/site, action: sync, target: /www, initial_sync: true}}
"""


def test_initial_sync_sends_only_what_the_image_lacks(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    app = tmp_path / "app"
    (app / "site").mkdir(parents=True)
    (app / "Dockerfile").write_text(DOCKERFILE.format(extra=""))
    (app / "site" / "index.html").write_text("v1\n")
    (app / "site" / "late.html").write_text("late\n")
    (app / ".dockerignore").write_text("site/late.html\n")  # not in the image
    path = write_stack(tmp_path, INITIAL.format(name=stack_name))
    dev_proc = subprocess.Popen(
        [sys.executable, "-m", "podctl", "dev", "-v", str(path)],
        stdout=pc.log.open("ab"),
        stderr=subprocess.STDOUT,
        env=pc.env,
        stdin=subprocess.DEVNULL,
    )
    pc.proc = dev_proc
    try:
        wait_for("the control socket", lambda: pc.cli("get", "stacks").returncode == 0, 60)
        pods = pc.wait_ready(stack_name, 1, timeout=120)

        def synced() -> list[dict[str, Any]]:
            out = pc.cli("events", stack_name, "-o", "json", check=True).stdout
            return [e for e in json.loads(out) if e["reason"] == "Synced"]

        (event,) = wait_for("the initial sync", synced, 60)
        assert event["message"].startswith("synced 1 files to web (1 replicas)")
        assert get(f"http://{pods[0]['ip']}:8080/late.html") == (200, "late\n")
    finally:
        pc.stop()
        images = docker("images", "-q", f"podctl-build/{stack_name}-web").split()
        if images:
            docker("rmi", "-f", *sorted(set(images)), check=False)
