"""Issue 10: the rollout verbs on the real engine, driven as a user drives them.

`podctl rollout status` follows an env change to the end (exit 0) and a
crash-looping revision to its automatic rollback (exit 1); `rollout history -o
json` says what ran, why and how it ended; `undo` returns to the revision before;
`pause` holds a rollout and `resume` finishes it. Replicas serve with busybox
httpd behind a 1 s TCP readiness probe, under a shell that exits at once on
SIGTERM (so a replaced replica is gone in well under a second).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Podctl, wait_for, write_stack

pytestmark = pytest.mark.docker

SERVE = 'trap "exit 0" TERM; httpd -f -p 8080 -h /tmp & wait'
SECRET = "s3cr3t-h10-rollout-value"
CRASH = "exit 3"

STACK = """
name: {name}
pods:
  web:
    image: busybox:1.36
    command: {command}
    replicas: 2
    env: {{MODE: {mode}, TOKEN: {{secret: token}}}}
    ports: {{http: 8080}}
    readiness: {{tcp: {{port: http}}, period: 1s}}
    stop_grace: 2s
    rollout:
      max_surge: 1
      max_unavailable: 0
      progress_deadline: {deadline}
secrets: {{token: {{env: H10_TOKEN}}}}
"""


def stack_text(name: str, mode: str, *, crash: bool = False, deadline: str = "60s") -> str:
    command = json.dumps(["sh", "-c", CRASH if crash else SERVE])
    return STACK.format(name=name, mode=mode, command=command, deadline=deadline)


def status(pc: Podctl, target: str) -> dict[str, Any]:
    """`rollout status --no-watch -o json`: the rollout as of the last pass."""
    proc = pc.cli("rollout", "status", target, "--no-watch", "-o", "json")
    assert proc.stdout.strip(), proc.stderr
    return dict(json.loads(proc.stdout))


def wait_file_revision(pc: Podctl, target: str, old: str) -> str:
    """The new file revision once podctl has read the edit (hot reload)."""
    return str(
        wait_for(
            "the edit to be read",
            lambda: (s := status(pc, target))["file_revision"] != old and s["file_revision"],
            30,
        )
    )


def history(pc: Podctl, target: str) -> list[dict[str, Any]]:
    proc = pc.cli("rollout", "history", target, "-o", "json", check=True)
    return list(json.loads(proc.stdout))


def revisions(pc: Podctl, stack: str) -> list[str]:
    return sorted(p["revision"] for p in pc.pods(stack))


def ready_at(pc: Podctl, stack: str, revision: str, n: int = 2) -> bool:
    pods = pc.pods(stack)
    return len(pods) == n and all(p["ready"] and p["revision"] == revision for p in pods)


def test_env_change_history_and_undo(pc: Podctl, tmp_path: Path, stack_name: str) -> None:
    target = f"{stack_name}/web"
    pc.env["H10_TOKEN"] = SECRET  # delivered as env (opted in): never shown by a verb
    path = write_stack(tmp_path, stack_text(stack_name, "one"))
    pc.start(path, extra=())  # hot reload on
    pc.wait_ready(stack_name, 2)
    first = status(pc, target)
    assert first["state"] == "complete"
    r1 = first["revision"]
    # Nothing under way: `rollout status` reports and exits 0 at once.
    quick = pc.cli("rollout", "status", target, timeout=20)
    assert quick.returncode == 0, quick.stderr

    write_stack(tmp_path, stack_text(stack_name, "two"))
    r2 = wait_file_revision(pc, target, r1)
    started = time.monotonic()
    follow = pc.cli("rollout", "status", target, "--timeout", "90s", timeout=120)
    took = time.monotonic() - started
    assert follow.returncode == 0, follow.stdout + follow.stderr
    assert "rollout complete: 2/2 new ready" in follow.stdout, follow.stdout
    print(f"rollout of 2 replicas followed to the end in {took:.1f}s:\n{follow.stdout}")
    assert ready_at(pc, stack_name, r2), pc.pods(stack_name)

    rows = history(pc, target)
    assert [(r["revision"], r["status"], r["cause"]) for r in rows] == [
        (r1, "complete", "file change"),
        (r2, "current", "file change"),
    ]
    for r in rows:
        assert set(r) >= {"revision", "created", "cause", "status", "image"}
        assert r["image"] == "busybox:1.36" and isinstance(r["created"], float)

    undo = pc.cli("rollout", "undo", target)
    assert undo.returncode == 0, undo.stderr
    assert r1[:12] in undo.stdout
    back = pc.cli("rollout", "status", target, "--timeout", "90s", timeout=120)
    assert back.returncode == 0, back.stdout + back.stderr
    wait_for("both replicas back at the first revision", lambda: ready_at(pc, stack_name, r1))
    reasons = {p["reason"] for p in pc.pods(stack_name)}
    assert reasons == {f"Override: undo to {r1[:6]}"}, reasons
    rows = history(pc, target)
    assert [(r["revision"], r["status"], r["cause"]) for r in rows] == [
        (r2, "complete", "file change"),
        (r1, "current", "undo"),
    ]
    described = json.loads(pc.cli("describe", "pod", f"{target}-0", "-o", "json").stdout)
    assert described["overrides"]["undo"]["revision"] == r1

    # Undo again: back to the second revision (the last fully available before r1).
    again = pc.cli("rollout", "undo", target, "--to-revision", r2[:8])
    assert again.returncode == 0, again.stderr
    assert pc.cli("rollout", "status", target, "--timeout", "90s", timeout=120).returncode == 0
    wait_for("both replicas at r2", lambda: ready_at(pc, stack_name, r2))
    unknown = pc.cli("rollout", "undo", target, "--to-revision", "ffffffff")
    assert unknown.returncode == 1 and "unknown revision" in unknown.stderr

    # No verb shows the secret's value, and the state directory does not hold it.
    shown = [
        pc.cli("rollout", "history", target, "-o", "json").stdout,
        pc.cli("rollout", "status", target, "--no-watch", "-o", "json").stdout,
        pc.cli("describe", "pod", f"{target}-0", "-o", "json").stdout,
        pc.cli("events", stack_name, "-o", "json").stdout,
    ]
    assert all(SECRET not in out for out in shown)
    for f in (tmp_path / "state").rglob("*"):
        assert not f.is_file() or SECRET.encode() not in f.read_bytes(), f

    # With podctl stopped, the history is read from the state directory.
    online = history(pc, target)
    assert [(r["revision"], r["cause"]) for r in online] == [(r1, "undo"), (r2, "undo")]
    assert pc.stop() == 0
    offline = history(pc, target)
    assert [(r["revision"], r["status"]) for r in offline] == [
        (r["revision"], r["status"]) for r in online
    ]
    assert pc.cli("rollout", "pause", target).returncode == 1


GATED = """
name: {name}
pods:
  web:
    image: busybox:1.36
    command: {command}
    replicas: 2
    env: {{MODE: {mode}}}
    ports: {{http: 8080}}
    mounts: [{{bind: ./gate, path: /gate, read_only: true}}]
    readiness: {{exec: [sh, -c, "test -f /tmp/ready || test -f /gate/open"], period: 1s}}
    stop_grace: 2s
    rollout: {{progress_deadline: 120s}}
