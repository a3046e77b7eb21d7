"""Configs and secrets materialised as files: modes, owners, digests, cleanup."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from podctl.runtime.protocol import MountBinding
from podctl.spec.digest import content_digest
from podctl.spec.model import (
    ContainerTemplate,
    DesiredConfig,
    DesiredPod,
    DesiredSecret,
    DesiredStack,
    MountSpec,
)
from podctl.storage import paths
from podctl.storage.errors import DigestMismatch, SourceError, StateWriteError
from podctl.storage.files import StackFiles, load_config, load_secret, read_secret

CANARY = "canary-7f3a9c1e-do-not-leak"
IS_ROOT = os.geteuid() == 0


def mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def make_stack(
    tmp_path: Path,
    *,
    site: bytes = b"<h1>hello</h1>",
    key: str = CANARY,
    mounts: tuple[MountSpec, ...] | None = None,
) -> DesiredStack:
    site_file = tmp_path / "src" / "index.html"
    site_file.parent.mkdir(exist_ok=True)
    site_file.write_bytes(site)
    if mounts is None:
        mounts = (
            MountSpec(kind="config", source="site", target="/www/index.html"),
            MountSpec(kind="secret", source="api-key", target="/run/secrets/api-key"),
            MountSpec(kind="volume", source="data", target="/data"),
        )
    pod = DesiredPod(
        stack="shop",
        name="web",
        replicas=1,
        revision="r1",
        template=ContainerTemplate(image="busybox:1.36", mounts=mounts),
    )
    return DesiredStack(
        name="shop",
        source=str(tmp_path / "stack.yaml"),
        network="podctl_shop",
        pods=(pod,),
        configs=(
            DesiredConfig(name="site", digest=content_digest(site), file=str(site_file)),
            DesiredConfig(name="inline", digest=content_digest(b"x=1"), data=b"x=1"),
        ),
        secrets=(
            DesiredSecret(name="api-key", digest=content_digest(key.encode()), env="API_KEY"),
        ),
    )


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StackFiles:
    monkeypatch.setenv("PODCTL_RUNTIME_DIR", str(tmp_path / "run"))
    return StackFiles()


@pytest.mark.anyio
async def test_materialise_writes_files_with_modes_and_private_dirs(
    tmp_path: Path, files: StackFiles
) -> None:
    stack = make_stack(tmp_path)
    fs = await files.materialise(stack, {"API_KEY": CANARY})
    by_name = {f.name: Path(f.path) for f in fs.files}
    assert set(by_name) == {"site", "api-key"}
    assert by_name["site"].read_bytes() == b"<h1>hello</h1>"
    assert by_name["api-key"].read_bytes() == CANARY.encode()
    assert mode(by_name["site"]) == 0o444
    assert mode(by_name["api-key"]) == 0o400
    # Every directory from the runtime dir down is 0700.
    d = by_name["api-key"].parent
    while d != tmp_path:
        assert mode(d) == 0o700, d
        d = d.parent
    assert by_name["api-key"].is_relative_to(paths.runtime_dir() / "stacks" / "shop")
    # The FileSet carries digests and paths, never the value.
    assert CANARY not in repr(fs)


@pytest.mark.anyio
async def test_binding_points_at_the_materialised_file_read_only(
    tmp_path: Path, files: StackFiles
) -> None:
    stack = make_stack(tmp_path)
    fs = await files.materialise(stack, {"API_KEY": CANARY})
    mount = stack.pods[0].template.mounts[1]
    b = files.binding(stack, mount)
    assert b == MountBinding(
        type="bind",
        source=next(f.path for f in fs.files if f.name == "api-key"),
        target="/run/secrets/api-key",
        read_only=True,
    )
    assert files.mount_binding(stack, stack.pods[0].template.mounts[2]) == MountBinding(
        type="volume", source="shop_data", target="/data"
    )


@pytest.mark.anyio
async def test_custom_mode_uid_gid(tmp_path: Path, files: StackFiles) -> None:
    mounts = (
        MountSpec(kind="secret", source="api-key", target="/k", mode=0o440, uid=1234, gid=5678),
        MountSpec(kind="secret", source="api-key", target="/k2"),
        MountSpec(kind="config", source="inline", target="/c", mode=0o600),
    )
    stack = make_stack(tmp_path, mounts=mounts)
    fs = await files.materialise(stack, {"API_KEY": CANARY})
    paths_ = [Path(f.path) for f in fs.files]
    # One file per (content, mode, owner): two mounts of one secret with different owners.
    assert len(set(paths_)) == 3
    custom = Path(files.binding(stack, mounts[0]).source)
    assert mode(custom) == 0o440
    assert mode(Path(files.binding(stack, mounts[1]).source)) == 0o400
    assert mode(Path(files.binding(stack, mounts[2]).source)) == 0o600
    if IS_ROOT:
        st = custom.stat()
        assert (st.st_uid, st.st_gid) == (1234, 5678)
        assert fs.warnings == () or all("tmpfs" in w for w in fs.warnings)


@pytest.mark.anyio
async def test_owner_is_not_changed_when_not_root(
    tmp_path: Path, files: StackFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 4321)
    mounts = (MountSpec(kind="secret", source="api-key", target="/k", uid=1234, gid=5678),)
    stack = make_stack(tmp_path, mounts=mounts)
    fs = await files.materialise(stack, {"API_KEY": CANARY})
    assert any("not root" in w for w in fs.warnings)
    assert Path(fs.files[0].path).read_bytes() == CANARY.encode()


@pytest.mark.anyio
async def test_content_change_yields_a_new_path_and_keeps_the_old_file(
    tmp_path: Path, files: StackFiles
) -> None:
    v1 = make_stack(tmp_path, key="first-secret-value")
    fs1 = await files.materialise(v1, {"API_KEY": "first-secret-value"})
    v2 = make_stack(tmp_path, key="second-secret-value")
    fs2 = await files.materialise(v2, {"API_KEY": "second-secret-value"})
    old = next(Path(f.path) for f in fs1.files if f.kind == "secret")
    new = next(Path(f.path) for f in fs2.files if f.kind == "secret")
    assert old != new
    # The old revision's containers keep their file until cleanup is told to drop it.
    assert old.read_bytes() == b"first-secret-value"
    assert new.read_bytes() == b"second-secret-value"
    # The unchanged config keeps its path.
    assert {f.path for f in fs1.files if f.kind == "config"} == {
        f.path for f in fs2.files if f.kind == "config"
    }

    kept_both = await files.cleanup("shop", fs1.digests | fs2.digests)
    assert kept_both == []
    removed = await files.cleanup("shop", fs2.digests)
    assert removed == [old]
    assert not old.exists() and new.exists()


@pytest.mark.anyio
async def test_rematerialise_is_idempotent_and_repairs_tampering(
    tmp_path: Path, files: StackFiles
) -> None:
    stack = make_stack(tmp_path)
    fs = await files.materialise(stack, {"API_KEY": CANARY})
    p = Path(next(f.path for f in fs.files if f.kind == "config"))
    ino = p.stat().st_ino
    await files.materialise(stack, {"API_KEY": CANARY})
    assert p.stat().st_ino == ino  # nothing rewritten
    p.chmod(0o666)
    await files.materialise(stack, {"API_KEY": CANARY})
    assert mode(p) == 0o444


@pytest.mark.anyio
async def test_cleanup_removes_empty_dirs_and_remove_stack_removes_all(
    tmp_path: Path, files: StackFiles
) -> None:
    stack = make_stack(tmp_path)
    await files.materialise(stack, {"API_KEY": CANARY})
    root = files.stack_root("shop")
    await files.cleanup("shop", [])
    assert not (root / "secrets" / "api-key").exists()
    assert not (root / "configs" / "site").exists()
    await files.remove_stack("shop")
    assert not root.exists()
    await files.remove_stack("shop")  # already gone: fine


@pytest.mark.anyio
async def test_missing_env_secret_names_the_variable_and_writes_nothing(
    tmp_path: Path, files: StackFiles
) -> None:
    stack = make_stack(tmp_path)
    with pytest.raises(SourceError, match="API_KEY is not set"):
        await files.materialise(stack, {})
    assert not files.stack_root("shop").exists()


@pytest.mark.anyio
async def test_missing_source_file(tmp_path: Path, files: StackFiles) -> None:
    stack = make_stack(tmp_path)
    (tmp_path / "src" / "index.html").unlink()
    with pytest.raises(SourceError, match="does not exist"):
        await files.materialise(stack, {"API_KEY": CANARY})


@pytest.mark.anyio
async def test_changed_source_is_reported_without_the_value(
    tmp_path: Path, files: StackFiles
) -> None:
    stack = make_stack(tmp_path)
    with pytest.raises(DigestMismatch) as info:
        await files.materialise(stack, {"API_KEY": CANARY + "-edited"})
    assert info.value.name == "api-key"
    assert CANARY not in str(info.value)
    assert "reload" in str(info.value)


@pytest.mark.anyio
async def test_write_failure_is_a_state_write_error(
    tmp_path: Path, files: StackFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_stack(tmp_path)

    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StateWriteError, match="ENOSPC") as info:
        await files.materialise(stack, {"API_KEY": CANARY})
    assert CANARY not in str(info.value)


@pytest.mark.anyio
async def test_read_secret_and_config_for_env_delivery(tmp_path: Path) -> None:
    stack = make_stack(tmp_path)
    assert await read_secret(stack.secrets[0], {"API_KEY": CANARY}) == CANARY.encode()
    assert load_config(stack.configs[0]) == b"<h1>hello</h1>"
    assert load_config(stack.configs[1]) == b"x=1"
    file_secret = tmp_path / "key"
    file_secret.write_bytes(b"k\n")
    s = DesiredSecret(name="k", digest=content_digest(b"k\n"), file=str(file_secret))
    assert load_secret(s, {}) == b"k\n"


def test_unsafe_names_are_rejected(tmp_path: Path) -> None:
    files = StackFiles(tmp_path)
    with pytest.raises(ValueError):
        files.stack_root("../etc")
    with pytest.raises(ValueError):
        files.file_path("shop", "secret", "../x", content_digest(b""), 0o400)
