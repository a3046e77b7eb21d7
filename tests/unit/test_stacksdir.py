"""`run --stacks-dir`: each file a stack, bad files reported without stopping the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from podctl.spec.errors import SpecError
from podctl.stacksdir import PartialLoad, StacksDir, is_stack_file, stack_files


def stack(name: str, port: int | None = None, replicas: int = 1) -> str:
    text = (
        f"name: {name}\npods:\n  web:\n    image: busybox:1.36\n"
        f"    command: [sleep, '3600']\n    replicas: {replicas}\n"
        "    ports: {http: 8080}\n"
    )
    if port is not None:
        text += f"services:\n  web: {{pod: web, port: {port}, target: http}}\n"
    return text


def names(stacks: list[object]) -> list[str]:
    return [s.name for s in stacks]  # type: ignore[attr-defined]


def load(d: StacksDir) -> tuple[list[str], list[str]]:
    """(stack names, files with issues)."""
    try:
        return names(d.load()), []
    except PartialLoad as exc:
        return names(exc.stacks), sorted({Path(i.file).name for i in exc.issues})


def test_which_files_are_stacks(tmp_path: Path) -> None:
    for n in ("a.yaml", "b.yml", "c.toml", "d.txt", ".e.yaml", "f.yaml.swp", "g.yaml~"):
        (tmp_path / n).write_text("x")
    (tmp_path / "sub.yaml").mkdir()
    (tmp_path / "link.yaml").symlink_to(tmp_path / "a.yaml")
    assert [p.name for p in stack_files(tmp_path)] == ["a.yaml", "b.yml", "c.toml", "link.yaml"]
    assert is_stack_file("/x/y.toml") and not is_stack_file("/x/.y.toml")


def test_a_bad_file_stops_only_itself_and_a_broken_edit_keeps_the_last_good(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.yaml").write_text(stack("a"))
    (tmp_path / "b.yaml").write_text(stack("b"))
    (tmp_path / "c.yaml").write_text("name: c\npods: 3\n")
    d = StacksDir(tmp_path, environ={})
    assert load(d) == (["a", "b"], ["c.yaml"])
    (tmp_path / "b.yaml").write_text("name: b\npods:\n  web:\n    imagee: x\n")
    assert load(d) == (["a", "b"], ["b.yaml", "c.yaml"])  # b runs as last loaded
    (tmp_path / "b.yaml").unlink()
    (tmp_path / "c.yaml").write_text(stack("c", replicas=2))
    assert load(d) == (["a", "c"], [])


def test_a_new_file_cannot_take_a_running_stacks_name_or_port(tmp_path: Path) -> None:
    (tmp_path / "z.yaml").write_text(stack("shop", port=18080))
    d = StacksDir(tmp_path, environ={})
    assert load(d) == (["shop"], [])
    (tmp_path / "a.yaml").write_text(stack("shop"))  # sorts first, but z ran already
    (tmp_path / "b.yaml").write_text(stack("other", port=18080))
    assert load(d) == (["shop"], ["a.yaml", "b.yaml"])
    try:
        d.load()
    except PartialLoad as exc:
        text = str(exc)
    assert "also defined in" in text and "host port 18080 is already used" in text
    assert f"{tmp_path / 'a.yaml'}:1:1: name:" in text


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read stacks directory"):
        StacksDir(tmp_path / "nope", environ={}).load()
