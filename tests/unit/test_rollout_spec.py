"""The `rollout:` pod field and the stack's `history:`: defaults, rules, the revision hash."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from podctl.spec import load_stack, validate
from podctl.spec.errors import SpecIssue
from podctl.spec.model import DesiredStack


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stack.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(tmp_path: Path, text: str) -> DesiredStack:
    return load_stack(write(tmp_path, text), environ={})


def one_problem(tmp_path: Path, text: str) -> SpecIssue:
    found = validate([write(tmp_path, text)], environ={})
    assert len(found) == 1, found
    return found[0]


def pod_yaml(body: str, top: str = "") -> str:
    return "name: shop\n" + top + "pods:\n  web:\n    image: busybox\n    replicas: 3\n" + body


def test_defaults(tmp_path: Path) -> None:
    s = load(tmp_path, pod_yaml(""))
    r = s.pods[0].rollout
    assert (r.strategy, r.max_surge, r.max_unavailable) == ("rolling", 1, 0)
    assert (r.min_ready_s, r.progress_deadline_s, r.auto_rollback) == (0.0, 600.0, True)
    assert s.history == 10


def test_every_field(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        pod_yaml(
            "    rollout: {strategy: rolling, max_surge: 25%, max_unavailable: '10%',"
            " min_ready: 5s, progress_deadline: 2m, auto_rollback: false}\n",
            top="history: 3\n",
        ),
    )
    r = s.pods[0].rollout
    assert (r.max_surge, r.max_unavailable, r.min_ready_s) == ("25%", "10%", 5.0)
    assert (r.progress_deadline_s, r.auto_rollback, s.history) == (120.0, False, 3)


def test_recreate_ignores_surge_and_unavailable(tmp_path: Path) -> None:
    # 0/0 deadlocks a rolling update, but recreate never reads the two.
    s = load(
        tmp_path, pod_yaml("    rollout: {strategy: recreate, max_surge: 0, max_unavailable: 0}\n")
    )
    assert s.pods[0].rollout.strategy == "recreate"


@pytest.mark.parametrize(
    ("body", "line", "col", "field", "message"),
    [
        ("    rollout: {max_surge: 0}\n", 6, 5, "pods.web.rollout", "cannot both be 0"),
        (
            "    rollout:\n      max_surge: 0%\n      max_unavailable: 0\n",
            6,
            5,
            "pods.web.rollout",
            "cannot both be 0",
        ),
        (
            "    rollout: {strategy: blue-green}\n",
            6,
            25,
            "pods.web.rollout.strategy",
            "invalid enum value",
        ),
        (
            "    rollout: {min_ready: soon}\n",
            6,
            26,
            "pods.web.rollout.min_ready",
            "invalid duration `soon`",
        ),
        (
            "    rollout: {min_ready: -1s}\n",
            6,
            26,
            "pods.web.rollout.min_ready",
            "invalid duration `-1s`",
        ),
        (
            "    rollout: {progress_deadline: 0s}\n",
            6,
            34,
            "pods.web.rollout.progress_deadline",
            "greater than 0",
        ),
        (
            "    rollout: {min_ready: 1m, progress_deadline: 30s}\n",
            6,
            49,
            "pods.web.rollout.progress_deadline",
            "longer than min_ready",
        ),
        (
            "    rollout: {auto_rollback: maybe}\n",
            6,
            30,
            "pods.web.rollout.auto_rollback",
            "expected bool",
        ),
        (
            "    rollout: {max_surg: 2}\n",
            6,
            15,
            "pods.web.rollout.max_surg",
            "did you mean `max_surge`",
        ),
    ],
)
def test_bad_values_are_located(
    tmp_path: Path, body: str, line: int, col: int, field: str, message: str
) -> None:
    issue = one_problem(tmp_path, pod_yaml(body))
    assert (issue.line, issue.field) == (line, field), issue
    assert issue.column == col, issue
    assert message in issue.message


def test_history_must_be_positive(tmp_path: Path) -> None:
    issue = one_problem(tmp_path, pod_yaml("", top="history: 0\n"))
    assert (issue.line, issue.column, issue.field) == (2, 10, "history")
    assert "1 or more" in issue.message


def test_rollout_fields_do_not_change_the_revision(tmp_path: Path) -> None:
    base = load(tmp_path, pod_yaml("")).pods[0].revision
    other = load(
        tmp_path,
        pod_yaml(
            "    rollout: {strategy: recreate, min_ready: 10s, progress_deadline: 1h,"
            " auto_rollback: false}\n",
            top="history: 2\n",
        ),
    ).pods[0]
    assert other.revision == base
