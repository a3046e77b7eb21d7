"""Path containment for relative paths in stack files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from podctl.spec.paths import PathEscape, resolve_in_stack


@pytest.fixture
def stack_dir(tmp_path: Path) -> Path:
    d = tmp_path / "stack"
    (d / "site").mkdir(parents=True)
    (d / "site" / "index.html").write_text("hi")
    (tmp_path / "outside.txt").write_text("host file")
    return d


def test_relative_path_resolves_against_the_stack_dir(stack_dir: Path) -> None:
    got = resolve_in_stack(stack_dir, "./site/index.html")
    assert got == os.path.realpath(stack_dir / "site" / "index.html")


def test_dotdot_that_stays_inside_is_fine(stack_dir: Path) -> None:
    got = resolve_in_stack(stack_dir, "site/../site/index.html")
    assert got.endswith("site/index.html")


@pytest.mark.parametrize("escape", ["../outside.txt", "site/../../outside.txt", ".."])
def test_dotdot_escape_is_rejected(stack_dir: Path, escape: str) -> None:
    with pytest.raises(PathEscape, match="escapes the stack directory"):
        resolve_in_stack(stack_dir, escape)


def test_absolute_path_needs_allow_host_paths(stack_dir: Path, tmp_path: Path) -> None:
    target = str(tmp_path / "outside.txt")
    with pytest.raises(PathEscape, match="allow_host_paths"):
        resolve_in_stack(stack_dir, target)
    assert resolve_in_stack(stack_dir, target, allow_host_paths=True) == os.path.realpath(target)


def test_symlink_escape_is_rejected(stack_dir: Path, tmp_path: Path) -> None:
    (stack_dir / "link").symlink_to(tmp_path / "outside.txt")
    with pytest.raises(PathEscape, match="through a symlink"):
        resolve_in_stack(stack_dir, "link")


def test_symlinked_directory_escape_is_rejected(stack_dir: Path) -> None:
    (stack_dir / "etc").symlink_to("/etc")
    with pytest.raises(PathEscape, match="through a symlink"):
        resolve_in_stack(stack_dir, "etc/passwd")


def test_symlink_escape_is_rejected_even_with_allow_host_paths(
    stack_dir: Path, tmp_path: Path
) -> None:
    (stack_dir / "link").symlink_to(tmp_path / "outside.txt")
    with pytest.raises(PathEscape):
        resolve_in_stack(stack_dir, "link", allow_host_paths=True)


def test_symlink_inside_the_stack_is_followed(stack_dir: Path) -> None:
    (stack_dir / "alias").symlink_to(stack_dir / "site")
    got = resolve_in_stack(stack_dir, "alias/index.html")
    assert got == os.path.realpath(stack_dir / "site" / "index.html")


def test_stack_dir_itself_a_symlink(tmp_path: Path, stack_dir: Path) -> None:
    (tmp_path / "via").symlink_to(stack_dir)
    got = resolve_in_stack(tmp_path / "via", "site/index.html")
    assert got == os.path.realpath(stack_dir / "site" / "index.html")


@pytest.mark.parametrize("bad", ["", "a\0b"])
def test_empty_or_nul_rejected(stack_dir: Path, bad: str) -> None:
    with pytest.raises(PathEscape):
        resolve_in_stack(stack_dir, bad)
