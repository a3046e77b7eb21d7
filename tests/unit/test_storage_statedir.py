"""The state directory: atomic, private, and failure-safe writes."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import msgspec
import pytest

from podctl.spec.model import ContainerTemplate
from podctl.storage.atomic import atomic_write
from podctl.storage.errors import StateReadError, StateWriteError
from podctl.storage.history import RevisionHistory
from podctl.storage.statedir import StateDir


class Doc(msgspec.Struct, frozen=True):
    name: str
    count: int


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_write_and_read_json_round_trip(tmp_path: Path) -> None:
    sd = StateDir(tmp_path / "state")
    path = sd.write_json("doc.json", Doc("a", 1))
    assert sd.read_json("doc.json", Doc) == Doc("a", 1)
    assert path == tmp_path / "state" / "doc.json"


def test_missing_file_reads_as_none(tmp_path: Path) -> None:
    assert StateDir(tmp_path).read_json("nope.json", Doc) is None


def test_directory_0700_and_files_0600(tmp_path: Path) -> None:
    sd = StateDir(tmp_path / "state")
    old = os.umask(0)  # even with a permissive umask
    try:
        sd.write_json("sub/doc.json", Doc("a", 1))
    finally:
        os.umask(old)
    assert mode(tmp_path / "state") == 0o700
    assert mode(tmp_path / "state" / "sub") == 0o700
    assert mode(tmp_path / "state" / "sub" / "doc.json") == 0o600


def test_names_cannot_escape_the_directory(tmp_path: Path) -> None:
    sd = StateDir(tmp_path / "state")
    for bad in ("../x.json", "/etc/passwd", "a/../../x", ".hidden", ""):
        with pytest.raises(ValueError):
            sd.write_json(bad, Doc("a", 1))


@pytest.mark.parametrize("target", ["write", "fsync"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_failed_write_keeps_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, code: int
) -> None:
    sd = StateDir(tmp_path)
    sd.write_json("doc.json", Doc("old", 1))

    def fail(*args: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, target, fail)
    with pytest.raises(StateWriteError) as info:
        sd.write_json("doc.json", Doc("new", 2))
    monkeypatch.undo()

    assert info.value.errno == code
    assert errno.errorcode[code] in str(info.value)
    assert "previous version is kept" in str(info.value)
    assert sd.read_json("doc.json", Doc) == Doc("old", 1)
    # No temp file is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json"]


def test_failed_rename_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sd = StateDir(tmp_path)
    sd.write_json("doc.json", Doc("old", 1))

    def fail(*args: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(StateWriteError, match="EROFS"):
        sd.write_json("doc.json", Doc("new", 2))
    monkeypatch.undo()
    assert sd.read_json("doc.json", Doc) == Doc("old", 1)
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_unwritable_directory_raises_state_write_error(tmp_path: Path) -> None:
    # A file where the directory should be: mkdir fails with EEXIST/ENOTDIR, not a crash.
    (tmp_path / "state").write_text("x")
    with pytest.raises(StateWriteError):
        StateDir(tmp_path / "state").write_json("doc.json", Doc("a", 1))


def test_corrupt_file_raises_state_read_error(tmp_path: Path) -> None:
    (tmp_path / "doc.json").write_text("{not json")
    with pytest.raises(StateReadError, match=r"doc\.json"):
        StateDir(tmp_path).read_json("doc.json", Doc)


def test_atomic_write_partial_writes_are_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def one_byte(fd: int, data: bytes) -> int:
        return real_write(fd, bytes(data[:1]))

    monkeypatch.setattr(os, "write", one_byte)
    atomic_write(tmp_path / "f", b"hello")
    monkeypatch.undo()
    assert (tmp_path / "f").read_bytes() == b"hello"


@pytest.mark.anyio
async def test_async_variants(tmp_path: Path) -> None:
    sd = StateDir(tmp_path)
    await sd.write_json_async("doc.json", Doc("a", 1))
    assert await sd.read_json_async("doc.json", Doc) == Doc("a", 1)
    assert await sd.remove_async("doc.json") is True
    assert await sd.remove_async("doc.json") is False


def test_revision_history_is_capped_and_moves_reverted_revisions_to_the_end(
    tmp_path: Path,
) -> None:
    history = RevisionHistory(StateDir(tmp_path), limit=3)
    t = ContainerTemplate(image="busybox:1.36")
    for i, rev in enumerate(["r1", "r2", "r3", "r4"]):
        history.record("shop", "web", rev, t, now=float(i))
    assert [r.revision for r in history.list("shop", "web")] == ["r2", "r3", "r4"]
    history.record("shop", "web", "r2", t, cause="undo", now=9.0)
    revs = history.list("shop", "web")
    assert [r.revision for r in revs] == ["r3", "r4", "r2"]
    assert revs[-1].cause == "undo"
    # Recording the current revision again is a no-op.
    history.record("shop", "web", "r2", t, now=10.0)
    assert history.list("shop", "web")[-1].created_at == 9.0
    assert history.list("shop", "db") == ()
    assert mode(tmp_path / "revisions" / "shop" / "web.json") == 0o600
