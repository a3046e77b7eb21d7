"""Hostile stack files: alias bombs, deep nesting, huge files, huge replica counts.

Each is refused with exit code 2 and a `FILE:LINE:COL` pointing at the spot,
quickly and in little memory, instead of hanging, eating gigabytes or crashing
with a RecursionError.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from podctl.spec import SpecError, limits, load_stack, validate
from podctl.spec.errors import SpecIssue
from podctl.spec.limits import MAX_DEPTH, MAX_FILE_BYTES

MINIMAL = "name: shop\npods:\n  web:\n    image: busybox:1.36\n"


def bomb(levels: int) -> str:
    """The classic "billion laughs": each anchor is a list of nine aliases of the one before."""
    lines = ["name: bomb", 'x-a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        lines.append(f"x-a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    lines.append("pods: {}")
    return "\n".join(lines) + "\n"


def only_issue(path: Path, **kw: object) -> SpecIssue:
    issues = validate([path], environ={}, **kw)  # type: ignore[arg-type]
    assert len(issues) == 1, issues
    return issues[0]


def run_validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podctl", "validate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# ---------------------------------------------------------------- alias bombs


@pytest.mark.parametrize("levels", [6, 9, 30])
def test_alias_bomb_is_refused_at_the_first_alias_over_the_limit(
    tmp_path: Path, levels: int
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(levels))
    assert path.stat().st_size < 2000
    started = time.monotonic()
    issue = only_issue(path)
    # Before the limit: 34 s and 1.9 GB at 6 levels. A generous bound, not a benchmark.
    assert time.monotonic() - started < 10
    # *a4 stands for 9**5 = 59,049 nodes plus its lists; the second *a4 crosses 100,000.
    assert (issue.line, issue.column) == (7, 12)
    assert issue.message.startswith("alias `*a4` expands the document to more than 100000 nodes")


def test_alias_bomb_exits_2_from_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(9))
    result = run_validate(str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{path}:7:12: alias `*a4`")


def test_long_text_aliased_many_times_is_refused(tmp_path: Path) -> None:
    # Few nodes, but every copy of a 100 kB string would be scanned again.
    path = tmp_path / "stack.yaml"
    path.write_text(
        'name: shop\nx-s: &s "' + "x" * 100_000 + '"\nx-l: [' + ", ".join(["*s"] * 300) + "]\n"
    )
    issue = only_issue(path)
    assert issue.line == 3
    assert "characters of text" in issue.message


def test_an_alias_to_its_own_anchor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text("name: shop\nx-loop: &a [1, *a]\n")
    issue = only_issue(path)
    assert (issue.line, issue.column) == (2, 16)
    assert "alias `*a` refers to its own anchor" in issue.message


def test_ordinary_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(
        "name: shop\n"
        "x-base: &base\n  image: busybox:1.36\n  env: {A: '1'}\n"
        "pods:\n  web:\n    <<: *base\n    replicas: 2\n  api: *base\n"
    )
    stack = load_stack(path, environ={})
    assert [(p.name, p.replicas, p.template.image) for p in stack.pods] == [
        ("web", 2, "busybox:1.36"),
        ("api", 1, "busybox:1.36"),
    ]


def test_too_many_nodes_without_aliases_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same count as for aliases, at a lower limit so the test stays fast.
    monkeypatch.setattr(limits, "MAX_NODES", 1000)
    path = tmp_path / "stack.yaml"
    path.write_text("name: shop\nx-many: [" + ",".join(["1"] * 1000) + "]\n")
    issue = only_issue(path)
    # The mapping, name, shop, x-many, the list: item [995] (column 10 + 2 * 995) is node 1,001.
    assert (issue.line, issue.column) == (2, 10 + 2 * 995)
    assert issue.message == "the document has more than 1000 nodes (the limit for a stack file)"


def test_too_many_nodes_in_toml_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_NODES", 1000)
    path = tmp_path / "stack.toml"
    path.write_text('name = "shop"\nx = [' + ",".join(["1"] * 1000) + "]\n")
    issue = only_issue(path)
    assert issue.message == (
        "the document has more than 1000 nodes (at `x[995]`) (the limit for a stack file)"
    )


# ---------------------------------------------------------------- nesting


def nested_yaml_flow(levels: int) -> str:
    return "name: shop\nx-deep: " + "[" * levels + "1" + "]" * levels + "\n"


@pytest.mark.parametrize("levels", [101, 500, 10_000, 100_000])
def test_deep_flow_yaml_is_refused_at_the_first_level_too_deep(tmp_path: Path, levels: int) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(nested_yaml_flow(levels))
    issue = only_issue(path)
    assert issue.message == f"nesting deeper than {MAX_DEPTH} levels (the limit for a stack file)"
    # `x-deep` is level 1, so the 101st `[` (column 9 + 100) is too deep; far
    # deeper files stop a bracket later, where pyyaml's scanner is cut short.
    assert issue.line == 2
    assert issue.column in (109, 110)


def test_nesting_up_to_the_limit_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(nested_yaml_flow(MAX_DEPTH - 1) + "pods: {}\n")
    assert validate([path], environ={}) == []


def test_deep_block_yaml_is_refused(tmp_path: Path) -> None:
    levels = 3000
    body = "".join(" " * (i + 1) + f"k{i}:\n" for i in range(levels))
    path = tmp_path / "stack.yaml"
    path.write_text("name: shop\nx-deep:\n" + body + " " * (levels + 1) + "v\n")
    issue = only_issue(path)
    # `x-deep` is level 1, `k0` level 2: `k99` (line 102) is the first key at level 101.
    assert (issue.line, issue.column) == (102, 101)
    assert "nesting deeper than 100 levels" in issue.message


def test_aliases_cannot_nest_deeper_than_the_limit(tmp_path: Path) -> None:
    # Each anchor is 60 levels deep; aliasing one inside the other would be 120.
    deep = "[" * 59 + "1" + "]" * 59
    path = tmp_path / "stack.yaml"
    outer = "[" * 45 + "*a" + "]" * 45
    path.write_text(f"name: shop\nx-a: &a {deep}\nx-b: {outer}\n")
    issue = only_issue(path)
    assert issue.line == 3
    assert issue.message.startswith("alias `*a` expands the document to nesting deeper")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("x = " + "[" * 10_000 + "]" * 10_000, (2, 104)),
        ("x = " + "[" * 500 + "1" + "]" * 500, (2, 104)),
        ("x = " + "{a = " * 10_000 + "1" + "}" * 10_000, (2, 501)),
        (".".join(["x"] * 10_000) + " = 1", (2, 1)),
        ("[" + ".".join(["x"] * 10_000) + "]", (2, 1)),
        ("[[" + ".".join(["x"] * 200) + "]]", (2, 1)),
    ],
    ids=["arrays", "arrays-500", "inline-tables", "dotted-key", "table-header", "array-table"],
)
def test_deep_toml_is_refused_without_recursion(
    tmp_path: Path, text: str, where: tuple[int, int]
) -> None:
    path = tmp_path / "stack.toml"
    path.write_text('name = "shop"\n' + text + "\n")
    issue = only_issue(path)
    assert (issue.line, issue.column) == where
    assert "nesting deeper than 100 levels" in issue.message


def test_toml_nesting_up_to_the_limit_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "stack.toml"
    # `x` is level 1; 99 brackets put the 1 at level 100.
    path.write_text('name = "shop"\nx-deep = ' + "[" * 99 + "1" + "]" * 99 + "\n")
    assert validate([path], environ={}) == []


def test_deep_nesting_exits_2_from_the_command_line(tmp_path: Path) -> None:
    yaml_path = tmp_path / "deep.yaml"
    yaml_path.write_text(nested_yaml_flow(10_000))
    toml_path = tmp_path / "deep.toml"
    toml_path.write_text('name = "x"\nx = ' + "[" * 10_000 + "]" * 10_000 + "\n")
    result = run_validate(str(yaml_path), str(toml_path))
    assert result.returncode == 2
    assert "RecursionError" not in result.stderr
    assert result.stderr.splitlines() == [
        f"{yaml_path}:2:110: nesting deeper than 100 levels (the limit for a stack file)",
        f"{toml_path}:2:104: nesting deeper than 100 levels (the limit for a stack file)",
    ]


# ---------------------------------------------------------------- file size


def test_a_file_over_the_size_limit_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(MINIMAL + "#" * (MAX_FILE_BYTES - len(MINIMAL)) + "\n")
    issue = only_issue(path)
    assert (issue.file, issue.line, issue.column) == (str(path), 1, 1)
    assert issue.message == (
        f"stack file {path} is too large ({MAX_FILE_BYTES + 1} bytes); the limit is 10 MiB"
    )


def test_a_file_at_the_size_limit_loads(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    head = 'name = "shop"\n[pods.web]\nimage = "busybox:1.36"\n'
    path.write_text(head + "#" * (MAX_FILE_BYTES - len(head) - 1) + "\n")
    assert path.stat().st_size == MAX_FILE_BYTES
    assert load_stack(path, environ={}).name == "shop"


# ---------------------------------------------------------------- replicas


def replicas_file(tmp_path: Path, replicas: str) -> Path:
    path = tmp_path / "stack.yaml"
    path.write_text(
        f"name: shop\npods:\n  web:\n    image: busybox:1.36\n    replicas: {replicas}\n"
    )
    return path


def test_replicas_over_the_maximum_are_refused_at_validation(tmp_path: Path) -> None:
    issue = only_issue(replicas_file(tmp_path, "1e9"))
    assert (issue.line, issue.column, issue.field) == (5, 15, "pods.web.replicas")
    assert issue.message.startswith("must be at most 1000, got 1000000000")


def test_the_replica_maximum_is_inclusive_and_configurable(tmp_path: Path) -> None:
    assert load_stack(replicas_file(tmp_path, "1000"), environ={}).pods[0].replicas == 1000
    with pytest.raises(SpecError, match="must be at most 1000, got 1001"):
        load_stack(replicas_file(tmp_path, "1001"), environ={})
    stack = load_stack(replicas_file(tmp_path, "5000"), environ={}, max_replicas=5000)
    assert stack.pods[0].replicas == 5000
    with pytest.raises(SpecError, match="must be at most 2, got 3"):
        load_stack(replicas_file(tmp_path, "3"), environ={}, max_replicas=2)


def test_huge_replicas_validate_quickly(tmp_path: Path) -> None:
    # Nothing in the spec code builds a list per replica: a huge count (allowed
    # here on purpose) costs no more than a small one.
    started = time.monotonic()
    path = replicas_file(tmp_path, "1" + "0" * 18)
    stack = load_stack(path, environ={}, max_replicas=10**18)
    assert stack.pods[0].replicas == 10**18
    assert time.monotonic() - started < 10


def test_replicas_from_a_variable_are_bounded_too(tmp_path: Path) -> None:
    path = replicas_file(tmp_path, "${n}")
    issues = validate([path], {"n": "2000"}, environ={})
    assert [i.message.split(" (")[0] for i in issues] == ["must be at most 1000, got 2000"]


def test_validate_command_takes_max_replicas(tmp_path: Path) -> None:
    path = replicas_file(tmp_path, "1e9")
    result = run_validate(str(path))
    assert result.returncode == 2
    assert "pods.web.replicas: must be at most 1000, got 1000000000" in result.stderr
    result = run_validate("--max-replicas", "1000000000", str(path))
    assert result.returncode == 0, result.stderr
