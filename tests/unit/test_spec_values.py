"""Values files and `--set`: nesting, order, precedence, located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from podctl.spec import SpecError, load_stacks
from podctl.spec.values import load_values_file, merge_parameters


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_nested_values_are_dotted_names(tmp_path: Path) -> None:
    f = write(tmp_path, "v.yaml", "image: {tag: '1.36', pull: true}\nreplicas: 3\nnone:\n")
    assert load_values_file(f) == {"image.tag": "1.36", "image.pull": "true", "replicas": "3"}


def test_later_files_win_and_set_wins_over_all(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "image: {tag: a, repo: r}\nn: 1\n")
    b = write(tmp_path, "b.yaml", "image: {tag: b}\n")
    assert merge_parameters([a, b], {"n": "9"}) == {"image.tag": "b", "image.repo": "r", "n": "9"}
    # A scalar replaces the subtree below it, and a leaf replaces a scalar above it.
    assert merge_parameters([a], {"image": "x"}) == {"image": "x", "n": "1"}
    assert merge_parameters([write(tmp_path, "c.yaml", "n: 1\n")], {"n.m": "2"}) == {"n.m": "2"}


def test_bad_values_files_are_located(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.yaml", "image:\n  tags: [1, 2]\n")
    broken = write(tmp_path, "broken.yaml", "a: [\n")
    with pytest.raises(SpecError) as exc:
        merge_parameters([bad, broken], {})
    text = [str(i) for i in exc.value.issues]
    assert text[0].startswith(f"{bad}:2:") and "not a list" in text[0]
    assert text[1].startswith(f"{broken}:")
    with pytest.raises(SpecError, match="must be a mapping"):
        load_values_file(write(tmp_path, "list.yaml", "- a\n"))


def test_precedence_set_values_environment_variables(tmp_path: Path) -> None:
    stack = write(
        tmp_path,
        "stack.yaml",
        "name: s\nvariables: {n: 1, tag: file}\n"
        "pods: {web: {image: 'busybox:${tag}', replicas: '${n}'}}\n",
    )
    values = write(tmp_path, "values.yaml", "n: 2\n")

    def pod(overrides: dict[str, str], environ: dict[str, str]) -> tuple[str, int]:
        (st,) = load_stacks([stack], overrides, environ, port_start=1024)
        return st.pods[0].template.image, st.pods[0].replicas

    assert pod({}, {}) == ("busybox:file", 1)
    assert pod({}, {"n": "3", "tag": "env"}) == ("busybox:env", 3)
    assert pod(merge_parameters([values], {}), {"n": "3"}) == ("busybox:file", 2)
    assert pod(merge_parameters([values], {"n": "4"}), {"n": "3"}) == ("busybox:file", 4)


def test_required_value_error_names_file_line_column(tmp_path: Path) -> None:
    stack = write(
        tmp_path,
        "stack.yaml",
        "name: s\npods:\n  web:\n    image: 'busybox:${tag:?pass -f values.yaml}'\n",
    )
    with pytest.raises(SpecError) as exc:
        load_stacks([stack], {}, {}, port_start=1024)
    assert str(exc.value.issues[0]) == (
        f"{stack}:4:12: pods.web.image: required variable `tag` is not set: pass -f values.yaml"
    )
