"""Several stack files at once: all problems collected, no clashes between stacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from podctl.spec import SpecError, load_stacks, validate


def stack(tmp_path: Path, file: str, name: str, port: int | None = None) -> Path:
    d = tmp_path / file
    d.mkdir()
    text = f"name: {name}\npods:\n  web: {{image: busybox, ports: {{http: 80}}}}\n"
    if port is not None:
        text += f"services:\n  web: {{pod: web, target: http, port: {port}}}\n"
    path = d / "stack.yaml"
    path.write_text(text)
    return path


def test_several_stacks_load_in_order(tmp_path: Path) -> None:
    a = stack(tmp_path, "a", "alpha", 18080)
    b = stack(tmp_path, "b", "beta", 18081)
    assert [s.name for s in load_stacks([a, b], environ={})] == ["alpha", "beta"]


def test_same_stack_name_in_two_files(tmp_path: Path) -> None:
    a = stack(tmp_path, "a", "shop")
    b = stack(tmp_path, "b", "shop")
    (issue,) = validate([a, b], environ={})
    assert (issue.file, issue.line, issue.column, issue.field) == (str(b), 1, 7, "name")
    assert issue.message == f"stack `shop` is also defined in {a}"


def test_duplicate_host_port_across_stacks(tmp_path: Path) -> None:
    a = stack(tmp_path, "a", "alpha", 18080)
    b = stack(tmp_path, "b", "beta", 18080)
    with pytest.raises(SpecError) as info:
        load_stacks([a, b], environ={})
    (issue,) = info.value.issues
    assert (issue.file, issue.line, issue.field) == (str(b), 5, "services.web.port")
    assert "host port 18080 is already used by service `web` of stack `alpha`" in issue.message


def test_problems_of_all_files_are_collected(tmp_path: Path) -> None:
    a = stack(tmp_path, "a", "alpha")
    b = stack(tmp_path, "b", "beta")
    a.write_text(a.read_text().replace("image:", "imgae:"))
    b.write_text(b.read_text() + "pods_: {}\n")
    found = validate([a, b], environ={})
    assert [(i.file, i.line) for i in found] == [(str(a), 3), (str(b), 4)]
    with pytest.raises(SpecError) as info:
        load_stacks([a, b], environ={})
    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"{a}:3:")
    assert lines[1].startswith(f"{b}:4:1: pods_: unknown field `pods_`; did you mean `pods`?")


def test_valid_files_give_no_issues(tmp_path: Path) -> None:
    assert validate([stack(tmp_path, "a", "alpha", 18080)], environ={}) == []