"""


def gated_text(name: str, mode: str, *, ready_by_itself: bool) -> str:
    """Replicas of the first revision are ready by themselves; those of the second
    only once the test opens the gate (a file on a bind mount): the test, not the
    machine's speed, decides when the rollout can move."""
    script = ("touch /tmp/ready; " if ready_by_itself else "") + SERVE
    return GATED.format(name=name, mode=mode, command=json.dumps(["sh", "-c", script]))


def test_pause_holds_a_rollout_and_resume_finishes_it(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    """Paused mid-rollout, nothing is replaced, not even once the new replica is
    ready; `resume` lets the rollout finish."""
    target = f"{stack_name}/web"
    (tmp_path / "gate").mkdir()
    path = write_stack(tmp_path, gated_text(stack_name, "one", ready_by_itself=True))
    pc.start(path, extra=())
    pc.wait_ready(stack_name, 2)
    r1 = status(pc, target)["revision"]
    write_stack(tmp_path, gated_text(stack_name, "two", ready_by_itself=False))
    r2 = wait_file_revision(pc, target, r1)
    wait_for("the surge replica", lambda: r2 in revisions(pc, stack_name))
    paused = pc.cli("rollout", "pause", target)
    assert paused.returncode == 0, paused.stderr
    s = wait_for("the pause to show", lambda: (x := status(pc, target))["state"] == "paused" and x)
    assert s["revision"] == r2 and s["old_remaining"] == 2, s
    assert revisions(pc, stack_name) == sorted([r1, r1, r2])

    (tmp_path / "gate" / "open").touch()
    wait_for(
        "the new replica ready",
        lambda: any(p["ready"] for p in pc.pods(stack_name) if p["revision"] == r2),
    )
    # Held: for several probe periods and passes, the old replicas stay, all of them.
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert revisions(pc, stack_name) == sorted([r1, r1, r2])
        time.sleep(0.5)
    reasons = {p["reason"] for p in pc.pods(stack_name) if p["revision"] == r1}
    assert all("paused" in (r or "") for r in reasons), reasons
    # `rollout status` waits while the rollout is paused mid-way.
    waiting = pc.cli("rollout", "status", target, "--timeout", "2s", timeout=30)
    assert waiting.returncode == 1 and "not finished" in waiting.stderr, waiting.stderr

    assert pc.cli("rollout", "resume", target).returncode == 0
    done = pc.cli("rollout", "status", target, "--timeout", "90s", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ready_at(pc, stack_name, r2), pc.pods(stack_name)
    again = pc.cli("rollout", "resume", target)
    assert again.returncode == 1 and "not paused" in again.stderr


def test_a_crash_looping_revision_is_rolled_back_and_status_exits_1(
    pc: Podctl, tmp_path: Path, stack_name: str
) -> None:
    target = f"{stack_name}/web"
    pc.env["H10_TOKEN"] = SECRET
    path = write_stack(tmp_path, stack_text(stack_name, "one", deadline="10s"))
    pc.start(path, extra=())
    pc.wait_ready(stack_name, 2)
    r1 = status(pc, target)["revision"]

    write_stack(tmp_path, stack_text(stack_name, "two", crash=True, deadline="10s"))
    r2 = wait_file_revision(pc, target, r1)
    started = time.monotonic()
    follow = pc.cli("rollout", "status", target, "--timeout", "60s", timeout=90)
    took = time.monotonic() - started
    assert follow.returncode == 1, follow.stdout + follow.stderr
    assert "rolled back" in follow.stdout, follow.stdout
    print(f"crash-looping revision rolled back, status exited 1 after {took:.1f}s")
    # The old replicas were never removed: both still ready at r1, the failed ones gone.
    wait_for("only r1 replicas", lambda: ready_at(pc, stack_name, r1))
    rows = {r["revision"]: r for r in history(pc, target)}
    assert rows[r2]["status"] == "rolled-back", rows
    assert (rows[r1]["status"], rows[r1]["cause"]) == ("current", "rollback"), rows
    events = json.loads(pc.cli("events", stack_name, "-o", "json", check=True).stdout)
    got = [e["reason"] for e in events if e["reason"].startswith(("Rollout", "RolledBack"))]
    assert got[:3] == ["RolloutStarted", "RolloutFailed", "RolledBack"], got
    # Run again later: still rolled back, so still exit 1 (status reports, does not wait).
    assert pc.cli("rollout", "status", target, "--timeout", "10s", timeout=30).returncode == 1
    reasons = {p["reason"] for p in pc.pods(stack_name)}
    assert reasons == {f"Override: rollback to {r1[:6]}"}, reasons


def test_overrides_and_history_survive_kill_9(pc: Podctl, tmp_path: Path, stack_name: str) -> None:
    """A scale and a pause made mid-rollout hold across `kill -9` of podctl and a
    restart (which adopts the replicas, duplicates none); the history survives."""
    target = f"{stack_name}/web"
    (tmp_path / "gate").mkdir()
    path = write_stack(tmp_path, gated_text(stack_name, "one", ready_by_itself=True))
    pc.start(path, extra=())
    pc.wait_ready(stack_name, 2)
    r1 = status(pc, target)["revision"]
    write_stack(tmp_path, gated_text(stack_name, "two", ready_by_itself=False))
    r2 = wait_file_revision(pc, target, r1)
    wait_for("the surge replica", lambda: r2 in revisions(pc, stack_name))
    assert pc.cli("rollout", "pause", target).returncode == 0
    # Scaled while paused: the new slot is created (at the rollout's revision); no
    # old replica is replaced. (An edit of the pod's entry would release the scale.)
    assert pc.cli("scale", target, "3").returncode == 0
    held = sorted([r1, r1, r2, r2])
    wait_for("the third slot", lambda: revisions(pc, stack_name) == held)

    pc.kill9()
    pc.start(path, extra=())
    s = wait_for("the pause restored", lambda: (x := status(pc, target))["state"] == "paused" and x)
    assert (s["revision"], s["desired"]) == (r2, 3), s
    (tmp_path / "gate" / "open").touch()
    wait_for(
        "the new replica ready",
        lambda: any(p["ready"] for p in pc.pods(stack_name) if p["revision"] == r2),
    )
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert revisions(pc, stack_name) == held  # still held, nothing duplicated
        time.sleep(0.5)
    described = json.loads(pc.cli("describe", "pod", f"{target}-0", "-o", "json").stdout)
    assert set(described["overrides"]) == {"pause", "scale"}, described["overrides"]

    assert pc.cli("rollout", "resume", target).returncode == 0
    done = pc.cli("rollout", "status", target, "--timeout", "90s", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ready_at(pc, stack_name, r2, n=3), pc.pods(stack_name)
    rows = history(pc, target)
    assert [(r["revision"], r["status"]) for r in rows] == [(r1, "complete"), (r2, "current")]
