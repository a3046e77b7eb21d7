"""One podctl per stack: the host-wide stack lock."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from podctl.storage import locks


def hold_in_child(directory: Path, *stacks: str) -> subprocess.Popen[str]:
    """Another process that takes the locks and keeps them until its stdin closes."""
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from podctl.storage import locks
        held = locks.acquire_stacks({list(stacks)!r}, directory=Path({str(directory)!r}))
        print("held", flush=True)
        sys.stdin.read()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    child = hold_in_child(tmp_path, "shop")
    try:
        with pytest.raises(locks.StackBusy) as exc:
            locks.acquire_stacks(["shop"], directory=tmp_path)
        assert exc.value.pid == child.pid
        assert f"stack shop is already run by podctl (pid {child.pid}" in str(exc.value)
        # Another stack is free.
        with locks.acquire_stacks(["blog"], directory=tmp_path) as held:
            assert held.stacks == ["blog"]
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
    # The kernel dropped the lock with the process: no stale lock blocks anyone.
    with locks.acquire_stacks(["shop"], directory=tmp_path) as held:
        assert held.stacks == ["shop"]
        assert (tmp_path / "shop.lock").read_text() == f"{os.getpid()}\n"


def test_all_or_nothing(tmp_path: Path) -> None:
    child = hold_in_child(tmp_path, "b")
    try:
        with pytest.raises(locks.StackBusy):
            locks.acquire_stacks(["a", "b", "c"], directory=tmp_path)
        # "a" was given back when "b" was refused.
        with locks.acquire_stacks(["a"], directory=tmp_path):
            pass
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)


def test_release_frees_the_stack_in_the_same_process(tmp_path: Path) -> None:
    held = locks.acquire_stacks(["shop"], directory=tmp_path)
    held.release()
    with locks.acquire_stacks(["shop"], directory=tmp_path):
        pass


def test_lock_dir_ignores_podctl_variables() -> None:
    a = locks.lock_dir({"PODCTL_SOCKET": "/a.sock", "PODCTL_STATE_DIR": "/a"})
    b = locks.lock_dir({"PODCTL_RUNTIME_DIR": "/b", "PODCTL_STATE_DIR": "/b"})
    assert a == b


def test_lock_dir_falls_back_for_users(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "run").write_text("")  # not a directory: /run/podctl/locks is out of reach
    monkeypatch.setattr(locks, "HOST_LOCK_DIR", tmp_path / "run" / "podctl" / "locks")
    assert locks.lock_dir({"XDG_RUNTIME_DIR": "/run/user/1000"}, uid=1000) == Path(
        "/run/user/1000/podctl-locks"
    )
    assert locks.lock_dir({}, uid=1000) == Path("/tmp/podctl-1000-locks")


def test_a_lock_dir_others_can_write_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "locks"
    d.mkdir()
    d.chmod(0o777)
    with pytest.raises(locks.LockError, match="writable by others"):
        locks.acquire_stacks(["shop"], directory=d)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_lock_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    import pwd

    d = tmp_path / "locks"
    d.mkdir(mode=0o755)
    os.chown(d, pwd.getpwnam("nobody").pw_uid, -1)
    with pytest.raises(locks.LockError, match="owned by uid"):
        locks.acquire_stacks(["shop"], directory=d)


def test_a_symlinked_lock_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "shop.lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(locks.LockError, match="cannot open lock file"):
        locks.acquire_stacks(["shop"], directory=tmp_path)
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("name", ["../etc", ".hidden", "a/b", ""])
def test_names_that_are_not_one_path_component_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(locks.LockError, match="is not a stack name"):
        locks.acquire_stacks([name], directory=tmp_path)
