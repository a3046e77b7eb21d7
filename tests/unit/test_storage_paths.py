"""Where podctl keeps its runtime files, state and socket."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from podctl.storage import paths


def test_runtime_dir_prefers_podctl_then_xdg_then_run() -> None:
    assert paths.runtime_dir({"PODCTL_RUNTIME_DIR": "/x", "XDG_RUNTIME_DIR": "/y"}) == Path("/x")
    assert paths.runtime_dir({"XDG_RUNTIME_DIR": "/run/user/1000"}) == Path("/run/user/1000/podctl")
    default = paths.runtime_dir({})
    assert default in (Path("/run/podctl"), Path("/dev/shm/podctl"))
    # Memory-backed: /run when it is tmpfs, else /dev/shm.
    assert paths.is_tmpfs(default.parent) is not False
    # An empty variable counts as unset, as in the XDG spec.
    assert paths.runtime_dir({"PODCTL_RUNTIME_DIR": "", "XDG_RUNTIME_DIR": ""}) == default


def test_state_dir_prefers_podctl_then_xdg_then_var_lib() -> None:
    assert paths.state_dir({"PODCTL_STATE_DIR": "/s", "XDG_STATE_HOME": "/h"}) == Path("/s")
    assert paths.state_dir({"XDG_STATE_HOME": "/home/u/.local/state"}) == Path(
        "/home/u/.local/state/podctl"
    )
    assert paths.state_dir({}) == Path("/var/lib/podctl")


def test_socket_path_defaults_under_runtime_dir() -> None:
    assert paths.socket_path({"PODCTL_SOCKET": "/tmp/p.sock"}) == Path("/tmp/p.sock")
    assert paths.socket_path({"PODCTL_RUNTIME_DIR": "/r"}) == Path("/r/podctl.sock")
    assert paths.socket_path({"XDG_RUNTIME_DIR": "/u"}) == Path("/u/podctl/podctl.sock")
    assert paths.socket_path({}) == paths.runtime_dir({}) / "podctl.sock"


def test_resolvers_read_os_environ_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PODCTL_RUNTIME_DIR", str(tmp_path / "rt"))
    monkeypatch.delenv("PODCTL_SOCKET", raising=False)
    assert paths.runtime_dir() == tmp_path / "rt"
    assert paths.socket_path() == tmp_path / "rt" / "podctl.sock"
    assert paths.stacks_dir() == tmp_path / "rt" / "stacks"


def test_ensure_private_dir_creates_0700_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        d = paths.ensure_private_dir(tmp_path / "a" / "b")
    finally:
        os.umask(old)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_ensure_private_dir_tightens_an_existing_dir(tmp_path: Path) -> None:
    d = tmp_path / "loose"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    paths.ensure_private_dir(d)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_filesystem_type_uses_the_longest_mount_point() -> None:
    # /proc is procfs on every Linux; the walk-up handles paths that do not exist yet.
    assert paths.filesystem_type(Path("/proc/self")) == "proc"
    assert paths.filesystem_type(Path("/proc/does/not/exist")) == "proc"
    assert paths.is_tmpfs(Path("/proc")) is False
    assert paths.tmpfs_warning(Path("/proc")) is not None


def test_tmpfs_is_recognised() -> None:
    # /dev/shm is tmpfs on Linux with glibc; skip the check where it is not.
    if paths.filesystem_type(Path("/dev/shm")) != "tmpfs":
        return
    assert paths.is_tmpfs(Path("/dev/shm/podctl")) is True
    assert paths.tmpfs_warning(Path("/dev/shm/podctl")) is None


def test_ensure_private_dir_refuses_a_world_writable_dir(tmp_path: Path) -> None:
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    with pytest.raises(paths.UnsafeDirectory, match=r"writable by everyone \(mode 0777\)") as exc:
        paths.ensure_private_dir(d)
    assert str(d) in str(exc.value)
    assert stat.S_IMODE(d.stat().st_mode) == 0o777  # refused, not "fixed"


def test_ensure_private_dir_refuses_a_group_writable_dir(tmp_path: Path) -> None:
    d = tmp_path / "group"
    d.mkdir()
    d.chmod(0o770)
    with pytest.raises(paths.UnsafeDirectory, match="writable by its group"):
        paths.ensure_private_dir(d)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_ensure_private_dir_refuses_a_dir_of_another_user(tmp_path: Path) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody").pw_uid
    d = tmp_path / "theirs"
    d.mkdir(mode=0o700)
    os.chown(d, nobody, -1)
    with pytest.raises(paths.UnsafeDirectory, match=rf"owned by uid {nobody} \(nobody\)"):
        paths.ensure_private_dir(d)
    with pytest.raises(paths.UnsafeDirectory):
        paths.check_private_dir(d)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_nothing_is_created_under_a_parent_another_user_owns(tmp_path: Path) -> None:
    import pwd

    parent = tmp_path / "shm-podctl"
    parent.mkdir(mode=0o777)
    parent.chmod(0o777)
    os.chown(parent, pwd.getpwnam("nobody").pw_uid, -1)
    with pytest.raises(paths.UnsafeDirectory, match=f"its parent {parent} is owned by"):
        paths.ensure_private_dir(parent / "stacks")
    assert not (parent / "stacks").exists()


def test_a_parent_writable_by_others_must_be_sticky(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(paths.UnsafeDirectory, match="writable by others and not sticky"):
        paths.ensure_private_dir(shared / "podctl")
    shared.chmod(0o1777)  # like /tmp and /dev/shm: nobody can swap what is ours
    d = paths.ensure_private_dir(shared / "podctl")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_check_private_dir_names_a_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(paths.UnsafeDirectory, match="does not exist"):
        paths.check_private_dir(tmp_path / "absent")


def test_socket_dir_may_be_a_sticky_shared_dir(tmp_path: Path) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    assert paths.ensure_socket_dir(shared / "podctl.sock") == shared
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777  # a shared dir is left as it is
    fresh = paths.ensure_socket_dir(tmp_path / "run" / "podctl.sock")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    with pytest.raises(paths.UnsafeDirectory):
        paths.ensure_socket_dir(loose / "podctl.sock")


def test_systemd_directories_come_after_podctl_and_before_xdg() -> None:
    env = {"STATE_DIRECTORY": "/var/lib/podctl:/var/lib/other", "RUNTIME_DIRECTORY": "/run/pc"}
    assert paths.state_dir({**env, "XDG_STATE_HOME": "/h"}) == Path("/var/lib/podctl")
    assert paths.runtime_dir({**env, "XDG_RUNTIME_DIR": "/u"}) == Path("/run/pc")
    assert paths.socket_path(env) == Path("/run/pc/podctl.sock")
    assert paths.state_dir({**env, "PODCTL_STATE_DIR": "/s"}) == Path("/s")
    assert paths.runtime_dir({"RUNTIME_DIRECTORY": "relative"}) != Path("relative")
